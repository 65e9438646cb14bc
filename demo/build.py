"""Build the demo model once, and reuse it: a content-addressed cache.

The cache key hashes the corpus (every training example of every epoch and
the shipped sets), the model/training config, a recipe version and the
numerics fingerprint (`demo.numerics`: what could still change the
weights though training pins threads and kernels); so any change to the data,
recipe or libraries trains a new model, and anything else reuses the saved
one. The record beside the weights holds their sha256, so two machines can
check they trained the same model. Models are written to a temporary directory and renamed into place,
so an interrupted build never leaves a half model that looks finished.

The demo itself asks for the shipped model first (`use_shipped`, `demo.shipped`): where the repository
ships weights for exactly this recipe (recipe version, config and corpus, not the numerics: shipped
weights do not depend on this machine's), they are verified and copied into the cache instead of trained.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from demo.corpus import Corpus, build_corpus
from demo.model_config import DemoModelConfig
from demo.recipe import DONE_MARKER, model_key, recipe_digest


def default_cache_dir() -> Path:
    base = os.environ.get("MOEPRUNE_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    if os.environ.get("MOEPRUNE_CACHE_DIR"):
        return Path(base)
    return Path(base) / "moe-prune-serve"


def build_model(
    cfg: DemoModelConfig,
    cache_dir: Path,
    progress: bool = True,
    use_shipped: bool = False,
    shipped_dir: Path | None = None,
) -> tuple[Path, dict]:
    """The model's directory and its build record: the shipped model where `use_shipped` and the repository
    ships one for this recipe, else the one trained here (now, or found in the cache).

    The record's "source" says which ("shipped" or "trained") and "cached" whether it was there already."""
    corpus = build_corpus(cfg.corpus_seed)
    if use_shipped:
        found = _shipped(corpus, cfg, Path(cache_dir), shipped_dir)
        if found is not None:
            return found
    return _trained(corpus, cfg, Path(cache_dir), progress)


def shipped_for(corpus: Corpus, cfg: DemoModelConfig, shipped_dir: Path | None = None) -> dict | None:
    """The shipped model's record where it was trained for this recipe, else None."""
    from demo import shipped

    record = shipped.load_record(shipped_dir or shipped.SHIPPED_DIR)
    if record is None or record.get("recipe_digest") != recipe_digest(corpus, cfg):
        return None
    return record


def _shipped(corpus: Corpus, cfg: DemoModelConfig, cache_dir: Path, shipped_dir: Path | None):
    from demo import shipped

    record = shipped_for(corpus, cfg, shipped_dir)
    if record is None:
        return None
    final = cache_dir / "models" / shipped.model_dir_name(record)
    if (final / DONE_MARKER).exists():
        built = json.loads((final / DONE_MARKER).read_text())
        return final, {**built, "cached": True}
    built = shipped.install(shipped_dir or shipped.SHIPPED_DIR, record, final, DONE_MARKER)
    return final, {**built, "cached": False}


def _trained(corpus: Corpus, cfg: DemoModelConfig, cache_dir: Path, progress: bool) -> tuple[Path, dict]:
    from demo.numerics import weights_sha256
    from demo.train_child import train_in_child

    key = model_key(corpus, cfg)
    final = Path(cache_dir) / "models" / f"demo-{key}"
    if (final / DONE_MARKER).exists():
        record = json.loads((final / DONE_MARKER).read_text())
        record.setdefault("source", "trained")
        record["cached"] = True
        return final, record
    building = final.with_name(final.name + f".building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    started = time.monotonic()
    try:
        summary = train_in_child(cfg, building, progress=progress)
    except BaseException:  # an interrupted or failed training leaves nothing behind
        shutil.rmtree(building, ignore_errors=True)
        raise
    record = {
        "key": key,
        "weights_sha256": weights_sha256(building),
        "config": cfg.as_dict(),
        "numerics": cfg.cache_dict()["numerics"],
        "train_seconds": round(time.monotonic() - started, 1),
        **summary,
        "source": "trained",
    }
    (building / DONE_MARKER).write_text(json.dumps(record, indent=2))
    if final.exists():  # another process finished the same model first
        shutil.rmtree(building)
    else:
        building.rename(final)
    record["cached"] = False
    return final, record
