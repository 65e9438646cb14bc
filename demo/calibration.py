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
from demo.facts import BIOMEDICAL


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
