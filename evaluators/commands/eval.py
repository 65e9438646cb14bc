"""`moeprune eval`: evaluate one variant through an OpenAI-compatible endpoint, write its report card."""

from __future__ import annotations

import argparse
import os

from moeprune.errors import UserError

PARAM_DESTS = {"out_dir": "out"}  # Python parameter -> argparse dest (the CLI's flag hints; EvalConfig's are the same)


def configure(parser: argparse.ArgumentParser) -> None:
    from evaluators.config import EvalConfig
    from moeprune.cli_config import add_model_arguments

    # CLI-only: run_eval's arguments (endpoint, model, tasks, out_dir) and how the tasks are named and bound.
    parser.add_argument("--endpoint", required=True, help="base URL of an OpenAI-compatible server (vLLM, gateway)")
    parser.add_argument("--model", required=True, help="model name the endpoint serves")
    which = parser.add_mutually_exclusive_group()  # one of them, or --lm-eval alone
    which.add_argument(
        "--tasks",
        help="comma-separated task names, suites, or FORMAT=PATH for a local data file "
        "(formats: evaluators/loaders/__init__.py LOADERS, e.g. jsonl, summaries, "
        "pubmedqa, medqa, medmcqa, mmlu, medhalt_nota, medinst, rct)",
    )
    which.add_argument(
        "--suite",
        help="a suite (evaluators/suites/): biomedical, general, all, study-biomedical, "
        "study-general, study-summaries, study-all",
    )
    parser.add_argument(
        "--data",
        action="append",
        metavar="KEY=PATH",
        help="local copy of a task's data file, by the key its task file names (repeatable)",
    )
    parser.add_argument(
        "--data-dir",
        help="directory holding the published data sets under the file names the "
        "task files give (docs/evaluators.md, study tasks)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="abort on a data row a loader cannot interpret (default: skip it, counted in the card)",
    )
    parser.add_argument("--task-file", help="YAML file of extra task entries (name, format, path, domain, ...)")
    parser.add_argument("--out", required=True, help="output directory (report_card.json, items.jsonl, cache/)")
    # Generated from EvalConfig (flag, default, help); called in parts to keep the --help order.
    add_model_arguments(
        parser, EvalConfig, only=["variant", "model_dir", "base_endpoint", "base_model", "base_variant"]
    )
    # CLI-only: --api-key and --api-key-env exclude each other; run() resolves the key (also the judges').
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--api-key", help=EvalConfig.model_fields["api_key"].description)
    keys.add_argument("--api-key-env", help="name of an environment variable holding the API key")
    add_model_arguments(
        parser,
        EvalConfig,
        only=["concurrency", "limit", "max_tokens", "flag_precision", "seed", "cache_path", "progress"],
    )
    # CLI-only: the gate flags are resolved into run_eval's `gate` object (and the gate-quality section) in run().
    parser.add_argument(
        "--gate-recall",
        type=float,
        metavar="R",
        help="score the variant's domain gate (in --model-dir, or --gate) on the tasks: AUROC "
        "in-domain vs cross-domain and the threshold keeping R of in-domain items (e.g. 0.95)",
    )
    parser.add_argument(
        "--gate",
        help="domain_gate.json that assigns each item's gate_domain (in_domain / "
        "cross_domain) and the gate_score signal, and that --gate-recall scores "
        "(default: the one in --model-dir, if any); name a pruned variant's gate "
        "to evaluate the unpruned base per that variant's domains",
    )
    parser.add_argument(
        "--gate-threshold",
        type=float,
        metavar="P",
        help="gate threshold for gate_domain (default: --gate-recall's choice, else the gate file's)",
    )
    add_model_arguments(parser, EvalConfig, only=["alpha", "delta", "split_seed"])
    # CLI-only: the thinking, lm-eval and judge/summary-scorer flags build objects (their modules declare them).
    from evaluators.lm_eval_bridge import add_lm_eval_arguments
    from evaluators.thinking import add_thinking_arguments

    add_thinking_arguments(parser)
    add_lm_eval_arguments(parser)
    from evaluators.summary_quality import add_summary_scoring_arguments

    add_summary_scoring_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from evaluators.config import EvalConfig
    from evaluators.runner import run_eval
    from evaluators.summary_quality import summary_scorers_from_args
    from evaluators.tasks import bind_data, load_task_file, parse_data_bindings, resolve_tasks, shipped_tasks
    from moeprune.cli_config import model_from_namespace

    api_key = args.api_key
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise UserError(f"environment variable {args.api_key_env} is not set or empty")
    registry = shipped_tasks()
    if args.task_file:
        registry.update(load_task_file(args.task_file))
    from evaluators.lm_eval_bridge import lm_eval_from_args
    from evaluators.thinking import thinking_from_args

    thinking, lm_eval = thinking_from_args(args), lm_eval_from_args(args)
    if not (args.suite or args.tasks or lm_eval):
        raise UserError("name what to run: --tasks, --suite, or --lm-eval", param="tasks")
    specs = [args.suite] if args.suite else (args.tasks.split(",") if args.tasks else [])
    tasks = resolve_tasks(specs, registry) if specs else []
    tasks = bind_data(tasks, parse_data_bindings(args.data), args.data_dir, args.strict)
    gate = None
    if args.gate_recall is not None:  # before the run: a missing gate fails in a second
        from evaluators.gate_quality import load_eval_gate

        gate = load_eval_gate(args.gate, args.model_dir, args.gate_recall)
    assignment = gate_assignment(args, tasks, gate)
    config = model_from_namespace(
        EvalConfig,
        args,
        api_key=api_key,
        judge_endpoint=args.judge_endpoint,
        judge_model=args.judge_model,
        judge_api_key=api_key,
        judge_allow_tie=args.judge_allow_tie,
        thinking=thinking,
        lm_eval=lm_eval,
        summary_scorers=summary_scorers_from_args(args, api_key),
        gate=assignment,
    )
    card = run_eval(args.endpoint, args.model, tasks, args.out, config)
    if gate is not None:
        from evaluators.gate_quality import add_gate_quality

        add_gate_quality(card, gate, tasks, args.gate_recall)
    note_reliability(card)
    print(card)
    return 0


