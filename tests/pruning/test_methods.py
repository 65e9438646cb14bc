import pytest

from moeprune.errors import UserError
from moeprune.formats.statistics import ExpertStats, LayerStats
from pruning.methods import METHODS, get_method, score
from pruning.selection import Routing, select_uniform


def hand_stats() -> ExpertStats:
    """One MoE layer (decoder layer 5), 4 experts, top-2, statistics written out by hand.

    Three routed tokens: t1 -> (0: g=0.75, ||E||=4), (1: g=0.25, ||E||=8), s=0.5
                         t2 -> (0: g=0.5,  ||E||=2), (2: g=0.5,  ||E||=6), s=0.1
                         t3 -> (2: g=0.9,  ||E||=1), (0: g=0.1,  ||E||=10), s=1.0
    Expert 3 is never routed. EAN (every expert on t1 only): norms 4, 8, 3, 20.
    """
    layer = LayerStats(
        num_experts=4,
        tokens=3,
        ean_tokens=1,
        counts=[3, 1, 2, 0],
        gate_sum=[0.75 + 0.5 + 0.1, 0.25, 0.5 + 0.9, 0.0],
        reap_sum=[0.75 * 4 + 0.5 * 2 + 0.1 * 10, 0.25 * 8, 0.5 * 6 + 0.9 * 1, 0.0],
        ean_sum=[4.0, 8.0, 3.0, 20.0],
        easyep_sum=[
            0.5 * 0.75 * 4 + 0.1 * 0.5 * 2 + 1.0 * 0.1 * 10,
            0.5 * 0.25 * 8,
            0.1 * 0.5 * 6 + 1.0 * 0.9 * 1,
            0.0,
        ],
    )
    return ExpertStats("qwen3_moe", 4, 2, {5: layer})


@pytest.mark.parametrize(
    "method, expected",
    [
        ("frequency", [3, 1, 2, 0]),
        ("gate", [1.35, 0.25, 1.4, 0]),
        ("ean", [4, 8, 3, 20]),
        ("reap", [5.0 / 3, 2.0, 3.9 / 2, 0.0]),  # mean over routed tokens; never routed -> 0
        ("reap-sum", [5.0, 2.0, 3.9, 0.0]),
        ("easyep", [1.5 + 0.1 + 1.0, 1.0, 0.3 + 0.9, 0.0]),
    ],
)
def test_each_method_matches_hand_computed_scores(method, expected):
    assert score(hand_stats(), method)[5] == pytest.approx(expected)


def test_methods_rank_the_hand_case_differently():
    stats, routing = hand_stats(), Routing(num_experts=4, top_k=2)
    kept = {m: select_uniform(score(stats, m), 0.5, routing)[5] for m in ("frequency", "reap", "ean", "gate")}
    assert kept == {"frequency": [0, 2], "reap": [1, 2], "ean": [3, 1], "gate": [2, 0]}


def test_random_is_seeded_and_honours_every_ratio():
    stats = ExpertStats.empty("qwen3_moe", 16, 2, [0, 1, 2])
    routing = Routing(num_experts=16, top_k=2)
    assert score(stats, "random", seed=3) == score(stats, "random", seed=3)
    assert score(stats, "random", seed=3) != score(stats, "random", seed=4)
    for ratio, kept in [(0.125, 14), (0.25, 12), (0.5, 8), (0.75, 4), (0.875, 2)]:
        selection = select_uniform(score(stats, "random", seed=0), ratio, routing)
        assert {len(v) for v in selection.values()} == {kept}
    # Layers are not all given the same experts.
    selection = select_uniform(score(stats, "random", seed=0), 0.5, routing)
    assert len({tuple(sorted(v)) for v in selection.values()}) > 1


def test_unknown_method_lists_the_valid_names():
    with pytest.raises(UserError) as error:
        get_method("magnitude")
    for name in METHODS:
        assert name in str(error.value)
    assert set(METHODS) >= {"random", "frequency", "gate", "ean", "reap", "reap-sum", "easyep"}


def test_statistics_round_trip_through_json(tmp_path):
    stats = hand_stats()
    path = stats.save(tmp_path / "stats.json", scores={"reap": score(stats, "reap")})
    loaded = ExpertStats.load(path)
    for method in METHODS:
        assert score(loaded, method) == score(stats, method)
    with pytest.raises(UserError, match="not a moeprune statistics file"):
        ExpertStats.from_dict({"layers": {}})
