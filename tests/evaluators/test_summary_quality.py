"""SummaC-Conv, BERTScore and the hallucination judge against hand-computed values (tiny local models)."""

import asyncio
import json
import math

import pytest

from evaluators.bertscore import BertScorer, add_bertscore, greedy_match
from evaluators.cache import ResponseCache
from evaluators.hallucination_judge import hallucination_metrics, judge_claims, parse_claims
from evaluators.judge_endpoints import JudgeEndpoint
from evaluators.summac_conv import PERCENTILE_BINS, ConvWeights, histogram
from evaluators.summary_quality import SummaryScorers, quality_metrics
from moeprune.errors import UserError
from tests.evaluators.endpoints import endpoint, last_turn


def test_histogram_counts_with_a_closed_last_bin():
    assert histogram([0.0, 0.05, 0.5, 0.5, 1.0, 1.2], (0.0, 0.1, 0.5, 1.0)) == [2, 0, 3]
    assert len(histogram([0.3], PERCENTILE_BINS)) == 23


def _weights(**extra):
    return ConvWeights.from_mapping(
        {
            "bins": [0.0, 0.5, 1.0],
            "mlp.weight": [[2.0, -1.0]],
            "mlp.bias": [0.5],
            "layer_final.weight": [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]],
            "layer_final.bias": [0.0, -1.0],
            **extra,
        },
        "test",
    )


def test_summac_conv_score_by_hand():
    # Two summary sentences over three source sentences.
    # Sentence 1: entailment [0.9, 0.2, 0.7] -> histogram [1, 2] -> 2*1 - 1*2 + 0.5 = 0.5
    # Sentence 2: entailment [0.1, 0.3, 0.4] -> histogram [3, 0] -> 2*3 + 0.5 = 6.5
    # mean 3.5; logits [0, 3.5 - 1] -> softmax[1] = 1 / (1 + e^-2.5)
    score = _weights().score([[0.9, 0.2, 0.7], [0.1, 0.3, 0.4]])
    assert score == pytest.approx(1 / (1 + math.exp(-2.5)))
    # Only the first n_rows sentences count (the published model reads at most 10).
    # n_rows=1: mean 0.5, logits [0, -0.5]
    assert _weights(n_rows=1).score([[0.9, 0.2, 0.7], [0.1, 0.3, 0.4]]) == pytest.approx(1 / (1 + math.exp(0.5)))


def test_summac_conv_weights_files(tmp_path):
    import torch

    state = {
        "mlp.weight": torch.zeros(1, 23),
        "mlp.bias": torch.tensor([1.0]),
        "layer_final.weight": torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]),
        "layer_final.bias": torch.zeros(2),
    }
    torch.save(state, tmp_path / "conv.bin")
    loaded = ConvWeights.load(tmp_path / "conv.bin")  # the published state-dict layout, percentile bins
    assert loaded.bins == PERCENTILE_BINS and loaded.score([[0.5]]) == pytest.approx(1 / (1 + math.exp(-1.0)))
    (tmp_path / "w.json").write_text(
        json.dumps(
            {
                "mlp.weight": [[0.0] * 5],
                "mlp.bias": [0.0],
                "layer_final.weight": [[0, 0, 0], [0, 0, 0]],
                "layer_final.bias": [0, 0],
            }
        )
    )
    with pytest.raises(UserError, match="one per bin"):
        ConvWeights.load(tmp_path / "w.json")
    (tmp_path / "partial.json").write_text(json.dumps({"mlp.weight": [[0.0] * 23]}))
    with pytest.raises(UserError, match="lack mlp.bias"):
        ConvWeights.load(tmp_path / "partial.json")
    (tmp_path / "junk.bin").write_bytes(b"not a state dict")
    with pytest.raises(UserError, match="not a readable torch state dict"):
        ConvWeights.load(tmp_path / "junk.bin")
    with pytest.raises(UserError, match="do not exist"):
        ConvWeights.load(tmp_path / "missing.bin")


