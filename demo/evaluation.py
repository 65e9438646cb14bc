"""Evaluate the base and every variant through real vLLM servers, at most `parallel` at a time.

Each variant gets its own server (start-up ~30 s on CPU), is evaluated with
`evaluators.runner.run_eval` on the shipped sets, and the server is stopped.
A finished report card is reused when the same tasks were asked of the same
checkpoint, so a second run evaluates nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from demo.engine import running_engine
from demo.shipped_cards import CARD_FILE, STAMP_FILE, install_shipped_card
from demo.variants import Variant
from moeprune.formats.hashing import weights_digest
from moeprune.formats.manifest import PruningManifest
from moeprune.progress import progress as progress_display
from moeprune.reliability.signals import SIGNALS_REVISION

BASE_NAME = "base"
# The served pair and the base are certified too, so they answer the reliability sets as well
# (>= 600 labelled answers per domain; docs/reliability.md).
SERVED_TASKS = "all,reliability"
UTILITY_TASKS = "all"
GATE_RECALL = 0.95


def _task_fingerprint(tasks: str) -> list[dict]:
    """What decides a card besides the checkpoint: each task's settings and its items file's digest."""
    from evaluators.tasks import resolve_tasks

    fingerprint = []
    for task in resolve_tasks(tasks.split(",")):
        fields = task.model_dump(mode="json") if hasattr(task, "model_dump") else dataclasses.asdict(task)
        settings = {k: v for k, v in fields.items() if k not in ("path", "description", "data")}
        settings["format"] = task.format
        settings["items_sha256"] = hashlib.sha256(Path(task.path).read_bytes()).hexdigest()
        fingerprint.append(json.loads(json.dumps(settings)))
    return fingerprint


def _stamp(variant: Variant, tasks: str, limit: int | None) -> dict:
    # By content, never by path: a card shipped with the weights (demo/shipped_cards.py) matches on any machine.
    manifest = PruningManifest.load(variant.model_dir)
    files = manifest.files if manifest is not None else {"weights_sha256": weights_digest(variant.model_dir)}
    return {
        "tasks": _task_fingerprint(tasks),
        "limit": limit,
        "checkpoint": files,
        "signals_revision": SIGNALS_REVISION,
    }


def domain_split(variant: Variant) -> tuple[object, object] | tuple[None, None]:
    """(GateAssignment, DomainGate) splitting the variant's card into in_domain / cross_domain, or (None, None).

    The threshold keeps GATE_RECALL of the biomedical *utility* items in domain (the card's `domain_gate`
    section, which the gateway's guard reads too); it is chosen from the items' domains, never their
    answers' correctness. The file's own 0.5 let nearly every general question pass as biomedical.
    """
    from evaluators.gate_domains import load_assignment
    from evaluators.gate_quality import gate_quality
    from evaluators.tasks import resolve_tasks
    from moeprune.formats.domain_gate import GATE_NAME, DomainGate

    path = Path(variant.model_dir) / GATE_NAME
    if not path.is_file():
        return None, None
    gate = DomainGate.load(path)
    utility = [(task, task.load()) for task in resolve_tasks([UTILITY_TASKS])]
    return load_assignment(path, gate_quality(gate, utility, GATE_RECALL)["threshold"]), gate


def _full_stamp(variant: Variant, tasks: str, limit: int | None, base_check: bool, split) -> dict:
    return {
        **_stamp(variant, tasks, limit),
        "base_check": base_check,
        "gate": [split.sha256, split.threshold] if split is not None else None,
    }


def reusable_card(
    variant: Variant, cards_dir: Path, tasks: str, limit: int | None, base_check: bool, use_shipped: bool = True
) -> Path | None:
    """The card of an evaluation already made of these weights on these sets: cached here, or shipped
    with the repository (`use_shipped`); None when the variant must be evaluated."""
    out = cards_dir / variant.name
    card, stamp_path = out / CARD_FILE, out / STAMP_FILE
    stamp = _full_stamp(variant, tasks, limit, base_check, domain_split(variant)[0])
    if card.exists() and stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp:
        return card
    if use_shipped and install_shipped_card(variant.name, stamp, variant.model_dir, out):
        return card
    return None


def evaluate_one(
    variant: Variant,
    cards_dir: Path,
    tasks: str,
    limit: int | None,
    live: set | None = None,
    cancel=None,
    base_url: str | None = None,
) -> Path:
    """`base_url`: a running engine serving the base as "base", for the base cross-check (served variants)."""
    from evaluators.gate_quality import add_gate_quality
    from evaluators.runner import run_eval
    from evaluators.tasks import resolve_tasks

    out = cards_dir / variant.name
    card, stamp_path = out / CARD_FILE, out / STAMP_FILE
    split, gate = domain_split(variant)
    stamp = _full_stamp(variant, tasks, limit, base_url is not None, split)
    if card.exists() and stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp:
        return card
    if cancel is not None and cancel.is_set():
        raise KeyboardInterrupt(f"evaluation of {variant.name} cancelled")
    base = {"base_endpoint": base_url, "base_model": BASE_NAME} if base_url is not None else {}
    with running_engine(variant.model_dir, variant.name, out / "engine", live=live) as url:
        card = run_eval(
            url,
            variant.name,
            tasks,
            out,
            variant=variant.name,
            model_dir=str(variant.model_dir),
            concurrency=8,
            limit=limit,
            progress=False,
            gate=split,
            **base,
        )
    if gate is not None:
        add_gate_quality(card, gate, resolve_tasks([UTILITY_TASKS]), GATE_RECALL, also=resolve_tasks(tasks.split(",")))
    stamp_path.write_text(json.dumps(stamp))
    return Path(card)


def evaluate_served(
    base: Variant,
    served: list[Variant],
    cards_dir: Path,
    limit: int | None = None,
    live: set | None = None,
    cancel=None,
    progress: bool = True,
    use_shipped: bool = True,
) -> dict[str, Path]:
    """The base and the served variants on the utility and reliability sets, with the base cross-check.

    One engine serves the base for the whole round: its own evaluation and the served variants'
    cross-checks (each answer re-scored under the base, prefill only). Each pruned variant's card is split
    by its own domain gate (published with the checkpoint); the base has no gate, so its one certificate
    covers all its traffic, which is what the cascade escalates to it.
    """
    live = set() if live is None else live
    cards: dict[str, Path] = {}
    for variant in [base, *served]:
        found = reusable_card(variant, cards_dir, SERVED_TASKS, limit, variant is not base, use_shipped)
        if found is not None:
            cards[variant.name] = found
    if len(cards) == 1 + len(served):  # nothing to evaluate: no engine started
        return {v.name: cards[v.name] for v in [base, *served]}
    todo = [v for v in served if v.name not in cards]
    bar = progress_display(
        len(todo) + (base.name not in cards),
        "evaluating with the base cross-check on vLLM",
        "variant",
        enabled=progress,
        every=1,
    )
    with bar, running_engine(base.model_dir, BASE_NAME, cards_dir / "base-check-engine", live=live) as base_url:
        with ThreadPoolExecutor(max_workers=1 + len(served)) as pool:
            futures = (
                {}
                if base.name in cards
                else {pool.submit(evaluate_one, base, cards_dir, SERVED_TASKS, limit, live, cancel): base}
            )
            futures.update(
                {pool.submit(evaluate_one, v, cards_dir, SERVED_TASKS, limit, live, cancel, base_url): v for v in todo}
            )
            try:
                for future in as_completed(futures):
                    cards[futures[future].name] = future.result()
                    bar.set_postfix(done=futures[future].name)
                    bar.update(1)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                for engine in list(live):
                    engine.terminate()
                raise
    return {v.name: cards[v.name] for v in [base, *served]}


def evaluate_all(
    variants: list[Variant],
    cards_dir: Path,
    tasks: str = "all",
    limit: int | None = None,
    parallel: int = 2,
    progress: bool = True,
    live: set | None = None,
    cancel=None,
) -> dict[str, Path]:
    """Report cards of every variant, evaluated `parallel` at a time.

    On Ctrl-C (or any error) nothing new starts, the running engines are
    signalled at once (their evaluations then fail fast and stop them fully),
    and the exception goes on; finished cards stay cached. A caller running this
    in a background thread passes `live` and a `cancel` event: setting the event
    and terminating the engines in `live` stops it the same way.
    """
    cards: dict[str, Path] = {}
    live = set() if live is None else live
    bar = progress_display(len(variants), "evaluating on vLLM", "variant", enabled=progress, every=1)
    pool = ThreadPoolExecutor(max_workers=max(1, parallel))
    try:
        futures = {pool.submit(evaluate_one, v, cards_dir, tasks, limit, live, cancel): v for v in variants}
        for future in as_completed(futures):
            variant = futures[future]
            cards[variant.name] = future.result()
            bar.set_postfix(done=variant.name)
            bar.update(1)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        for engine in list(live):
            engine.terminate()
        raise
    finally:
        pool.shutdown(wait=True)
        bar.close()
    return {v.name: cards[v.name] for v in variants}
