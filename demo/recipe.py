"""What a demo model is trained for, and the names its build is known by: the recipe's version and digest,
the cache key, the build's done marker and the tokenizer's texts.

Below `demo.build` (which trains or installs a model), `demo.shipped` (which installs the shipped one) and
`demo.train_child` (the training processes): all three read these, so they live in neither of them.
"""

from __future__ import annotations

import hashlib
import json

from demo.corpus import Corpus
from demo.examples import training_examples
from demo.model_config import DemoModelConfig
from demo.sets import set_files

RECIPE_VERSION = 3  # 2: pinned numerics in a child process, loss on trained tokens only, 7/7/2 expert groups;
# 3: two data-parallel ranks (demo.rank_sync)
DONE_MARKER = "demo_model.json"


def corpus_digest(corpus: Corpus, cfg: DemoModelConfig) -> str:
    digest = hashlib.sha256()
    for epoch in range(cfg.epochs):
        for example in training_examples(corpus, epoch):
            digest.update(f"{example.domain}\0{example.context}\0{example.target}\n".encode())
    for name, text in sorted(set_files(corpus).items()):
        digest.update(name.encode() + b"\0" + text.encode())
    return digest.hexdigest()


def model_key(corpus: Corpus, cfg: DemoModelConfig) -> str:
    payload = json.dumps(
        {"recipe": RECIPE_VERSION, "config": cfg.cache_dict(), "corpus": corpus_digest(corpus, cfg)}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def recipe_digest(corpus: Corpus, cfg: DemoModelConfig) -> str:
    """What a model is trained FOR (recipe version, config, corpus), without the numerics it was trained
    under: the test of whether the shipped weights answer this configuration."""
    payload = json.dumps(
        {"recipe": RECIPE_VERSION, "config": cfg.as_dict(), "corpus": corpus_digest(corpus, cfg)}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def tokenizer_texts(corpus: Corpus) -> list[str]:
    return [e.context + e.target for e in training_examples(corpus, 0)]
