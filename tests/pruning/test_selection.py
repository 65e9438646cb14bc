import pytest

from moeprune.errors import UserError
from pruning.selection import Routing, normalise, removed_count, select, select_global, select_uniform

ASCENDING = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]


def test_uniform_keeps_the_best_in_rank_order():
    scores = {0: ASCENDING, 3: ASCENDING[::-1]}
    assert select_uniform(scores, 0.5, Routing(8, 2)) == {0: [7, 6, 5, 4], 3: [0, 1, 2, 3]}


def test_ratio_zero_keeps_every_expert():
    assert select_uniform({0: ASCENDING}, 0.0, Routing(8, 2)) == {0: [7, 6, 5, 4, 3, 2, 1, 0]}


def test_removed_count_rounds_halves_up():
    assert [removed_count(r, 4) for r in (0.125, 0.375, 0.5)] == [1, 2, 2]
    assert removed_count(0.25, 128) == 32 and removed_count(0.875, 8) == 7


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_ratio_outside_zero_one_is_refused(ratio):
    with pytest.raises(UserError, match=r"outside \[0, 1\)"):
        select_uniform({0: ASCENDING}, ratio, Routing(8, 2))


def test_ratio_leaving_fewer_than_top_k_gives_numbers_and_the_fix():
    with pytest.raises(UserError) as error:
        select_uniform({0: ASCENDING}, 0.875, Routing(8, 2))
    message = str(error.value)
    assert "keeps 1 of 8" in message and "top-k = 2" in message
    assert "largest valid ratio is 0.75" in message


def test_grouped_routing_keeps_the_same_count_per_group():
    routing = Routing(num_experts=8, top_k=2, n_group=2, topk_group=1)  # groups {0..3}, {4..7}
    scores = {1: [9.0, 8.0, 7.0, 6.0, 0.5, 0.4, 0.3, 0.2]}
    assert select_uniform(scores, 0.5, routing) == {1: [0, 1, 4, 5]}


@pytest.mark.parametrize(
    "ratio, words",
    [
        (0.25, "do not split evenly over n_group = 4"),  # keeps 6 of 8 over 4 groups
        (0.5, "1 expert(s) per group"),  # keeps 4 = 1 per group
    ],
)
def test_grouped_routing_refusals(ratio, words):
    routing = Routing(num_experts=8, top_k=2, n_group=4, topk_group=2)
    with pytest.raises(UserError) as error:
        select_uniform({1: ASCENDING}, ratio, routing)
    assert words in str(error.value) and "largest valid ratio is 0" in str(error.value)


def test_grouped_routing_top_k_beyond_topk_group_capacity():
    routing = Routing(num_experts=16, top_k=6, n_group=4, topk_group=2)
    with pytest.raises(
        UserError, match=r"top_k = 6 > topk_group \(2\) x 2 experts per group.*largest valid ratio is 0.25"
    ):
        select_uniform({0: [float(i) for i in range(16)]}, 0.5, routing)


def test_global_allocation_spends_the_same_budget_with_a_floor():
    # Layer 0 has one dominant expert; layer 1 is flat. Shares, not raw scales, are compared.
    scores = {0: [100.0, 1, 1, 1, 1, 1, 1, 1], 1: [10.0, 10, 10, 10, 10, 10, 10, 11]}
    routing = Routing(8, 2)
    kept = select_global(scores, 0.5, routing)
    assert sum(len(v) for v in kept.values()) == 8  # the uniform budget: 4 + 4
    assert kept[0] == [0, 1] and len(kept[1]) == 6  # layer 0 hits the floor (top-k = 2)
    assert kept[1][0] == 7  # rank order preserved
    floor_three = select_global(scores, 0.5, routing, min_experts=3)
    assert len(floor_three[0]) == 3 and len(floor_three[1]) == 5


def test_global_allocation_scale_invariance():
    scores = {0: ASCENDING, 1: [1000 * s for s in ASCENDING]}
    assert normalise(scores[0]) == pytest.approx(normalise(scores[1]))
    kept = select_global(scores, 0.5, Routing(8, 2))
    assert kept[0] == kept[1] == [7, 6, 5, 4]


def test_global_allocation_refusals():
    routing = Routing(8, 2)
    with pytest.raises(UserError, match="below top-k"):
        select_global({0: ASCENDING}, 0.5, routing, min_experts=1)
    with pytest.raises(UserError, match="allows at most 4"):
        select_global({0: ASCENDING, 1: ASCENDING}, 0.75, routing, min_experts=6)
    # Grouped routing: global moves one expert per group at a time (tests/pruning/test_uneven.py); coverage refuses.
    grouped = Routing(8, 2, n_group=2, topk_group=1)
    assert select_global({0: ASCENDING}, 0.5, grouped) == select({0: ASCENDING}, 0.5, grouped, "uniform")
    with pytest.raises(UserError, match="allocation coverage is not supported with grouped routing"):
        select({0: ASCENDING}, 0.5, grouped, "coverage")


def test_unknown_allocation_and_uniform_floor():
    with pytest.raises(UserError, match="uniform, global"):
        select({0: ASCENDING}, 0.5, Routing(8, 2), allocation="greedy")
    with pytest.raises(UserError, match="below min_experts 5"):
        select({0: ASCENDING}, 0.5, Routing(8, 2), min_experts=5)
