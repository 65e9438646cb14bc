"""One module's weights at a time, read from the safetensors shards by byte range.

The layer-streamed pass holds a model skeleton on the meta device and fills
one decoder layer (or the embeddings) at a time. Checkpoint names and layouts
differ from the in-memory ones (per-expert tensors fused into one `[E, ...]`
parameter, `backbone.` renamed to `model.`, ...); transformers 5 describes
those differences as per-model weight conversions and applies them with
`convert_and_load_state_dict_in_model` when `from_pretrained` loads a whole
model. We call the same functions on one parameter's source tensors at a
time, so a streamed layer holds exactly the values a whole-model load gives
it, and the transient copy while fusing experts is one parameter, not a layer.

Tensors are read by byte range (`pruning.shard_reads`); nothing maps a file.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

from moeprune.errors import UserError
from moeprune.formats.checkpoint import Checkpoint
from pruning.shard_reads import SourceTensor, natural_key, open_shards, read_into, read_tensor


@dataclass
class StreamedWeights:
    """The checkpoint's tensors, indexed by the model state-dict key each one loads into."""

    checkpoint: Checkpoint
    model: object
    dtype: object
    device: object
    conversions: list = field(default_factory=list)
    targets: dict[str, list[SourceTensor]] = field(default_factory=dict)
    # Checkpoint tensors no parameter takes by name, by the module key prefix they fall under
    # (MXFP4 `*_blocks`/`*_scales` halves, stale buffers some tools save).
    unmatched: dict[str, SourceTensor] = field(default_factory=dict)

    @classmethod
    def index(cls, checkpoint: Checkpoint, model, dtype, device) -> StreamedWeights:
        from transformers.conversion_mapping import get_model_conversion_mapping

        weights = cls(checkpoint, model, dtype, device, conversions=get_model_conversion_mapping(model))
        meta = model.state_dict()
        for shard in checkpoint.shards:
            for entry in shard.tensors:
                key, pattern = weights.model_key(entry.name, meta, with_pattern=True)
                source = SourceTensor(entry, shard.path, pattern)
                if key in meta:
                    weights.targets.setdefault(key, []).append(source)
                else:
                    weights.unmatched[key] = source
        return weights

    def model_key(self, name: str, meta: dict, with_pattern: bool = False):
        """The state-dict key transformers loads checkpoint tensor `name` into (its own renaming rules)."""
        from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

        renamings = [c for c in self.conversions if isinstance(c, WeightRenaming)]
        converters = [c for c in self.conversions if isinstance(c, WeightConverter)]
        key, pattern = rename_source_key(name, renamings, converters, self.model.base_model_prefix, meta)
        return (key, pattern) if with_pattern else key

    def load(self, module, prefix: str) -> int:
        """Fill `module` (state-dict prefix `prefix`) from the checkpoint, strictly; returns the bytes read."""
        recompute_non_persistent_buffers(self.model, module, self.device)
        meta = self.model.state_dict()
        pending = [key for key in meta if key.startswith(prefix + ".") and meta[key].is_meta]
        read, filled = self._load_quantized(prefix, meta, set(pending))
        pending = [key for key in pending if key not in filled]
        missing = [key for key in pending if key not in self.targets]
        if missing:
            files = ", ".join(sorted(shard.path.name for shard in self.checkpoint.shards))
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise UserError(
                f"{self.checkpoint.path}: no tensor for {missing[0]}{more} in {files}; the checkpoint "
                "is incomplete or was saved for another architecture"
            )
        with open_shards(source.path for key in pending for source in self.targets[key]) as handles:
            for key in pending:
                sources = self.targets[key]
                read += sum(source.entry.nbytes for source in sources)
                if self._load_stacked(key, sources, meta[key], handles):
                    continue
                tensors = {source.entry.name: read_tensor(handles[source.path], source) for source in sources}
                self._convert(tensors, {key})
                del tensors
        return read

    def _load_stacked(self, key: str, sources: list[SourceTensor], empty, handles) -> bool:
        """Per-expert tensors read straight into their slot of the fused parameter; False: not this case.

        transformers fuses `experts.E.{gate,up}_proj` by stacking then concatenating, which holds three
        copies of the parameter at once (for Qwen3-30B-A3B's gate_up_proj: 3 x 0.8 GB). When the
        conversion is exactly that (MergeModulelist(dim=0), optionally then Concatenate(dim=1)) and the
        shapes agree with the parameter, each expert's bytes are read into the preallocated result
        instead; anything else takes transformers' own path. tests/pruning/test_observe_stream.py
        checks both give the same statistics for every family.
        """
        import torch

        converter = self._converter(sources[0].pattern)
        if converter is None or key in self._dtype_plan():
            return False
        ops = converter.operations
        kinds = [type(op).__name__ for op in ops]
        if (
            kinds not in (["MergeModulelist"], ["MergeModulelist", "Concatenate"])
            or ops[0].dim != 0
            or (len(ops) == 2 and ops[1].dim != 1)
        ):
            return False
        groups = [
            sorted((s for s in sources if s.pattern == pattern), key=lambda s: natural_key(s.entry.name))
            for pattern in converter.source_patterns
        ]
        shapes = {s.entry.shape for group in groups for s in group}
        if (
            any(not group for group in groups)
            or len({len(group) for group in groups}) != 1
            or len(shapes) != 1
            or (len(groups) > 1 and len(ops) != 2)
        ):
            return False
        rows, *rest = next(iter(shapes))
        shape = (len(groups[0]), rows * len(groups), *rest)
        if tuple(empty.shape) != shape:
            return False  # transformers' path reports the mismatch with its names
        fused = torch.empty(shape, dtype=empty.dtype)
        for column, group in enumerate(groups):
            for expert, source in enumerate(group):
                read_into(handles[source.path], source, fused[expert, column * rows : (column + 1) * rows])
        module_name, _, attribute = key.rpartition(".")
        module = self.model.get_submodule(module_name)
        parameter = torch.nn.Parameter(fused.to(self.device), requires_grad=fused.is_floating_point())
        parameter._is_hf_initialized = True
        setattr(module, attribute, parameter)
        return True

    def _converter(self, pattern: str | None):
        from transformers.core_model_loading import WeightConverter

        if pattern is None:
            return None
        return next(
            (c for c in self.conversions if isinstance(c, WeightConverter) and pattern in c.source_patterns), None
        )

    def _dtype_plan(self) -> dict:
        return self.model._get_dtype_plan(self.dtype) or {}

    def _load_quantized(self, prefix: str, meta: dict, pending: set[str]) -> tuple[int, set[str]]:
        """MXFP4 halves under `prefix`, dequantized by `pruning.mxfp4` (skipped while it does not exist)."""
        names = {key: source for key, source in self.unmatched.items() if key.startswith(prefix + ".")}
        if not names:
            return 0, set()
        try:
            from pruning.mxfp4 import dequantize_layer
        except ImportError:
            return 0, set()
        with open_shards(source.path for source in names.values()) as handles:
            tensors = {source.entry.name: read_tensor(handles[source.path], source) for source in names.values()}
        sources = set(tensors)
        try:
            tensors = dequantize_layer(tensors, self.dtype)
        except ValueError as exc:
            raise UserError(f"{self.checkpoint.path}: {exc}") from None
        tensors = {name: value for name, value in tensors.items() if name not in sources}  # stale extras stay out
        if not tensors:
            return 0, set()
        filled = {self.model_key(name, meta) for name in tensors} & pending
        self._convert(tensors, filled)
        return sum(source.entry.nbytes for source in names.values()), filled

    def _convert(self, tensors: dict, expect: set[str]) -> None:
        from transformers.core_model_loading import convert_and_load_state_dict_in_model
        from transformers.modeling_utils import LoadStateDictConfig

        config = LoadStateDictConfig(
            dtype=self.dtype,
            dtype_plan=self.model._get_dtype_plan(self.dtype),
            device_map={"": self.device},
            weight_mapping=self.conversions,
        )
        with quiet_transformers():
            info, _ = convert_and_load_state_dict_in_model(self.model, tensors, config)
        names = ", ".join(sorted(tensors)[:3]) + (f" (+{len(tensors) - 3})" if len(tensors) > 3 else "")
        if info.mismatched_keys:
            key, got, wanted = sorted(info.mismatched_keys, key=str)[0]
            raise UserError(
                f"{self.checkpoint.path}: {key} from {names} has shape {list(got)} but the model "
                f"expects {list(wanted)}; the checkpoint does not match its config.json (a missing "
                "expert tensor gives a short fused dimension)"
            )
        if info.conversion_errors:
            key, problem = next(iter(info.conversion_errors.items()))
            raise UserError(f"{self.checkpoint.path}: could not convert {names} into {key}: {problem}")
        unfilled = sorted(key for key in expect if key in info.missing_keys)
        if unfilled:
            raise UserError(
                f"{self.checkpoint.path}: {names} did not fill {unfilled[0]}; a tensor is missing from the checkpoint"
            )


