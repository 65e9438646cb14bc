"""`moeprune eval` against a scripted OpenAI server whose logprobs betray its wrong answers: a card with certified
gate domains, per-answer p_wrong equal to the card's model, and the base cross-check marked off with its reason."""

import json
import re

from evaluators.reliability_card import record_key
from moeprune.cli import main
from moeprune.formats.domain_gate import fit_gate
from moeprune.formats.report_card import ReportCard
from moeprune.reliability.risk_model import RiskModel
from tests.evaluators.endpoints import endpoint

N = 120  # items per domain


def write_sets(root):
    bio = [
        {
            "id": f"b{i}",
            "question": f"Which enzyme of the liver metabolises drug compound {i} in patients?",
            "options": {"A": "CYP3A4", "B": "CYP2D6", "C": "CYP1A2", "D": "I don't know"},
            "answer": "A",
            "domain": "biomedical",
        }
        for i in range(N)
    ]
    general = [
        {
            "id": f"g{i}",
            "question": f"Which city is the capital of the country on map page {i}?",
            "options": {"A": "Paris", "B": "Lima", "C": "Oslo", "D": "I don't know"},
            "answer": "B",
            "domain": "general",
        }
        for i in range(N)
    ]
    for name, rows in (("bio.jsonl", bio), ("general.jsonl", general)):
        (root / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
    (root / "tasks.yaml").write_text(
        "tasks:\n"
        "  - {name: r_bio, format: jsonl, path: bio.jsonl, domain: biomedical}\n"
        "  - {name: r_general, format: jsonl, path: general.jsonl, domain: general}\n"
    )
    gate = fit_gate([row["question"] for row in bio], [row["question"] for row in general])
    gate.threshold = 0.5
    return gate.save(root / "domain_gate.json")


def item_number(request) -> int:
    return int(re.search(r"(compound|page) (\d+)", request.body["messages"][-1]["content"]).group(2))


def wrong_item(request) -> bool:
    return item_number(request) % 5 == 0  # a fifth of the answers are wrong


def reply(request):
    content = request.body["messages"][-1]["content"]
    if item_number(request) % 17 == 3:
        return "I don't know"  # abstains on an answerable question: counted apart
    right = "A" if "compound" in content else "B"
    return "C" if wrong_item(request) else right


def test_eval_writes_a_certified_reliability_section_with_per_answer_p_wrong(tmp_path):
    gate_file = write_sets(tmp_path)
    with endpoint(reply, max_model_len=4096, logprob=lambda r: -2.5 if wrong_item(r) else -0.05) as (url, _):
        code = main(
            [
                "eval",
                "--endpoint",
                url,
                "--model",
                "m",
                "--task-file",
                str(tmp_path / "tasks.yaml"),
                "--tasks",
                "r_bio,r_general",
                "--out",
                str(tmp_path / "out"),
                "--gate",
                str(gate_file),
                "--alpha",
                "0.2",
                "--delta",
                "0.1",
                "--no-progress",
            ]
        )
    assert code == 0
    card = ReportCard.load(tmp_path / "out")
    section = card.reliability
    assert section.alpha == 0.2 and section.delta == 0.1 and section.gate_sha256 and section.gate_threshold == 0.5
    assert not section.base_check and "no base endpoint" in section.base_check_off
    items = [json.loads(line) for line in (tmp_path / "out" / "items.jsonl").read_text().splitlines()]
    assert {(r["domain"], r["gate_domain"]) for r in items} == {
        ("biomedical", "in_domain"),
        ("general", "cross_domain"),
    }
    assert all(0 <= r["signals"]["gate_score"] <= 1 for r in items)
    assert {r["label"] for r in items} == {"correct", "wrong", "abstained"}
    for name in ("in_domain", "cross_domain"):
        domain = section.domains[name]
        assert domain.certificate.status == "certified" and domain.certificate.coverage > 0.5
        assert domain.n_abstained == sum(r["label"] == "abstained" and r["gate_domain"] == name for r in items)
        assert domain.quality["p_wrong"]["auroc"].value == 1.0
        model = RiskModel.from_dict(domain.model.model_dump())
        for record in [r for r in items if r["gate_domain"] == name and "reliability" in r][:10]:
            assert record["reliability"]["p_wrong"] == model.p_wrong(record["signals"])
    assert len({record_key(r) for r in items}) == len(items)


def test_without_a_gate_one_domain_and_a_base_that_cannot_score_is_named_as_the_reason(tmp_path, capsys):
    write_sets(tmp_path)
    with endpoint(reply, max_model_len=4096, logprob=lambda r: -2.5 if wrong_item(r) else -0.05) as (url, _):
        code = main(
            [
                "eval",
                "--endpoint",
                url,
                "--model",
                "m",
                "--task-file",
                str(tmp_path / "tasks.yaml"),
                "--tasks",
                "r_bio",
                "--out",
                str(tmp_path / "out"),
                "--base-endpoint",
                url,
                "--base-model",
                "m",
                "--no-progress",
            ]
        )
        assert code == 0
        section = ReportCard.load(tmp_path / "out").reliability
        assert list(section.domains) == ["all"] and section.gate_sha256 is None
        assert not section.base_check and "base endpoint scored none of the answers" in section.base_check_off
        assert "note: base cross-check off: the base endpoint scored none" in capsys.readouterr().err
        assert (
            main(
                [
                    "eval",
                    "--endpoint",
                    url,
                    "--model",
                    "m",
                    "--task-file",
                    str(tmp_path / "tasks.yaml"),
                    "--tasks",
                    "r_bio",
                    "--out",
                    str(tmp_path / "o2"),
                    "--gate-threshold",
                    "0.4",
                ]
            )
            == 2
        )
        assert "--gate-threshold needs a domain gate" in capsys.readouterr().err
        assert (
            main(
                [
                    "eval",
                    "--endpoint",
                    url,
                    "--model",
                    "m",
                    "--task-file",
                    str(tmp_path / "tasks.yaml"),
                    "--tasks",
                    "r_bio",
                    "--out",
                    str(tmp_path / "o3"),
                    "--alpha",
                    "1.5",
                ]
            )
            == 2
        )
        assert "alpha must lie strictly between 0 and 1" in capsys.readouterr().err


def test_run_eval_picks_up_the_gate_in_the_model_dir_by_default(tmp_path):
    from evaluators.runner import run_eval

    gate_file = write_sets(tmp_path)
    model_dir = tmp_path / "variant"
    model_dir.mkdir()
    (model_dir / "domain_gate.json").write_bytes(gate_file.read_bytes())
    with endpoint(reply, max_model_len=4096, logprob=lambda r: -2.5 if wrong_item(r) else -0.05) as (url, _):
        card = ReportCard.load(
            run_eval(
                url,
                "m",
                [f"jsonl={tmp_path / 'bio.jsonl'}"],
                tmp_path / "out",
                model_dir=str(model_dir),
                progress=False,
            )
        )
        plain = ReportCard.load(
            run_eval(
                url,
                "m",
                [f"jsonl={tmp_path / 'bio.jsonl'}"],
                tmp_path / "plain",
                model_dir=str(model_dir),
                progress=False,
                gate=None,
            )
        )
    section = card.reliability
    assert section.gate_sha256 and section.gate_threshold == 0.5 and section.domains["in_domain"].n > 0
    assert section.domains["cross_domain"].n == 0 and section.domains["cross_domain"].certificate.reason
    assert "unpruned" in section.base_check_off  # a model dir without pruning.json is the base itself
    assert list(plain.reliability.domains) == ["all"]


def test_with_gate_recall_the_domains_use_the_threshold_the_card_gives_the_gateway(tmp_path):
    gate_file = write_sets(tmp_path)
    with endpoint(reply, max_model_len=4096, logprob=lambda r: -2.5 if wrong_item(r) else -0.05) as (url, _):
        assert (
            main(
                [
                    "eval",
                    "--endpoint",
                    url,
                    "--model",
                    "m",
                    "--task-file",
                    str(tmp_path / "tasks.yaml"),
                    "--tasks",
                    "r_bio,r_general",
                    "--out",
                    str(tmp_path / "out"),
                    "--gate",
                    str(gate_file),
                    "--gate-recall",
                    "0.9",
                    "--no-progress",
                ]
            )
            == 0
        )
    card = ReportCard.load(tmp_path / "out")
    assert card.reliability.gate_threshold == card.domain_gate.threshold
