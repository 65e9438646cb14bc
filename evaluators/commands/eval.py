"""`moeprune eval`: evaluate one variant through an OpenAI-compatible endpoint, write its report card."""

from __future__ import annotations

import argparse
import os

from moeprune.errors import UserError


PARAM_DESTS = {"out_dir": "out"}  # Python parameter -> argparse dest (the CLI's flag hints)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", required=True, help="base URL of an OpenAI-compatible server (vLLM, gateway)")
    parser.add_argument("--model", required=True, help="model name the endpoint serves")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--tasks", help="comma-separated task names, suites, or FORMAT=PATH for a local data file "
                                       "(formats: jsonl, summaries, pubmedqa, medqa, medmcqa, mmlu, medhalt_fct, "
                                       "medhalt_nota, medhalt_fake)")
    which.add_argument("--suite", choices=["biomedical", "general", "all"], help="a suite of the shipped sets")
    parser.add_argument("--task-file", help="YAML file of extra task entries (name, format, path, domain, ...)")
    parser.add_argument("--out", required=True, help="output directory (report_card.json, items.jsonl, cache/)")
    parser.add_argument("--variant", help="variant name in the report card (default: the model name)")
    parser.add_argument("--model-dir", help="the variant's checkpoint dir (its pruning.json goes into the card)")
    parser.add_argument("--base-endpoint", help="endpoint of the unpruned base (recovery, base_disagreement)")
    parser.add_argument("--base-model", help="model name of the base at --base-endpoint")
    parser.add_argument("--base-variant", help="name of the base variant in the card (default: --base-model)")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--api-key", help="API key for the endpoints (prefer --api-key-env)")
    keys.add_argument("--api-key-env", help="name of an environment variable holding the API key")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight per endpoint (default 4)")
    parser.add_argument("--limit", type=int, help="evaluate at most N items per task")
    parser.add_argument("--flag-precision", type=float, default=0.8,
                        help="target precision of the calibrated flag thresholds (default 0.8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration split and judge order")
    parser.add_argument("--judge-endpoint", help="endpoint of a judge model for pairwise variant-vs-base verdicts")
    parser.add_argument("--judge-model", help="model name at --judge-endpoint")
    parser.add_argument("--nli-model", help="local path of an NLI sequence-classification model (faithfulness)")
    parser.add_argument("--cache", help="response cache file (default OUT/cache/responses.jsonl); share one "
                                        "between variant runs so the base is asked only once")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from evaluators.runner import run_eval
    from evaluators.tasks import load_task_file, resolve_tasks, shipped_tasks

    api_key = args.api_key
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise UserError(f"environment variable {args.api_key_env} is not set or empty")
    registry = shipped_tasks()
    if args.task_file:
        registry.update(load_task_file(args.task_file))
    specs = [args.suite] if args.suite else args.tasks.split(",")
    tasks = resolve_tasks(specs, registry)
    card = run_eval(
        args.endpoint, args.model, tasks, args.out, variant=args.variant, api_key=api_key,
        base_endpoint=args.base_endpoint, base_model=args.base_model, base_variant=args.base_variant,
        concurrency=args.concurrency, model_dir=args.model_dir, flag_precision=args.flag_precision,
        seed=args.seed, limit=args.limit, judge_endpoint=args.judge_endpoint, judge_model=args.judge_model,
        judge_api_key=api_key, nli_model=args.nli_model, cache_path=args.cache, progress=not args.no_progress,
    )
    print(card)
    return 0
