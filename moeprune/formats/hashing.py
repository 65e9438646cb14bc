"""sha256 of files, read in fixed-size chunks so memory never grows with the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 8 * 1024 * 1024


def sha256_file(path: str | Path, chunk: int = CHUNK) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while n := handle.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


def sha256_tree(root: str | Path, exclude: tuple[str, ...] = (), known: dict[str, str] | None = None) -> dict[str, str]:
    """Relative POSIX path -> sha256 for every regular file under root, except `exclude` names.

    `known` supplies hashes already computed while writing (not read again).
    """
    root, known = Path(root), known or {}
    hashes = {}
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.is_file() and name not in exclude:
            hashes[name] = known.get(name) or sha256_file(path)
    return hashes


WEIGHT_SUFFIX = ".safetensors"


def weights_digest(model_dir: str | Path, recorded: dict[str, str] | None = None) -> str:
    """One sha256 naming a checkpoint's weights: over "name sha256" lines of its *.safetensors files, sorted.

    `recorded` (pruning.json's `files`) supplies hashes the writer already computed, so a
    pruned checkpoint is named without reading its weights again. A report card's
    certificate carries this digest; the gateway compares it with the served checkpoint's.
    """
    root = Path(model_dir)
    recorded = recorded or {}
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob(f"*{WEIGHT_SUFFIX}") if p.is_file())
    if not names:
        raise FileNotFoundError(f"{root} holds no {WEIGHT_SUFFIX} files")
    lines = "".join(f"{name} {recorded.get(name) or sha256_file(root / name)}\n" for name in names)
    return hashlib.sha256(lines.encode()).hexdigest()
