"""`run_eval`: evaluate one variant on a list of tasks and write its report card.

Order of work: check the endpoints (one-line errors), evaluate the base first
when one is given (its answers feed recovery, and its cached generations are
reused when scoring the variant's answers under it), then the variant, then
aggregate metrics, calibrate flag thresholds, and write `report_card.json`,
`items.jsonl` (every answer, for inspection) and `run_info.json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from pathlib import Path

from evaluators.cache import ResponseCache
from evaluators.card import SCHEMA_VERSION, flags_section, pruning_info, signal_quality, write_card
from evaluators.client import EndpointClient, EndpointError
from evaluators.evaluate import evaluate_task
from evaluators.tasks import Task, resolve_tasks
from evaluators.task_metrics import mc_metrics, selected, summary_metrics, with_recovery
from moeprune.errors import UserError


def run_eval(endpoint, model, tasks, out_dir, *, variant=None, api_key=None, base_endpoint=None,
             base_model=None, concurrency=4, model_dir=None, flag_precision=0.8, seed=0, limit=None,
             base_variant=None, judge_endpoint=None, judge_model=None, judge_api_key=None, nli_model=None,
             cache_path=None, progress=True) -> Path:
    """Evaluate `model` at `endpoint` on `tasks` (names, suites, FORMAT=PATH or Task objects).

    Returns the path of the report_card.json written under out_dir.
    """
    if not 0 < flag_precision <= 1:
        raise UserError(f"flag_precision must be in (0, 1], got {flag_precision}", param="flag_precision")
    if limit is not None and limit < 1:
        raise UserError(f"limit must be at least 1, got {limit}", param="limit")
    if (base_endpoint is None) != (base_model is None):
        base_endpoint = base_endpoint or endpoint
        base_model = base_model or model
    if judge_endpoint and not base_endpoint:
        raise UserError("a judge endpoint compares the variant with the base: also give the base endpoint and model", param="base_endpoint")
    if isinstance(tasks, str):
        tasks = tasks.split(",")
    specs = [t for t in tasks if isinstance(t, str)]
    resolved = resolve_tasks(specs) if specs else []
    resolved += [t for t in tasks if isinstance(t, Task)]
    loaded = [(task, task.load()) for task in resolved]  # bad data files fail before any request
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = dict(endpoint=endpoint, model=model, variant=variant or model, api_key=api_key,
                    base_endpoint=base_endpoint, base_model=base_model, concurrency=concurrency,
                    model_dir=model_dir, flag_precision=flag_precision, seed=seed, limit=limit,
                    base_variant=base_variant, judge_endpoint=judge_endpoint, judge_model=judge_model,
                    judge_api_key=judge_api_key, nli_model=nli_model, progress=progress)
    cache = ResponseCache(cache_path or out_dir / "cache" / "responses.jsonl")
    try:
        return asyncio.run(_run(loaded, out_dir, cache, **settings))
    except EndpointError as exc:
        raise UserError(f"request failed: {exc}") from None


def _split(task: Task, items: list, limit: int | None) -> tuple[list, list]:
    shots, rest = items[:task.few_shot], items[task.few_shot:]
    if not rest:
        raise UserError(f"task {task.name}: no items left after {task.few_shot} few-shot examples")
    return shots, rest[:limit] if limit else rest


async def _run(loaded, out_dir: Path, cache: ResponseCache, *, endpoint, model, variant, api_key,
               base_endpoint, base_model, concurrency, model_dir, flag_precision, seed, limit, base_variant,
               judge_endpoint, judge_model, judge_api_key, nli_model, progress) -> Path:
    pruning = pruning_info(model_dir)
    clients = [EndpointClient(endpoint, model, api_key=api_key, concurrency=concurrency, cache=cache)]
    if base_endpoint:
        clients.append(EndpointClient(base_endpoint, base_model, api_key=api_key, concurrency=concurrency,
                                      cache=cache))
    async with contextlib.AsyncExitStack() as stack:
        for each in clients:
            await stack.enter_async_context(each)
            await each.check()
        client = clients[0]
        base_client = clients[1] if len(clients) > 1 else None
        tasks_out, all_records, scorer, judge_sent = {}, [], None, []
        for task, items in loaded:
            shots, items = _split(task, items, limit)
            base_records = None
            if base_client:
                base_records = await evaluate_task(base_client, task, items, shots, label="base:",
                                                   progress=progress)
            records = await evaluate_task(client, task, items, shots, base_client=base_client,
                                          label=f"{variant}:", progress=progress)
            if task.kind == "summarisation" and nli_model:
                from evaluators.faithfulness import NLIScorer, add_faithfulness

                scorer = scorer or NLIScorer(nli_model)
                for each in (records, base_records or []):
                    add_faithfulness(nli_model, each, scorer)
            aggregate = summary_metrics if task.kind == "summarisation" else mc_metrics
            metrics = aggregate(records, seed)
            base_metrics = aggregate(base_records, seed) if base_records else None
            if judge_endpoint and base_records:
                from evaluators.judge import judge_task

                metrics.update(await judge_task(judge_endpoint, judge_model or model, judge_api_key, cache,
                                                concurrency, task, items, records, base_records, seed, judge_sent))
            tasks_out[task.name] = {
                "domain": task.domain, "kind": task.kind, "n": len(items), "version": task.version,
                "format": task.format, "metrics": selected(with_recovery(metrics, base_metrics), task.metrics),
            }
            all_records += [{**r, "task": task.name} for r in records]
    flags, flags_missing = flags_section(all_records, flag_precision, seed)
    card = {
        "schema_version": SCHEMA_VERSION, "variant": variant, "model": model,
        "model_dir": str(Path(model_dir).resolve()) if model_dir else None, "pruning": pruning,
        "base": (base_variant or base_model) if base_endpoint else None,
        "endpoint": endpoint, "tasks": tasks_out, "flags": flags, "flags_unavailable": flags_missing,
        "signal_quality": signal_quality(all_records),
        "seed": seed,
    }
    _write_items(out_dir / "items.jsonl", all_records)
    sent = sum(each.sent for each in clients) + sum(judge_sent)
    (out_dir / "run_info.json").write_text(json.dumps(
        {"requests_sent": sent, "cache_hits": cache.hits, "cache_entries": len(cache)}, indent=2) + "\n")
    return write_card(out_dir, card)


def _clean(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _write_items(path: Path, records: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(_clean({k: v for k, v in record.items() if k != "source"})) + "\n")
