"""`run_eval`: evaluate one variant on a list of tasks and write its report card.

Order of work: check the endpoints (one-line errors; their context length is
read from /v1/models), evaluate the base first when one is given (its answers
feed recovery, and its cached generations are reused when scoring the
variant's answers under it), then the variant, then aggregate metrics,
calibrate flag thresholds, fold in lm-evaluation-harness results if asked,
and write `report_card.json`, `items.jsonl` (every answer, for inspection)
and `run_info.json`.

Metrics are computed over the items that were answered; failed and skipped
items are counted in the card per task (`n_failed` + `failures`, `n_skipped`
+ `skipped`, with reasons) and listed in items.jsonl. With a base, recovery
compares the same items: those both answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from pathlib import Path

from evaluators.cache import ResponseCache
from evaluators.card import SCHEMA_VERSION, flags_section, pruning_info, signal_quality, write_card
from evaluators.client import EndpointClient, EndpointError
from evaluators.config import MODEL_DIR_GATE, EvalConfig
from evaluators.evaluate import evaluate_task
from evaluators.gate_domains import GateAssignment, gate_path, load_assignment
from evaluators.item_evaluators import task_decoding
from evaluators.items_file import ITEMS_NAME, write_items
from evaluators.loaders.common import skipped_summary
from evaluators.records import FailedRecord, ItemRecord, SkippedRecord
from evaluators.reliability_card import checkpoint_digest, record_key, reliability_section
from evaluators.task_kinds import task_kind
from evaluators.task_metrics import selected, with_recovery
from evaluators.task_prompts import check_templates
from evaluators.tasks import Task, resolve_tasks
from evaluators.thinking import ThinkingControl, task_thinking
from moeprune.cli_config import validate_options
from moeprune.errors import UserError


def run_eval(endpoint, model, tasks, out_dir, config: EvalConfig | None = None, **options) -> Path:
    """Evaluate `model` at `endpoint` on `tasks` (names, suites, FORMAT=PATH or Task objects).

    The options are an `EvalConfig` (evaluators/config.py: every option, its default and its meaning)
    and/or its fields as keyword arguments (they override `config`'s).

    `thinking`: the run's chat_template_kwargs / reasoning_effort (a task's own override them).
    `lm_eval`: an evaluators.lm_eval_bridge.LmEvalRun whose results are folded into the card.
    `max_tokens`: a cap on every task's new tokens (quick runs; the card's `decoding` shows what was sent).
    `summary_scorers`: an evaluators.summary_quality.SummaryScorers (SummaC, BERTScore, the claim judge);
    `nli_model` alone is the SummaC-ZS shorthand. `judge_endpoint`/`judge_model` may be lists (several judges).
    `alpha`, `delta`, `split_seed`: the reliability section's certificates (docs/reliability.md).
    `gate`: the domain gate assigning each item's `gate_domain` (evaluators/gate_domains.py): a GateAssignment,
    a domain_gate.json path (at its own threshold), MODEL_DIR_GATE (default: the one in `model_dir`, if any), or
    None (no gate: every item in the domain "all").
    Returns the path of the report_card.json written under out_dir.
    """
    config = validate_options(EvalConfig, config, options, caller="run_eval")
    (
        variant,
        api_key,
        base_endpoint,
        base_model,
        concurrency,
        model_dir,
        flag_precision,
        seed,
        limit,
        base_variant,
        judge_endpoint,
        judge_model,
        judge_api_key,
        nli_model,
        cache_path,
        progress,
        thinking,
        lm_eval,
        max_tokens,
        summary_scorers,
        judge_allow_tie,
        alpha,
        delta,
        split_seed,
        gate,
    ) = (
        config.variant,
        config.api_key,
        config.base_endpoint,
        config.base_model,
        config.concurrency,
        config.model_dir,
        config.flag_precision,
        config.seed,
        config.limit,
        config.base_variant,
        config.judge_endpoint,
        config.judge_model,
        config.judge_api_key,
        config.nli_model,
        config.cache_path,
        config.progress,
        config.thinking,
        config.lm_eval,
        config.max_tokens,
        config.summary_scorers,
        config.judge_allow_tie,
        config.alpha,
        config.delta,
        config.split_seed,
        config.gate,
    )
    if not 0 < flag_precision <= 1:
        raise UserError(f"flag_precision must be in (0, 1], got {flag_precision}", param="flag_precision")
    if limit is not None and limit < 1:
        raise UserError(f"limit must be at least 1, got {limit}", param="limit")
    if max_tokens is not None and max_tokens < 1:
        raise UserError(f"max_tokens must be at least 1, got {max_tokens}", param="max_tokens")
    for name, value in (("alpha", alpha), ("delta", delta)):
        if not 0 < value < 1:
            raise UserError(f"{name} must lie strictly between 0 and 1 (e.g. 0.05), got {value}", param=name)
    if (base_endpoint is None) != (base_model is None):
        base_endpoint = base_endpoint or endpoint
        base_model = base_model or model
    from evaluators.judge_endpoints import judge_endpoints
    from evaluators.summary_quality import SummaryScorers

    judges = judge_endpoints(judge_endpoint, judge_model, judge_api_key, model)
    scorers = summary_scorers or SummaryScorers()
    if nli_model and not scorers.nli_model:
        scorers.nli_model = nli_model
    if judges and not base_endpoint and not scorers.hallucination_judge:
        raise UserError(
            "a judge endpoint compares the variant with the base: also give the base endpoint and model",
            param="base_endpoint",
        )
    scorers.check()  # a wrong local model path fails before any request
    gate = resolve_gate(gate, model_dir)
    if isinstance(tasks, str):
        tasks = tasks.split(",")
    specs = [t for t in tasks if isinstance(t, str)]
    resolved = resolve_tasks(specs) if specs else []
    resolved += [t for t in tasks if isinstance(t, Task)]
    if not resolved and lm_eval is None:
        raise UserError("no tasks given; name tasks, a suite, or lm-eval tasks (--lm-eval)", param="tasks")
    loaded = [(task, task.load()) for task in resolved]  # bad data files fail before any request
    for task, items in loaded:
        if items:
            check_templates(task, items[0])  # a template naming a missing field fails before any request
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = dict(
        endpoint=endpoint,
        model=model,
        variant=variant or model,
        api_key=api_key,
        base_endpoint=base_endpoint,
        base_model=base_model,
        concurrency=concurrency,
        model_dir=model_dir,
        flag_precision=flag_precision,
        seed=seed,
        limit=limit,
        base_variant=base_variant,
        judges=judges if base_endpoint else [],
        scorers=scorers,
        judge_allow_tie=judge_allow_tie,
        progress=progress,
        thinking=thinking or ThinkingControl(),
        max_tokens=max_tokens,
        alpha=alpha,
        delta=delta,
        split_seed=split_seed,
        gate=gate,
    )
    cache = ResponseCache(cache_path or out_dir / "cache" / "responses.jsonl")
    started = time.monotonic()
    try:
        card, records, run_info = asyncio.run(_run(loaded, cache, **settings))
    except EndpointError as exc:
        raise UserError(
            f"endpoint unreachable, run stopped: {exc}; every finished request is cached, "
            "so the rerun resumes where this one stopped"
        ) from None
    run_info["elapsed_s"] = round(time.monotonic() - started, 1)
    if lm_eval is not None:
        started = time.monotonic()
        lm_tasks, lm_info = lm_eval.run(endpoint, model, out_dir, api_key=api_key, thinking=thinking, limit=limit)
        card["tasks"].update(lm_tasks)
        run_info["lm_eval"] = {**lm_info, "elapsed_s": round(time.monotonic() - started, 1)}
    write_items(out_dir / ITEMS_NAME, records)
    (out_dir / "run_info.json").write_text(json.dumps(run_info, indent=2) + "\n")
    return write_card(out_dir, card)


def _split(task: Task, items: list, limit: int | None) -> tuple[list, list]:
    shots, rest = items[: task.few_shot], items[task.few_shot :]
    if not rest:
        raise UserError(f"task {task.name}: no items left after {task.few_shot} few-shot examples")
    return shots, rest[:limit] if limit else rest


def answered(records: list[ItemRecord]) -> list[ItemRecord]:
    return [r for r in records if r.answered]


def run_counts(records: list[ItemRecord], load_skipped: list | None = None) -> dict:
    """The card's per-task counts: n (scored), n_failed + failures, n_skipped + skipped (load and run time)."""
    failed = Counter(r.reason for r in records if isinstance(r, FailedRecord))
    skipped = skipped_summary(list(load_skipped or []))
    for reason, count in Counter(r.reason for r in records if isinstance(r, SkippedRecord)).items():
        skipped[reason] = {"count": count, "lines": []}
    counts = {
        "n": len(answered(records)),
        "n_failed": sum(failed.values()),
        "failures": dict(failed),
        "n_skipped": sum(entry["count"] for entry in skipped.values()),
        "skipped": skipped,
    }
    truncated = sum(getattr(r, "truncated", None) is not None for r in records)
    if truncated:
        counts["n_truncated"] = truncated
    return counts


