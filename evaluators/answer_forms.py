"""Which form an evaluated answer took, and how the certificate fared on each form.

A certificate bounds the error among unflagged answers for traffic like its calibration set
(docs/reliability.md); the demo's calibration mixes multiple-choice answers (the contract prompt) with
free-text answers to plain questions, the form apps send. The bound is for the mix; these figures show,
on the certifying half, what each form on its own got, so a reader sees whether one form carries the
errors the other hides (they are diagnostics, not certificates: nothing was tested per form).
"""

from __future__ import annotations

from evaluators.labels import is_error, label_of
from moeprune.reliability.binomial import upper_bound

CHOICE, FREE_TEXT = "choice", "free_text"


def answer_form(record: dict) -> str:
    """`free_text` for a generation record (it carries a reference `target`), `choice` otherwise."""
    return FREE_TEXT if "target" in record else CHOICE


def form_figures(population: list[dict], certifying: list[tuple[dict, bool]], delta: float) -> dict[str, dict]:
    """Per form: the population's size and errors, and among the certifying half's unflagged answers the
    realised error with its one-sided Clopper-Pearson bound at `delta`.

    `population`: the answers that assert something; `certifying`: (record, served without a flag) for
    the certifying half.
    """
    out: dict[str, dict] = {}
    for form in sorted({answer_form(r) for r in population}):
        members = [r for r in population if answer_form(r) == form]
        held = [(r, unflagged) for r, unflagged in certifying if answer_form(r) == form]
        served = [r for r, unflagged in held if unflagged]
        errors = sum(is_error(label_of(r)) for r in served)
        out[form] = {
            "n": len(members),
            "n_wrong": sum(is_error(label_of(r)) for r in members),
            "n_certifying": len(held),
            "n_unflagged": len(served),
            "errors_unflagged": errors,
            "realised_error": errors / len(served) if served else None,
            "error_upper": upper_bound(errors, len(served), delta) if served else None,
        }
    return out
