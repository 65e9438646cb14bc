"""Report cards with certificates, written by hand for the certified-flag tests (gateway, demo).

The cards' p_wrong model reads one signal, mean_logprob: p_wrong = sigmoid(-2 - 2 * mean_logprob)
(no isotonic map), about 0.12 for a confident answer and 0.97 for an unsure one.
"""

from __future__ import annotations

RISK_MODEL = {
    "features": ["mean_logprob"],
    "means": [0.0],
    "scales": [1.0],
    "coef": [-2.0],
    "intercept": -2.0,
    "iso_x": [],
    "iso_y": [],
}


def certificate(status: str = "certified", threshold: float | None = 0.5, alpha: float = 0.05, n: int = 400) -> dict:
    certified = status == "certified"
    return {
        "alpha": alpha,
        "delta": 0.05,
        "status": status,
        "threshold": threshold if certified else None,
        "coverage": 0.8 if certified else None,
        "n_unflagged": 320 if certified else 0,
        "errors_unflagged": 6 if certified else 0,
        "realised_error": 0.019 if certified else None,
        "error_upper": 0.037 if certified else None,
        "n_calibration": n,
        "n_fit": n,
        "tested": 12,
        "reason": None if certified else "no threshold keeps the error below alpha",
    }


def domain_entry(status: str = "certified", model: dict | None = RISK_MODEL, **kwargs) -> dict:
    return {"n": 400, "n_wrong": 60, "model": model, "certificate": certificate(status, **kwargs)}


def card(
    variant: str,
    domains: dict | None,
    weights_sha256: str | None = None,
    gate_sha256: str | None = None,
    gate_threshold: float | None = None,
) -> dict:
    """A report card; `domains` None: no reliability section at all."""
    data = {"schema_version": 1, "variant": variant, "model": variant, "tasks": {}}
    if domains is not None:
        data["reliability"] = {
            "alpha": 0.05,
            "delta": 0.05,
            "weights_sha256": weights_sha256,
            "labels_sha256": "0" * 64,
            "base_check": False,
            "gate_sha256": gate_sha256,
            "domains": domains,
        }
    if gate_threshold is not None:
        data["domain_gate"] = {
            "in_domain": "biomedical",
            "n_in_domain": 10,
            "n_cross_domain": 10,
            "auroc": 0.9,
            "target_recall": 0.95,
            "threshold": gate_threshold,
            "recall": 0.95,
            "cross_domain_fallback_rate": 0.5,
        }
    return data
