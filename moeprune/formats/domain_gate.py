"""The domain gate: a tiny prompt-domain classifier that tells in-domain prompts from the rest.

Features are hashed character n-grams (3 to 5 characters, inside word
boundaries) plus hashed words, with sublinear counts and unit length; the model
is logistic regression on them, so a score costs one pass over the prompt and
a few thousand list lookups (pure Python: the gateway has no numpy). The hash
is zlib's crc32, stable across processes and machines (Python's `hash()` is
salted per process). Fitting uses numpy (the prune and eval extras have it),
full-batch gradient descent with a fixed step count from zero: the same texts
give the same bytes in `domain_gate.json`.

`score(text)` is P(in-domain); a request passes when it is at least the
threshold (the report card's, chosen for a target in-domain recall, or 0.5).
"""

from __future__ import annotations

import functools
import json
import math
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from moeprune.errors import UserError

SCHEMA = "moeprune-domain-gate"
SCHEMA_VERSION = 1
GATE_NAME = "domain_gate.json"
BUCKETS = 1 << 14
NGRAMS = (3, 5)  # inclusive range of character n-gram lengths
MAX_CHARS = 1000  # the last MAX_CHARS characters are scored: bounded cost whatever the prompt's length
DEFAULT_THRESHOLD = 0.5
# Fitting: L2 strength, step count and step size (features have unit length, so step 4 is within 1/L).
L2 = 1e-4
STEPS = 400
STEP_SIZE = 4.0

_WORD = re.compile(r"\w+")


@functools.lru_cache(maxsize=1 << 16)
def _word_buckets(word: str, buckets: int, low: int, high: int) -> tuple[int, ...]:
    """The buckets of one word and its character n-grams (cached: prompts reuse a small vocabulary)."""
    crc = zlib.crc32
    padded = f" {word} ".encode()
    grams = [
        crc(padded[start : start + n]) % buckets
        for n in range(low, high + 1)
        for start in range(0, len(padded) - n + 1)
    ]
    return (crc(b"w:" + word.encode()) % buckets, *grams)


def feature_counts(
    text: str, buckets: int = BUCKETS, ngrams: tuple[int, int] = NGRAMS, max_chars: int = MAX_CHARS
) -> dict[int, float]:
    """bucket -> weight (1 + log count, then unit L2 length) of `text`'s hashed n-grams and words."""
    counts: dict[int, int] = {}
    low, high = ngrams
    for word in _WORD.findall(text[-max_chars:].lower()):
        for bucket in _word_buckets(word, buckets, low, high):
            counts[bucket] = counts.get(bucket, 0) + 1
    if not counts:
        return {}
    weights = {bucket: 1.0 + math.log(count) for bucket, count in counts.items()}
    norm = math.sqrt(sum(w * w for w in weights.values()))
    return {bucket: w / norm for bucket, w in weights.items()}


