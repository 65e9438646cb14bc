"""The biomedical calibration file the demo prunes with: chats from the biomedical training data.

Calibration must come from the domain the pruned model should keep, and from
what the model was trained on (the study calibrated on in-domain data, not on
its evaluation questions), so the samples are biomedical training chats,
never held-out evaluation items.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from demo.corpus import Corpus
from demo.examples import training_examples
from demo.facts import BIOMEDICAL, GENERAL


def calibration_records(corpus: Corpus, domain: str = BIOMEDICAL, samples: int = 256) -> list[dict]:
    chats = [e for e in training_examples(corpus, epoch=0) if e.domain == domain and e.context]
    rng = random.Random(f"{corpus.seed}:calibration:{domain}")
    chosen = rng.sample(chats, min(samples, len(chats)))
    return [{"messages": e.messages()} for e in chosen]


def write_calibration(corpus: Corpus, path: str | Path, domain: str = BIOMEDICAL, samples: int = 256) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, ensure_ascii=False) for r in calibration_records(corpus, domain, samples)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_gate_reference(corpus: Corpus, path: str | Path, samples: int = 256) -> Path:
    """The general texts the variants' domain gates learn to tell the calibration apart from.

    General training chats in the same mix of forms as the calibration (plain questions and the contract's
    multiple-choice prompt). Against the project's shipped general set, which holds plain questions only,
    the gate learned the multiple-choice scaffolding as "biomedical": measured on the shipped model's
    gate-50, its threshold (95% of the biomedical multiple-choice items in domain) left 12 of 210 plain
    biomedical questions in domain. With a reference in the same forms: 197 of 210, and still none of the
    general ones, multiple-choice or plain.
    """
    return write_calibration(corpus, path, domain=GENERAL, samples=samples)
