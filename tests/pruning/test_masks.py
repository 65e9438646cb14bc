import json

import pytest

from moeprune.errors import UserError
from pruning.masks import mask_to_ranked, ranked_to_mask, read_mask
from pruning.selection import Routing

ROUTING = Routing(num_experts=8, top_k=2)


def write(tmp_path, data, name="expert_mask.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_mask_rows_map_to_moe_layers_in_rank_order(tmp_path):
    path = write(tmp_path, [[7, 0, 3, 1], [2, 5, 4, 6]])
    ranked = mask_to_ranked(read_mask(path), [1, 3], ROUTING)
    assert ranked == {1: [7, 0, 3, 1], 3: [2, 5, 4, 6]}  # rank order kept, not sorted
    assert ranked_to_mask(ranked) == [[7, 0, 3, 1], [2, 5, 4, 6]]


def test_the_study_format_of_a_large_model_is_accepted(tmp_path):
    # Shape of the published Qwen3-30B-A3B frequency mask: 48 MoE layers x 96 of 128 kept.
    mask = [[(7 * i + layer) % 128 for i in range(96)] for layer in range(48)]
    ranked = mask_to_ranked(read_mask(write(tmp_path, mask)), list(range(48)), Routing(128, 8))
    assert len(ranked) == 48 and all(len(v) == 96 for v in ranked.values())


def test_wrong_layer_count(tmp_path):
    path = write(tmp_path, [[0, 1, 2, 3]] * 3)
    with pytest.raises(UserError, match="has 3 layer entries but the model has 2 MoE layers"):
        mask_to_ranked(read_mask(path), [0, 1], ROUTING)


@pytest.mark.parametrize(
    "row, words",
    [
        ([0, 1, 8], r"\[8\] are outside 0..7"),
        ([0, -1, 2], r"\[-1\] are outside 0..7"),
        ([0, 1, 1, 2], r"\[1\] appear more than once"),
        ([5], "1 expert is fewer than top-k = 2"),
    ],
)
def test_bad_rows_name_the_layer_and_the_problem(tmp_path, row, words):
    path = write(tmp_path, [[0, 1, 2, 3], row])
    with pytest.raises(UserError, match=rf"MoE layer #1 \(decoder layer 4\).*{words}"):
        mask_to_ranked(read_mask(path), [2, 4], ROUTING)


def test_grouped_routing_mask_needs_equal_counts_per_group(tmp_path):
    routing = Routing(num_experts=8, top_k=2, n_group=2, topk_group=1)
    path = write(tmp_path, [[0, 1, 2, 3]])  # all of group 0, none of group 1
    with pytest.raises(UserError, match=r"keeps \[4, 0\] experts from the 2 routing groups"):
        mask_to_ranked(read_mask(path), [1], routing)
    assert mask_to_ranked([[0, 1, 4, 5]], [1], routing) == {1: [0, 1, 4, 5]}


@pytest.mark.parametrize(
    "content, words",
    [
        ("[[0, 1],", "not valid JSON"),
        ('{"0": [0, 1]}', "one list of kept expert indices per MoE layer"),
        ("[[0, 1.5]]", "must be integers"),
    ],
)
def test_unreadable_masks(tmp_path, content, words):
    with pytest.raises(UserError, match=words):
        read_mask(write(tmp_path, content))
    with pytest.raises(UserError, match="does not exist"):
        read_mask(tmp_path / "absent.json")