def capped(task: Task, max_tokens: int | None, contexts: list[int | None]) -> Task:
    """The task with its new-token budget capped by the run's `max_tokens` and below each endpoint's context.

    vLLM refuses a max_tokens above max_model_len outright (and clamps a smaller one to what the prompt
    leaves), so a task written for a long-context server still runs on a short one.
    """
    limits = [max_tokens] if max_tokens else []
    limits += [context - 1 for context in contexts if context and context > 1]
    if not limits or task.max_tokens <= min(limits):
        return task
    return task.model_copy(update={"decoding": task.decoding.model_copy(update={"max_tokens": min(limits)})})


def _decoding_sent(task: Task) -> dict:
    decoding = task_decoding(task)
    return {
        "temperature": decoding.temperature,
        "top_p": decoding.top_p,
        "max_tokens": decoding.max_tokens,
        "retries_on_empty": decoding.retries_on_empty,
    }


async def _run(
    loaded,
    cache: ResponseCache,
    *,
    endpoint,
    model,
    variant,
    api_key,
    base_endpoint,
    base_model,
    concurrency,
    model_dir,
    flag_precision,
    seed,
    limit,
    base_variant,
    judges,
    scorers,
    judge_allow_tie,
    progress,
    thinking,
    max_tokens,
    alpha,
    delta,
    split_seed,
    gate,
) -> tuple[dict, list[dict], dict]:
    pruning = pruning_info(model_dir)
    clients = [EndpointClient(endpoint, model, api_key=api_key, concurrency=concurrency, cache=cache)]
    if base_endpoint:
        clients.append(EndpointClient(base_endpoint, base_model, api_key=api_key, concurrency=concurrency, cache=cache))
    async with contextlib.AsyncExitStack() as stack:
        for each in clients:
            await stack.enter_async_context(each)
            await each.check()
        client = clients[0]
        base_client = clients[1] if len(clients) > 1 else None
        # Each record's JSON form is made once: the summary scorers add their fields to it, the metrics, the
        # card and the reliability section read it, and it is the items.jsonl line (evaluators/records.py).
        tasks_out, typed_records, all_records, judge_sent = {}, [], [], []
        for task, items in loaded:
            task = capped(task, max_tokens, [each.max_model_len for each in clients])
            load_skipped = getattr(items, "skipped", None)  # rows the loader could not interpret
            shots, items = _split(task, items, limit)
            sent = task_thinking(thinking, task)
            base_records = None
            if base_client:
                base_records = await evaluate_task(
                    base_client, task, items, shots, label="base:", progress=progress, thinking=sent
                )
            records = await evaluate_task(
                client,
                task,
                items,
                shots,
                base_client=base_client,
                label=f"{variant}:",
                progress=progress,
                thinking=sent,
                gate=gate,
            )
            kind = task_kind(task.kind)
            jsons = [record.to_json() for record in records]
            done = [data for record, data in zip(records, jsons) if record.answered]
            done_ids = {r.id for r in answered(records)}
            base_done = [r.to_json() for r in answered(base_records or []) if r.id in done_ids] or None
            if kind.summary_scored:
                for each in (done, base_done or []):
                    await scorers.score(each, cache, concurrency, judge_sent)
            metrics = kind.metrics(task, done, seed) if done else {}
            base_metrics = kind.metrics(task, base_done, seed) if base_done else None
            per_judge = None
            if judges and base_done:
                pooled, per_judge = await _judged(
                    judges, cache, concurrency, items, done, base_done, seed, judge_sent, judge_allow_tie
                )
                metrics.update(pooled)
            tasks_out[task.name] = {
                "domain": task.domain,
                "kind": task.kind,
                "version": task.version,
                "format": task.format,
                **run_counts(records, load_skipped),
                "metrics": selected(with_recovery(metrics, base_metrics), task.metrics),
                "decoding": _decoding_sent(task),
                **({"judges": per_judge} if per_judge else {}),
                **({"thinking": sent.as_card()} if task.template == "chat" else {}),
            }
            typed_records += records
            all_records += [{**data, "task": task.name} for data in jsons]
    scored = [data for record, data in zip(typed_records, all_records) if record.answered]
    flags, flags_missing = flags_section(scored, flag_precision, seed)
    card = {
        "schema_version": SCHEMA_VERSION,
        "variant": variant,
        "model": model,
        "model_dir": str(Path(model_dir).resolve()) if model_dir else None,
        "pruning": pruning,
        "base": (base_variant or base_model) if base_endpoint else None,
        "endpoint": clients[0].endpoint,
        "tasks": tasks_out,
        "flags": flags,
        "flags_unavailable": flags_missing,
        "signal_quality": signal_quality(scored),
        "seed": seed,
    }
    section, per_record = reliability_section(
        scored,
        alpha=alpha,
        delta=delta,
        split_seed=split_seed,
        weights_sha256=checkpoint_digest(model_dir),
        gate_sha256=gate.sha256 if gate else None,
        gate_threshold=gate.threshold if gate else None,
        base_check_off=base_check_off(base_client is not None, model_dir is not None and pruning is None),
    )
    if section is not None:
        card["reliability"] = section
    for record in scored:
        if record_key(record) in per_record:
            record["reliability"] = per_record[record_key(record)]
    run_info = {
        "requests_sent": sum(each.sent for each in clients) + sum(judge_sent),
        "cache_hits": cache.hits,
        "cache_entries": len(cache),
        "items_failed": sum(isinstance(r, FailedRecord) for r in typed_records),
        "items_skipped": sum(isinstance(r, SkippedRecord) for r in typed_records),
    }
    return card, all_records, run_info


