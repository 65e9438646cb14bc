"""An interrupted run resumes: finished requests come from the cache, only the rest is sent."""

import json

from evaluators.runner import run_eval
from tests.evaluators.endpoints import endpoint


def test_rerun_after_partial_run_sends_only_missing_requests(tmp_path, eval_sets):
    task = [f"jsonl={eval_sets / 'bio.jsonl'}"]
    with endpoint(lambda request: "A", model="m") as (url, engine):
        run_eval(url, "m", task, tmp_path, limit=3, progress=False)  # "interrupted" after 3 items
        after_partial = len(engine.requests)
        run_eval(url, "m", task, tmp_path, progress=False)  # all 8 items
        after_full = len(engine.requests)
        run_eval(url, "m", task, tmp_path, progress=False)
        after_rerun = len(engine.requests)
    # Per item: one generation + one (rejected) option-scoring request.
    assert after_partial == 3 * 2
    assert after_full - after_partial == 5 * 2
    assert after_rerun == after_full
    assert json.loads((tmp_path / "run_info.json").read_text())["requests_sent"] == 0


def test_a_task_reports_only_the_metrics_it_lists(tmp_path, eval_sets):
    from evaluators.tasks import Task

    task = Task("only_em", "jsonl", eval_sets / "bio.jsonl", metrics=("exact_match", "hallucination_rate"))
    with endpoint(lambda request: "A", model="m") as (url, _):
        card = json.loads(run_eval(url, "m", [task], tmp_path, progress=False).read_text())
    assert set(card["tasks"]["only_em"]["metrics"]) == {"exact_match", "hallucination_rate"}


def test_a_shared_cache_file_serves_a_second_output_dir(tmp_path, eval_sets):
    from moeprune.cli import main

    shared = tmp_path / "shared.jsonl"
    args = [
        "eval",
        "--model",
        "m",
        "--tasks",
        f"jsonl={eval_sets / 'bio.jsonl'}",
        "--no-progress",
        "--cache",
        str(shared),
    ]
    with endpoint(lambda request: "A", model="m") as (url, engine):
        assert main([*args, "--endpoint", url, "--out", str(tmp_path / "one")]) == 0
        first = len(engine.requests)
        assert main([*args, "--endpoint", url, "--out", str(tmp_path / "two")]) == 0
    assert first > 0 and len(engine.requests) == first
    assert not (tmp_path / "two" / "cache").exists()