def test_greedy_match_by_hand():
    s = 1 / math.sqrt(2)
    candidate = [[1.0, 0.0], [s, s]]
    reference = [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    # sims: row 1 [1, 0, 0] -> 1; row 2 [s, s, s] -> s; P = (1 + s) / 2
    # columns: [1, s] -> 1, [0, s] -> s, [0, s] -> s; R = (1 + 2s) / 3
    p, r, f = greedy_match(candidate, reference)
    assert p == pytest.approx((1 + s) / 2) and r == pytest.approx((1 + 2 * s) / 3)
    assert f == pytest.approx(2 * p * r / (p + r))
    assert greedy_match([], reference) == (0.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    import torch
    from transformers import BertConfig, BertModel

    from demo.tokenizer import train_tokenizer

    path = tmp_path_factory.mktemp("tiny-encoder")
    tokenizer = train_tokenizer(path)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(path))
    return path


def test_bertscore_with_a_local_encoder(tiny_encoder):
    scorer = BertScorer(tiny_encoder)
    same = scorer.score("Metformin treats type 2 diabetes.", "Metformin treats type 2 diabetes.")
    assert same == pytest.approx((1.0, 1.0, 1.0), abs=1e-5)
    other = scorer.score("Aspirin inhibits cyclooxygenase.", "Metformin treats type 2 diabetes.")
    assert all(value < 0.999 for value in other)
    # The scorer's P/R/F are the greedy match of its own normalised token embeddings.
    cand, ref = scorer.embed("Aspirin inhibits cyclooxygenase."), scorer.embed("Metformin treats type 2 diabetes.")
    assert other == pytest.approx(greedy_match(cand.tolist(), ref.tolist()), abs=1e-5)
    records = [
        {"response": "Metformin treats diabetes.", "reference": "Metformin treats diabetes."},
        {"response": "", "reference": "Metformin treats diabetes."},
    ]
    add_bertscore(records, scorer)
    assert records[0]["bertscore"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-5) and records[1]["bertscore"] is None
    metrics = quality_metrics(records, seed=0)
    assert metrics["bertscore_f1"]["value"] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(UserError, match="outside this encoder"):
        BertScorer(tiny_encoder, layer=5)


def test_parse_claims_is_strict():
    good = {
        "claims": [
            {"claim": "Metformin treats diabetes.", "verdict": "Supported"},
            {"claim": "It cures cancer.", "verdict": "contradicted"},
        ]
    }
    assert [c["verdict"] for c in parse_claims(json.dumps(good))] == ["supported", "contradicted"]
    assert parse_claims('{"claims": []}') == []
    for bad in (
        "",
        "no claims",
        json.dumps({"claims": [{"claim": "x", "verdict": "maybe"}]}),
        json.dumps({"claims": [{"verdict": "supported"}]}),
        json.dumps({"claims": "x"}),
        json.dumps({"claims": [], "score": 1}),
    ):
        assert parse_claims(bad) is None, bad


def test_hallucination_aggregation_by_hand():
    records = [
        {"judge_claims": [{"claim": "a", "verdict": "supported"}, {"claim": "b", "verdict": "contradicted"}]},
        {"judge_claims": [{"claim": "c", "verdict": "not_in_source"}, {"claim": "d", "verdict": "supported"}]},
        {"judge_claims": []},
        {"judge_claims": None},  # unparseable: counted, not guessed
    ]
    metrics = hallucination_metrics(records)
    assert metrics["judge_hallucination_rate"]["value"] == pytest.approx(1 / 3)
    assert metrics["judge_unsupported_claim_rate"]["value"] == pytest.approx(1 / 4)
    assert metrics["judge_claims_unparseable_rate"]["value"] == pytest.approx(1 / 4)


def test_hallucination_judge_against_an_endpoint(tmp_path):
    def answer(request):
        prompt = last_turn(request)
        if "cures cancer" in prompt:
            return json.dumps({"claims": [{"claim": "It cures cancer.", "verdict": "contradicted"}]})
        if "garbled" in prompt:
            return "I cannot tell."
        return json.dumps({"claims": [{"claim": "It treats diabetes.", "verdict": "supported"}]})

    source = "Metformin treats type 2 diabetes."
    records = [{"source": source, "response": r} for r in ("It treats diabetes.", "It cures cancer.", "garbled")]
    with endpoint(answer, model="judge") as (url, engine):
        asyncio.run(judge_claims(JudgeEndpoint(url, "judge"), ResponseCache(tmp_path / "c.jsonl"), 2, records))
    assert len(engine.requests) == 3
    assert [r["judge_claims"] is None for r in records] == [False, False, True]
    metrics = quality_metrics(records, seed=0)
    assert metrics["judge_hallucination_rate"]["value"] == pytest.approx(1 / 2)


def test_scorers_fail_before_any_request(tmp_path):
    with pytest.raises(UserError, match="also give the NLI model"):
        SummaryScorers(summac_conv_weights=str(tmp_path / "w.json")).check()
    with pytest.raises(UserError, match="not a local model directory"):
        SummaryScorers(bertscore_model=str(tmp_path)).check()


def test_run_eval_folds_scorers_and_several_judges_into_the_card(tiny_encoder, tmp_path, eval_sets):
    from evaluators.runner import run_eval
    from moeprune.formats.report_card import ReportCard

    def summarise(request):
        return "Metformin treats type 2 diabetes."

    def pairwise(letter):
        def answer(request):
            if "more_hallucination" in last_turn(request):
                return json.dumps(
                    {
                        "more_hallucination": letter,
                        "more_omission": letter,
                        "more_repetition": letter,
                        "more_aligned": letter,
                    }
                )
            return json.dumps({"claims": [{"claim": "x", "verdict": "contradicted"}]})

        return answer

    with (
        endpoint(summarise, model="m") as (url, _),
        endpoint(pairwise("A"), model="j1") as (judge1, _),
        endpoint(pairwise("B"), model="j2") as (judge2, _),
    ):
        scorers = SummaryScorers(bertscore_model=str(tiny_encoder), hallucination_judge=JudgeEndpoint(judge1, "j1"))
        path = run_eval(
            url,
            "m",
            [f"summaries={eval_sets / 'summaries.jsonl'}"],
            tmp_path / "out",
            base_endpoint=url,
            base_model="m",
            judge_endpoint=[judge1, judge2],
            judge_model=["j1", "j2"],
            summary_scorers=scorers,
            progress=False,
        )
    card = ReportCard.load(path)
    task = card.tasks["summaries-summaries"]
    assert task.metrics["bertscore_f1"].value is not None
    assert task.metrics["judge_hallucination_rate"].value == 1.0  # every claim "contradicted"
    assert sorted(task.judges) == sorted(JudgeEndpoint(u, m).label for u, m in ((judge1, "j1"), (judge2, "j2")))
    one, two = (
        task.judges[JudgeEndpoint(u, m).label]["judge_variant_more_hallucination"].value
        for u, m in ((judge1, "j1"), (judge2, "j2"))
    )
    # One judge always blames A, the other B: their shares are complements, the pooled share their mean.
    assert one + two == pytest.approx(1.0)
    assert task.metrics["judge_variant_more_hallucination"].value == pytest.approx(0.5)
