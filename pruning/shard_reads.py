"""Reading safetensors tensors by byte range: positioned reads into torch buffers, no mmap.

The offsets come from `moeprune.formats.checkpoint`'s header reader (the one the writer uses). Reading
with `os.preadv` keeps the page cache the only shared memory: a mapped file's touched pages
would count in the process's resident set and stay there.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from moeprune.errors import UserError
from moeprune.formats.checkpoint import TensorEntry

# safetensors dtype names -> torch dtype names (torch.<name>).
SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}


@dataclass(frozen=True)
class SourceTensor:
    entry: TensorEntry
    path: Path
    pattern: str | None = None  # the transformers WeightConverter source pattern it matched, if any


def read_tensor(handle: int, source: SourceTensor):
    """The tensor's bytes, read by positioned reads into one fresh buffer (no mmap, no extra copy)."""
    import torch

    entry = source.entry
    buffer = torch.empty(entry.shape, dtype=torch_dtype(source))
    read_into(handle, source, buffer)
    return buffer


def read_into(handle: int, source: SourceTensor, target) -> None:
    """Read the tensor into `target` (contiguous, its shape): in place when the dtypes agree, else cast."""
    import torch

    entry = source.entry
    stored = torch_dtype(source)
    if target.dtype != stored:
        target.copy_(read_tensor(handle, source).reshape(target.shape))
        return
    if target.numel() * target.element_size() != entry.nbytes or not target.is_contiguous():
        raise UserError(
            f"{source.path}: tensor {entry.name} holds {entry.nbytes} bytes, not the "
            f"{target.numel() * target.element_size()} its shape {list(entry.shape)} needs"
        )
    view, done = memoryview(target.view(-1).view(torch.uint8).numpy()), 0
    while done < entry.nbytes:
        count = os.preadv(handle, [view[done:]], entry.start + done)
        if count == 0:
            raise UserError(
                f"{source.path}: tensor {entry.name} ends at byte {entry.end}, past the end of the "
                "file (truncated download?)"
            )
        done += count


def torch_dtype(source: SourceTensor):
    import torch

    if source.entry.dtype not in SAFETENSORS_DTYPES:
        raise UserError(
            f"{source.path}: tensor {source.entry.name} has dtype {source.entry.dtype}, which the "
            f"observation pass cannot read (known: {', '.join(SAFETENSORS_DTYPES)})"
        )
    return getattr(torch, SAFETENSORS_DTYPES[source.entry.dtype])


def natural_key(name: str) -> list:
    """Sort key with numbers compared as numbers (expert 10 after expert 9), as transformers orders them."""
    import re

    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


@contextmanager
def open_shards(paths):
    handles = {}
    try:
        for path in paths:
            if path not in handles:
                handles[path] = os.open(path, os.O_RDONLY)
        yield handles
    finally:
        for handle in handles.values():
            os.close(handle)