@contextmanager
def quiet_transformers():
    """transformers' loader draws a progress bar per call: one per parameter would flood the terminal."""
    from transformers.utils import logging

    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()


def recompute_non_persistent_buffers(model, module, device) -> None:
    """Buffers no checkpoint holds (rotary `inv_freq`, ...), computed as from_pretrained does: `_init_weights`.

    Runs before the checkpoint tensors are loaded, so an init that also touches parameters only
    touches meta tensors.
    """
    for sub in module.modules():
        names = [
            name
            for name in sub._non_persistent_buffers_set
            if sub._buffers.get(name) is not None and sub._buffers[name].is_meta
        ]
        if names:
            for name in names:
                sub._buffers[name] = sub._buffers[name].new_empty(sub._buffers[name].shape, device=device)
            model._init_weights(sub)


def free(module) -> None:
    """Back to the meta device: the module keeps its structure and hooks, its tensors are released."""
    module.to("meta")
    return_freed_memory()


def return_freed_memory() -> None:
    """Hand the freed layer's heap pages back to the OS (glibc's `malloc_trim`; a no-op elsewhere).

    A layer's tensors are many allocations of a few hundred KiB to tens of MiB; glibc keeps freed
    ones in its arenas, and the next layer's allocations do not fit exactly into those holes, so
    without this the resident set grew by about half a layer per layer (measured: 0.62 -> 1.02 GB
    over 16 layers of 50 MB; with it 0.61 -> 0.68 GB).
    """
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass
