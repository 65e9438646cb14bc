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
