"""The demo model that ships with the repository, so that a first `moeprune demo` trains nothing.

`demo/model/` holds the weights, tokenizer and config of seed 0 of the current
recipe (about 8 MB), and `shipped.json` beside them says what they are: the
recipe digest they were trained for (recipe version, config and corpus, see
`demo.recipe.recipe_digest`), the sha256 of every file, the weights' tensor
hash (`demo.numerics.weights_sha256`, the one the rest of the project prints
and compares), and the machine and date that trained them.

Why ship weights rather than train them on every machine: training takes
7-25 minutes on a 2-core machine, and even pinned it is bit-reproducible
only within one CPU vendor's numerics (docs/demo.md, "The same model on
every machine"), so the shipped file is both the fast path and the one
reference everyone can compare against. `moeprune demo --retrain` still
trains from scratch and says whether its weights equal these.

Refresh after a recipe change (a maintainer's step, like regenerating the
shipped evaluation sets):

    .venv/bin/moeprune demo --retrain --no-serve --limit 1
    .venv/bin/python -m demo.shipped ~/.cache/moe-prune-serve/models/demo-<key>
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from moeprune.errors import UserError

SHIPPED_DIR = Path(__file__).resolve().parent / "model"
RECORD = "shipped.json"
# What vLLM and transformers need to load the model; the build record and training summary stay out.
FILES = (
    "model.safetensors",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_record(shipped_dir: Path = SHIPPED_DIR) -> dict | None:
    """The shipped model's record, or None where this tree ships none."""
    path = Path(shipped_dir) / RECORD
    if not path.exists():
        return None
    return json.loads(path.read_text())


def model_dir_name(record: dict) -> str:
    """The cache directory of the shipped model: named by its weights, so that the variants and report cards
    pruned from it (kept under the same name) can never be mistaken for those of a locally trained model."""
    return f"demo-shipped-{record['weights_sha256'][:16]}"


def verify(shipped_dir: Path, record: dict) -> None:
    """Check every shipped file against the sha256 the record holds; refuse with the files that differ."""
    wrong = []
    for name, expected in record["files"].items():
        path = Path(shipped_dir) / name
        if not path.exists():
            wrong.append(f"{name} is missing")
        elif file_sha256(path) != expected:
            wrong.append(f"{name} has sha256 {file_sha256(path)[:16]}..., expected {expected[:16]}...")
    if wrong:
        raise UserError(
            f"the shipped demo model in {shipped_dir} is not the one its {RECORD} describes: {'; '.join(wrong)}. "
            "Restore it (`git checkout -- demo/model`, or a fresh clone; a Git LFS pointer is not the file), "
            "or train it here with `moeprune demo --retrain`."
        )


def install(shipped_dir: Path, record: dict, final: Path, done_marker: str) -> dict:
    """Verify the shipped files and copy them into the cache as a finished model; returns its build record.

    Copied, not linked: the cache must not change when the working tree does (a checkout of another
    revision would otherwise swap the weights under the variants pruned from them)."""
    from demo.numerics import weights_sha256

    verify(shipped_dir, record)
    building = final.with_name(final.name + f".building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    try:
        for name in record["files"]:
            shutil.copyfile(Path(shipped_dir) / name, building / name)
        actual = weights_sha256(building)
        if actual != record["weights_sha256"]:  # files match their hashes, so only the record can be wrong
            raise UserError(
                f"{Path(shipped_dir) / RECORD} names weights sha256 {record['weights_sha256'][:16]}... "
                f"but its files hold {actual[:16]}...; regenerate it with `python -m demo.shipped`"
            )
        built = {k: v for k, v in record.items() if k != "files"}
        built["source"] = "shipped"
        (building / done_marker).write_text(json.dumps(built, indent=2))
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if final.exists():  # another process installed it first
        shutil.rmtree(building)
    else:
        building.rename(final)
    return built


def comparison(trained_sha256: str, record: dict | None, same_recipe: bool) -> str:
    """One plain sentence: do the weights trained here equal the shipped ones? Never an error: on another
    CPU they may differ, and the demo goes on with the model trained here."""
    if record is None:
        return "no shipped model in this tree to compare with"
    if not same_recipe:
        return "this is not the shipped recipe (reduced or changed), so there is nothing shipped to compare with"
    shipped = record["weights_sha256"]
    if trained_sha256 == shipped:
        return f"the weights trained here EQUAL the shipped ones (sha256 {shipped[:16]}...)"
    where = record.get("trained_on", {}).get("cpu", "another machine")
    return (
        f"the weights trained here ({trained_sha256[:16]}...) DIFFER from the shipped ones ({shipped[:16]}..., "
        f"trained on {where}). Expected on a CPU of another vendor or generation: MKL's pinned code path exists "
        "only on Intel CPUs and other CPUs get their own (docs/demo.md, 'The same model on every machine'). "
        "The demo goes on with the model trained here; its results will differ a little from the shipped model's"
    )


def describe_cpu() -> str:
    """The CPU model, its core count and its widest vector extensions, for the record."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.machine()}, {os.cpu_count()} cores"
    name = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
        platform.machine(),
    )
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    features = [
        label for flag, label in (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("amx_tile", "AMX")) if flag in flags
    ]
    return f"{name} ({', '.join(features) or 'no AVX2'}), {os.cpu_count()} cores"


def write_shipped(model_dir: Path, out_dir: Path = SHIPPED_DIR) -> dict:
    """Copy a trained cache model's loadable files into `out_dir` and write its record (maintainers only)."""
    from demo.corpus import build_corpus
    from demo.model_config import DemoModelConfig
    from demo.recipe import DONE_MARKER, recipe_digest

    built = json.loads((Path(model_dir) / DONE_MARKER).read_text())
    values = dict(built["config"])
    values["biomedical_experts"] = tuple(values["biomedical_experts"])
    values["general_experts"] = tuple(values["general_experts"])
    cfg = DemoModelConfig(**values)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copyfile(Path(model_dir) / name, out_dir / name)
    trained = time.strftime("%Y-%m-%d", time.gmtime((Path(model_dir) / DONE_MARKER).stat().st_mtime))
    record = {
        "recipe_digest": recipe_digest(build_corpus(cfg.corpus_seed), cfg),
        **{k: v for k, v in built.items() if k not in ("cached", "source")},
        "trained_on": {"cpu": describe_cpu(), "date": trained},
        "files": {name: file_sha256(out_dir / name) for name in FILES},
    }
    (out_dir / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m demo.shipped CACHE_MODEL_DIR   (a finished models/demo-<key> directory)")
    written = write_shipped(Path(sys.argv[1]))
    print(f"wrote {SHIPPED_DIR} (weights sha256 {written['weights_sha256']})")
