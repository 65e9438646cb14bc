"""The card's `reliability` section (docs/reliability.md): per gate domain, `p_wrong` and its certificate.

Per `gate_domain`, the answers that assert something (labelled, not abstaining: evaluators/labels.py)
are split by a seeded hash of their task and item id into a fitting half and a certifying half. The
fitting half fits `p_wrong` (moeprune.reliability.risk_model) on every signal present and orders the
candidate thresholds; the certifying half tests them (moeprune.reliability.certificate) and carries every
reported figure. A domain where nothing can be certified (too few answers, one class only) gets an
explicit `uncertified` certificate with its reason; nothing here raises on thin data.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from evaluators.answer_forms import form_figures
from evaluators.gate_domains import ALL, CROSS_DOMAIN, IN_DOMAIN
from evaluators.labels import UNPARSED, asserts_something, is_error, label_of
from evaluators.reliability_quality import quality_figures
from moeprune.formats.hashing import weights_digest
from moeprune.formats.manifest import PruningManifest
from moeprune.reliability.certificate import CertificateResult, certify
from moeprune.reliability.crosscheck import BASE_SIGNALS
from moeprune.reliability.decision import decide
from moeprune.reliability.risk_model import fit_risk_model
from moeprune.reliability.signals import SIGNAL_DIRECTIONS


def record_key(record: dict) -> str:
    return f"{record.get('task', '')}/{record['id']}"


def in_fit_half(record: dict, split_seed: int) -> bool:
    """The seeded split: the same item lands in the same half in every run and for every variant."""
    digest = hashlib.sha256(f"{split_seed}:{record_key(record)}".encode()).digest()
    return digest[0] % 2 == 0


def _finite(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def labels_digest(records: list[dict]) -> str:
    """sha256 of the labelled records as canonical JSON (task, id, label, gate_domain, signals; NaN as null)."""
    rows = sorted(
        (
            {
                "task": r.get("task"),
                "id": r["id"],
                "label": label_of(r),
                "gate_domain": r.get("gate_domain"),
                "signals": {k: _finite(v) for k, v in sorted((r.get("signals") or {}).items())},
            }
            for r in records
        ),
        key=lambda row: (str(row["task"]), str(row["id"])),
    )
    text = json.dumps(rows, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def present_signals(records: list[dict]) -> list[str]:
    """Signals (SIGNAL_DIRECTIONS order) that at least one record carries a value of."""
    return [
        name
        for name in SIGNAL_DIRECTIONS
        if any(_finite((r.get("signals") or {}).get(name)) is not None for r in records)
    ]


def _uncertified(alpha: float, delta: float, n_calibration: int, n_fit: int, reason: str) -> dict:
    return CertificateResult(
        alpha=alpha,
        delta=delta,
        status="uncertified",
        threshold=None,
        coverage=None,
        n_unflagged=0,
        errors_unflagged=0,
        realised_error=None,
        error_upper=None,
        n_calibration=n_calibration,
        n_fit=n_fit,
        tested=0,
        reason=reason,
    ).as_dict()


def domain_reliability(
    records: list[dict], features: list[str], alpha: float, delta: float, split_seed: int, resamples: int = 1000
) -> tuple[dict, dict[str, dict]]:
    """(DomainReliability as a dict, record key -> its per-answer reliability) for one gate domain."""
    population = [r for r in records if asserts_something(r)]
    labelled = [r for r in records if label_of(r) is not None]
    fit = [r for r in population if in_fit_half(r, split_seed)]
    held = [r for r in population if not in_fit_half(r, split_seed)]
    fit_wrong = [is_error(label_of(r)) for r in fit]
    held_wrong = [is_error(label_of(r)) for r in held]
    counts = {
        "n": len(population),
        "n_wrong": sum(is_error(label_of(r)) for r in population),
        "n_abstained": len(labelled) - len(population),
        "n_unparsed": sum(label_of(r) == UNPARSED for r in population),
    }
    held_signals = [r.get("signals") or {} for r in held]
    if not population:
        reason = "no labelled answers that assert something in this domain"
    elif not any(fit_wrong) or all(fit_wrong):
        kind = "wrong" if fit_wrong and all(fit_wrong) else "right"
        reason = (
            f"the fitting half ({len(fit)} answers) holds only {kind} answers, so p_wrong cannot be fitted; "
            "evaluate more items of this domain"
        )
    else:
        reason = None
    if reason is not None:
        figures = quality_figures(held_signals, None, held_wrong, features, resamples, split_seed)
        certificate = _uncertified(alpha, delta, len(held), len(fit), reason)
        # uncertified: every answer is flagged, none served unflagged
        by_form = form_figures(population, [(r, False) for r in held], delta)
        return {**counts, "model": None, "certificate": certificate, **figures, "by_form": by_form}, {}
    model = fit_risk_model([r.get("signals") or {} for r in fit], fit_wrong, features)
    fit_scores = [model.p_wrong(r.get("signals") or {}) for r in fit]
    held_scores = [model.p_wrong(s) for s in held_signals]
    result = certify(fit_scores, fit_wrong, held_scores, held_wrong, alpha, delta)
    per_record = {}
    for half, members, scores in (("fit", fit, fit_scores), ("certify", held, held_scores)):
        for record, score in zip(members, scores):
            decision = decide(score, result)
            per_record[record_key(record)] = {
                "p_wrong": score,
                "split": half,
                "above_risk": decision.above_risk,
                "uncertified": decision.uncertified,
            }
    figures = quality_figures(held_signals, held_scores, held_wrong, features, resamples, split_seed)
    served = [
        (r, not (per_record[record_key(r)]["above_risk"] or per_record[record_key(r)]["uncertified"])) for r in held
    ]
    by_form = form_figures(population, served, delta)
    return {
        **counts,
        "model": model.as_dict(),
        "certificate": result.as_dict(),
        **figures,
        "by_form": by_form,
    }, per_record


def reliability_section(
    records: list[dict],
    *,
    alpha: float,
    delta: float,
    split_seed: int = 0,
    weights_sha256: str | None = None,
    gate_sha256: str | None = None,
    gate_threshold: float | None = None,
    base_check_off: str | None = None,
    resamples: int = 1000,
) -> tuple[dict | None, dict[str, dict]]:
    """(ReliabilitySection as a dict, record key -> per-answer reliability); (None, {}) without labels."""
    labelled = [r for r in records if label_of(r) is not None]
    if not labelled:
        return None, {}
    features = present_signals(labelled)
    base_check = any(name in features for name in BASE_SIGNALS)
    names = [IN_DOMAIN, CROSS_DOMAIN] if gate_sha256 else [ALL]
    names += sorted({r.get("gate_domain") or ALL for r in labelled} - set(names))
    domains, without, per_record = {}, {}, {}
    for name in names:
        members = [r for r in labelled if (r.get("gate_domain") or ALL) == name]
        domains[name], annotations = domain_reliability(members, features, alpha, delta, split_seed, resamples)
        per_record.update(annotations)
        if base_check:
            without[name], _ = domain_reliability(
                members, [f for f in features if f not in BASE_SIGNALS], alpha, delta, split_seed, resamples
            )
    section = {
        "alpha": alpha,
        "delta": delta,
        "weights_sha256": weights_sha256,
        "labels_sha256": labels_digest(labelled),
        "base_check": base_check,
        "gate_sha256": gate_sha256,
        "split_seed": split_seed,
        "domains": domains,
        "without_base_check": without or None,
    }
    if gate_threshold is not None:
        section["gate_threshold"] = gate_threshold
    if not base_check:
        section["base_check_off"] = base_check_off or "off: no answer carries base_mean_logprob"
    return section, per_record


def checkpoint_digest(model_dir: str | Path | None) -> str | None:
    """The weights digest the gateway compares with the served checkpoint; None without a model dir or weights."""
    if model_dir is None or not any(Path(model_dir).rglob("*.safetensors")):
        return None
    manifest = PruningManifest.load(model_dir)
    return weights_digest(model_dir, recorded=manifest.files if manifest else None)
