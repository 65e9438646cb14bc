"""SummaC-ZS-style faithfulness with a tiny, locally built NLI model (random weights: plumbing and shapes)."""

import pytest

from evaluators.faithfulness import NLIScorer, add_faithfulness, sentences
from moeprune.errors import UserError


@pytest.fixture(scope="module")
def tiny_nli(tmp_path_factory):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from demo.tokenizer import train_tokenizer

    path = tmp_path_factory.mktemp("tiny-nli")
    tokenizer = train_tokenizer(path)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=3,
        id2label={0: "entailment", 1: "neutral", 2: "contradiction"},
        label2id={"entailment": 0, "neutral": 1, "contradiction": 2},
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(str(path))
    return path


def test_sentences_split():
    assert sentences("One. Two! Three? ") == ["One.", "Two!", "Three?"]


def test_scores_are_max_over_source_mean_over_summary(tiny_nli):
    scorer = NLIScorer(tiny_nli, batch_size=2)
    source = "Metformin treats diabetes. Aspirin inhibits cyclooxygenase. The liver metabolises drugs."
    summary = "Metformin treats diabetes. The kidney filters blood."
    pairs = scorer.pair_scores(sentences(source) * 2, [s for s in sentences(summary) for _ in range(3)])
    assert len(pairs) == 6 and all(-1 <= p <= 1 for p in pairs)
    expected = (max(pairs[:3]) + max(pairs[3:])) / 2
    assert scorer.score(source, summary) == pytest.approx(expected, abs=1e-6)
    assert scorer.score(source, "") is None
    records = [{"source": source, "response": summary}, {"source": source, "response": ""}]
    add_faithfulness(tiny_nli, records, scorer)
    assert records[0]["faithfulness"] == pytest.approx(expected, abs=1e-6) and records[1]["faithfulness"] is None


def test_rejects_models_without_nli_labels(tiny_nli, tmp_path):
    with pytest.raises(UserError, match="not a local model directory"):
        NLIScorer(tmp_path)
    import json

    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        if (tiny_nli / name).exists():
            (tmp_path / name).write_bytes((tiny_nli / name).read_bytes())
    config = json.loads((tmp_path / "config.json").read_text())
    config["id2label"] = {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}
    config["label2id"] = {"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="entailment"):
        NLIScorer(tmp_path)


def test_run_eval_reports_faithfulness_with_nli_model(tiny_nli, tmp_path, eval_sets):
    import json

    from evaluators.runner import run_eval
    from tests.evaluators.endpoints import endpoint

    with endpoint(lambda request: "Metformin is used for type 2 diabetes.", model="m") as (url, _):
        card = json.loads(
            run_eval(
                url,
                "m",
                [f"summaries={eval_sets / 'summaries.jsonl'}"],
                tmp_path,
                nli_model=str(tiny_nli),
                progress=False,
            ).read_text()
        )
    metrics = card["tasks"]["summaries-summaries"]["metrics"]
    assert -1 <= metrics["faithfulness_summac_zs"]["value"] <= 1
    assert metrics["rouge_l"]["value"] > 0 and card["tasks"]["summaries-summaries"]["kind"] == "summarisation"
