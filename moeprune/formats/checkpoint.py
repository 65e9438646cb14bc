"""A safetensors checkpoint directory, read lazily: config, shard list and tensor headers.

Nothing here loads a tensor. A safetensors file is an 8-byte little-endian
header length N, N bytes of JSON (`name -> {dtype, shape, data_offsets}` plus
an optional `__metadata__`), then the raw tensor bytes; offsets are relative
to the end of the header. Knowing each tensor's byte range is enough to copy
or slice it without torch.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from moeprune.errors import UserError
from moeprune.formats.families import Family, family_for

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
# Weight formats that can execute code on load (pickle) or that we cannot slice: never read or copied.
OTHER_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".h5", ".msgpack", ".gguf", ".onnx")
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Shard:
    path: Path
    size: int
    metadata: dict | None
    tensors: tuple[TensorEntry, ...]  # in file order


def read_shard(path: str | Path) -> Shard:
    """Parse one safetensors file's header (the tensor bytes stay on disk)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise UserError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (header_len,) = struct.unpack("<Q", raw)
        if header_len > _MAX_HEADER:
            raise UserError(
                f"{path}: not a safetensors file (its header length field says {header_len} bytes, "
                f"over the format's {_MAX_HEADER}-byte limit)"
            )
        if header_len > size - 8:
            raise UserError(
                f"{path}: truncated safetensors file ({size} bytes, but its header alone needs "
                f"{8 + header_len}); copy or download it again"
            )
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{path}: corrupt safetensors header ({exc})") from exc
    base = 8 + header_len
    metadata = header.pop("__metadata__", None)
    tensors = []
    for name, info in header.items():
        begin, end = info["data_offsets"]
        if not 0 <= begin <= end or base + end > size:
            raise UserError(f"{path}: tensor {name} has byte range {begin}..{end} outside the file")
        tensors.append(TensorEntry(name, info["dtype"], tuple(info["shape"]), base + begin, base + end))
    tensors.sort(key=lambda entry: entry.start)
    return Shard(path, size, metadata, tuple(tensors))


def load_config(model_dir: str | Path) -> dict:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise UserError(f"{model_dir}: no config.json; give the directory of a Hugging Face checkpoint")
    return json.loads(path.read_text())


def weight_files(model_dir: str | Path) -> list[Path]:
    """The safetensors files of a checkpoint, in index order; refuses pickle-only checkpoints."""
    return _weight_files(Path(model_dir), read_index(model_dir))


def read_index(model_dir: str | Path) -> dict[str, str] | None:
    """The `weight_map` (tensor name -> shard file) of a sharded checkpoint's index; None without an index."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UserError(f"{model_dir}: not a directory")
    index = model_dir / INDEX_NAME
    if not index.is_file():
        return None
    return json.loads(index.read_text()).get("weight_map", {})


def _weight_files(model_dir: Path, weight_map: dict[str, str] | None) -> list[Path]:
    if weight_map is not None:
        names = sorted(set(weight_map.values()))
        missing = [name for name in names if not (model_dir / name).is_file()]
        if missing:
            raise UserError(f"{model_dir}: {INDEX_NAME} names missing shards {missing}")
        return [model_dir / name for name in names]
    files = sorted(model_dir.glob("*.safetensors"))
    if files:
        return files
    others = sorted(p.name for p in model_dir.iterdir() if p.name.endswith(OTHER_WEIGHT_SUFFIXES))
    if others:
        raise UserError(
            f"{model_dir}: only safetensors checkpoints are supported (found {', '.join(others[:3])}); "
            "pickle-based weights can run code when loaded. Convert them once with "
            "`model.save_pretrained(dir, safe_serialization=True)` in a trusted environment"
        )
    raise UserError(f"{model_dir}: no *.safetensors weights found")


@dataclass(frozen=True)
class Checkpoint:
    """One opened checkpoint: its config, family, index and every shard's parsed header.

    Opened once per run and passed down (checks, calibration pass, writer), so no step re-reads the
    index or re-parses a header: what one step checked is exactly what the next one uses.
    """

    path: Path
    config: dict
    family: Family
    shards: tuple[Shard, ...]
    weight_map: dict[str, str] | None = None  # the index's tensor name -> shard file; None when unsharded

    @classmethod
    def open(cls, model_dir: str | Path, config: dict | None = None) -> Checkpoint:
        """Parse the index and every shard header; `config` is config.json when the caller has read it."""
        model_dir = Path(model_dir)
        weight_map = read_index(model_dir)
        files = _weight_files(model_dir, weight_map)
        config = load_config(model_dir) if config is None else config
        return cls(model_dir, config, family_for(config), tuple(read_shard(path) for path in files), weight_map)

    @property
    def sharded(self) -> bool:
        return self.weight_map is not None or len(self.shards) > 1

    def tensors(self):
        for shard in self.shards:
            yield from shard.tensors

    def is_expert_tensor(self, name: str) -> bool:
        """Expert weights proper (per-expert or fused), not router rows or biases."""
        if self.family.match_expert_tensor(name):
            return True
        return bool(self.family.match_dim0_tensor(name)) and f".{self.family.experts_attr}." in name

    def expert_layers(self) -> list[int]:
        """Decoder layers that hold expert-indexed tensors on disk."""
        layers = set()
        for entry in self.tensors():
            match = self.family.match_expert_tensor(entry.name) or self.family.match_dim0_tensor(entry.name)
            if match:
                layers.add(int(match.group("layer")))
        return sorted(layers)

    def totals(self) -> dict:
        """Parameter and byte totals: {"params": {"total", "experts"}, "bytes": {...}}."""
        params = {"total": 0, "experts": 0}
        nbytes = {"total": 0, "experts": 0}
        for entry in self.tensors():
            count = parameter_count(entry)
            params["total"] += count
            nbytes["total"] += entry.nbytes
            if self.is_expert_tensor(entry.name):
                params["experts"] += count
                nbytes["experts"] += entry.nbytes
        return {"params": params, "bytes": nbytes}


def opened(source: str | Path | Checkpoint) -> Checkpoint:
    """`source` itself when the caller has opened it already, else the checkpoint in that directory."""
    return source if isinstance(source, Checkpoint) else Checkpoint.open(source)


def parameter_count(entry) -> int:
    """Weights a stored tensor holds: MXFP4 `*_blocks` pack two 4-bit weights per byte, and their
    `*_scales` are per-block exponents, not weights; every other tensor holds one per element."""
    if entry.name.endswith("_scales") and entry.dtype == "U8":
        return 0
    if entry.name.endswith("_blocks") and entry.dtype == "U8":
        return 2 * entry.numel
    return entry.numel