def resolve_gate(gate, model_dir) -> GateAssignment | None:
    if isinstance(gate, GateAssignment) or gate is None:
        return gate
    path = gate_path(None, model_dir) if gate == MODEL_DIR_GATE else gate_path(gate, None)
    return load_assignment(path) if path is not None else None


def base_check_off(base_given: bool, unpruned: bool = False) -> str:
    """Why the card's p_wrong has no base cross-check (used only when no answer carries base_mean_logprob)."""
    if not base_given and unpruned:
        return "off: the evaluated model is unpruned (its --model-dir has no pruning.json): it is the base"
    if not base_given:
        return (
            "off: no base endpoint given (--base-endpoint/--base-model), so base_mean_logprob, the signal "
            "aimed at confident pruning errors, is missing; give the unpruned base's endpoint to turn it on"
        )
    return (
        "off: the base endpoint scored none of the answers (it returned no prompt logprobs); serve the base "
        "with vLLM, which supports prompt_logprobs, to turn it on"
    )


async def _judged(
    judges, cache, concurrency, items, records, base_records, seed, judge_sent, allow_tie
) -> tuple[dict, dict]:
    """The pairwise judges' pooled and per-judge shares over the items both variant and base answered."""
    from evaluators.judge import judge_task

    by_id = {r["id"]: r for r in base_records}
    item_of = {item.id: item for item in items}
    pairs = [(item_of[r["id"]], r, by_id[r["id"]]) for r in records if r["id"] in by_id]
    return await judge_task(
        judges,
        cache,
        concurrency,
        [p[0] for p in pairs],
        [p[1] for p in pairs],
        [p[2] for p in pairs],
        seed,
        allow_tie=allow_tie,
        sent=judge_sent,
    )