def gate_assignment(args: argparse.Namespace, tasks, scored_gate):
    """The gate that assigns gate domains, at the threshold the gateway will apply (evaluators/gate_domains.py)."""
    from evaluators.gate_domains import gate_path, load_assignment

    path = gate_path(args.gate, args.model_dir)
    if path is None:
        if args.gate_threshold is not None:
            raise UserError(
                "--gate-threshold needs a domain gate: pass --gate FILE or a --model-dir holding domain_gate.json",
                param="gate_threshold",
            )
        return None
    threshold = args.gate_threshold
    if threshold is None and scored_gate is not None:
        from evaluators.gate_quality import gate_quality

        threshold = gate_quality(scored_gate, [(task, task.load()) for task in tasks], args.gate_recall)["threshold"]
    return load_assignment(path, threshold)


def note_reliability(card_path) -> None:
    """One stderr line per thing the reliability section could not do, so a run never hides it."""
    import sys

    from evaluators.gate_quality import gate_warnings
    from moeprune.formats.report_card import ReportCard

    card = ReportCard.load(card_path)
    for warning in gate_warnings(card.domain_gate) if card.domain_gate is not None else []:
        print(f"note: {warning}", file=sys.stderr)
    section = card.reliability
    if section is None:
        print("note: no labelled answers, so the card has no reliability section (no certificates)", file=sys.stderr)
        return
    if section.base_check_off:
        print(f"note: base cross-check {section.base_check_off}", file=sys.stderr)
    for name, domain in section.domains.items():
        if domain.certificate.status != "certified":
            print(f"note: {name} is uncertified: {domain.certificate.reason}", file=sys.stderr)