@dataclass
class DomainGate:
    weights: list[float]
    bias: float
    threshold: float = DEFAULT_THRESHOLD
    buckets: int = BUCKETS
    ngrams: tuple[int, int] = NGRAMS
    max_chars: int = MAX_CHARS
    training: dict = field(default_factory=dict)

    def score(self, text: str) -> float:
        """P(in-domain) of `text`."""
        weights = self.weights
        logit = self.bias + sum(
            weights[b] * v for b, v in feature_counts(text, self.buckets, self.ngrams, self.max_chars).items()
        )
        return 1.0 / (1.0 + math.exp(-max(min(logit, 50.0), -50.0)))

    def passes(self, score: float, threshold: float | None = None) -> bool:
        return score >= (self.threshold if threshold is None else threshold)

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "features": {
                "kind": "hashed char n-grams + words, crc32",
                "buckets": self.buckets,
                "ngrams": list(self.ngrams),
                "max_chars": self.max_chars,
            },
            "bias": self.bias,
            "threshold": self.threshold,
            "training": self.training,
            # Sparse: most buckets never occur in the training texts and stay exactly 0.
            "weights": {str(b): w for b, w in enumerate(self.weights) if w != 0.0},
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, data: object, where: str) -> DomainGate:
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise UserError(f"{where} is not a domain gate file; build one with `moeprune guard build`")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise UserError(
                f"{where}: schema_version {data.get('schema_version')} is not {SCHEMA_VERSION}; "
                "rebuild it with `moeprune guard build`"
            )
        try:
            features = data["features"]
            buckets = int(features["buckets"])
            weights = [0.0] * buckets
            for bucket, value in data["weights"].items():
                weights[int(bucket)] = float(value)
            return cls(
                weights,
                float(data["bias"]),
                float(data["threshold"]),
                buckets,
                cast(tuple[int, int], tuple(int(n) for n in features["ngrams"])),
                int(features["max_chars"]),
                dict(data.get("training") or {}),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise UserError(
                f"{where} is incomplete or malformed ({exc!r}); rebuild it with `moeprune guard build`"
            ) from exc

    @classmethod
    def load(cls, path: str | Path) -> DomainGate:
        path = Path(path)
        if path.is_dir():
            path = path / GATE_NAME
        if not path.is_file():
            raise UserError(f"domain gate {path} does not exist; build it with `moeprune guard build`")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: not valid JSON ({exc}); rebuild it with `moeprune guard build`") from None
        return cls.from_dict(data, str(path))


def fit_gate(in_domain: list[str], reference: list[str], training: dict | None = None) -> DomainGate:
    """Logistic regression of in-domain (1) vs reference (0), both classes weighted equally."""
    import numpy as np

    if not in_domain or not reference:
        raise UserError(
            f"the domain gate needs texts of both kinds: {len(in_domain)} in-domain and "
            f"{len(reference)} reference texts given; pass non-empty files"
        )
    texts = [*in_domain, *reference]
    labels = np.array([1.0] * len(in_domain) + [0.0] * len(reference))
    sample = np.where(labels == 1.0, 0.5 / len(in_domain), 0.5 / len(reference))
    # lists while counting, numpy arrays for the descent below
    rows: Any = []
    cols: Any = []
    vals: Any = []
    for row, text in enumerate(texts):
        for bucket, value in feature_counts(text).items():
            rows.append(row)
            cols.append(bucket)
            vals.append(value)
    rows, cols, vals = np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64), np.array(vals)
    n = len(texts)
    w, b = np.zeros(BUCKETS), 0.0
    velocity_w, velocity_b = np.zeros(BUCKETS), 0.0
    for _ in range(STEPS):  # Nesterov-accelerated gradient descent, a fixed number of steps from zero
        look_w, look_b = w + 0.9 * velocity_w, b + 0.9 * velocity_b
        logits = np.bincount(rows, weights=vals * look_w[cols], minlength=n) + look_b
        residual = (1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50))) - labels) * sample
        grad_w = np.bincount(cols, weights=vals * residual[rows], minlength=BUCKETS) + L2 * look_w
        grad_b = float(residual.sum())
        velocity_w = 0.9 * velocity_w - STEP_SIZE * grad_w
        velocity_b = 0.9 * velocity_b - STEP_SIZE * grad_b
        w, b = w + velocity_w, b + velocity_b
    # Rounded, so the file is short and a re-fit on other hardware writes the same bytes.
    weights = [float(f"{value:.6g}") for value in w.tolist()]
    info = {"in_domain_texts": len(in_domain), "reference_texts": len(reference), **(training or {})}
    return DomainGate(weights, float(f"{b:.6g}"), training=info)


def threshold_for_recall(in_domain_scores: list[float], recall: float) -> float | None:
    """The highest threshold that keeps at least `recall` of the in-domain scores at or above it."""
    if not in_domain_scores:
        return None
    if not 0 < recall <= 1:
        raise UserError(f"gate recall {recall} must be in (0, 1], e.g. 0.95", param="gate_recall")
    ordered = sorted(in_domain_scores, reverse=True)
    keep = max(1, math.ceil(recall * len(ordered) - 1e-9))  # 0.8 * 10 is 8.000000000000002
    return ordered[keep - 1]
