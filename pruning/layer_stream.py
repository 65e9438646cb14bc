"""The layer-streamed observation pass: one decoder layer in memory at a time, read straight from the shards.

1. The model is built from its config on the meta device (no weights), with
   the family's auto class, as `load_model` would build it.
2. For every calibration batch the model's own forward runs up to the first
   decoder layer (`pruning.stream_inputs`): the embeddings and rotary buffers
   are loaded on first use, every layer's call is recorded, the layers never
   run. Then the embeddings are freed again.
3. For each decoder layer in order: its tensors are read from the shards by
   byte range and loaded into it (`pruning.stream_weights`, strict), every
   batch runs through it with the `ExpertObserver` hooks on its experts, its
   outputs replace its inputs in the hidden-state buffer, and it goes back to
   the meta device.

So memory is one layer + the hidden states of the calibration set + the
recorded masks and position embeddings, whatever the depth. The statistics
come from the same `ExpertObserver` as the whole-model pass: in float32 both
passes give the same numbers (tests/pruning/test_observe_stream.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from moeprune.errors import UserError
from moeprune.formats.statistics import ExpertStats
from moeprune.units import human_bytes
from pruning.observe import (
    DTYPES,
    ExpertObserver,
    find_moe_blocks,
    model_class_names,
    padded_batch,
    require_transformers,
    token_batches,
)
from pruning.stream_inputs import capture_layer_calls, materialise_on_first_use
from pruning.stream_progress import LayerProgress, peak_device_bytes, peak_rss_bytes
from pruning.stream_storage import kept, restored, unique_bytes
from pruning.stream_weights import StreamedWeights, free


@dataclass
class StreamedPass:
    """The statistics and what the pass cost (printed; the mode, dtype and device go to pruning.json)."""

    stats: ExpertStats
    hidden_state_bytes: int
    peak_rss_bytes: int
    peak_device_bytes: int | None
    seconds: float
    read_seconds: float  # reading and loading layer weights
    compute_seconds: float  # running the batches through the layers (hooks included)


def check_device(device: str):
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device} requested but torch sees no CUDA device; use the cpu", param="device")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}; use cpu, cuda or cuda:N", param="device") from None


def refuse_unsupported_quantization(config: dict) -> None:
    """Quantized weights other than MXFP4 (FP8 blocks with `*_scale_inv`, ...) would be cast without their scales."""
    quantization = config.get("quantization_config") or (config.get("text_config") or {}).get("quantization_config")
    method = quantization.get("quant_method") if isinstance(quantization, dict) else None
    if method and method != "mxfp4":  # MXFP4 experts are dequantized per layer (pruning.mxfp4)
        raise UserError(
            f"the checkpoint's weights are quantized with {method!r}; the layer-streamed pass reads "
            f"plain and MXFP4 weights only. Dequantize the checkpoint first (e.g. to bfloat16), or try "
            "observe whole",
            param="observe",
        )


def build_skeleton(source_dir, family, dtype: str):
    """The model with every tensor on the meta device, built from config.json (no remote code)."""
    import torch
    import transformers

    config = transformers.AutoConfig.from_pretrained(str(source_dir))
    names = model_class_names(family)
    for position, name in enumerate(names):
        try:
            with torch.device("meta"):
                model = getattr(transformers, name).from_config(config, dtype=getattr(torch, dtype))
            return model.eval()
        except ValueError:
            if position == len(names) - 1:
                raise


def observe_streamed(
    source_dir,
    family,
    config: dict,
    sequences: list[list[int]],
    *,
    device: str = "cpu",
    dtype: str = "bfloat16",
    batch_tokens: int = 8192,
    ean_max_tokens: int | None = 4096,
    ean_tokens_per_sample: int | None = None,
    pad_token_id: int = 0,
    offload_activations: bool = False,
    progress: bool = True,
) -> StreamedPass:
    """Per-expert statistics of `sequences`, with one decoder layer of `source_dir` in memory at a time.

    `source_dir` is a directory or a `Checkpoint` the caller has opened (its headers are then not read again).
    """
    import torch
    import transformers

    from moeprune.formats.checkpoint import opened

    require_transformers(transformers.__version__)
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}", param="dtype")
    if batch_tokens < 1:
        raise UserError(f"batch_tokens must be at least 1 (got {batch_tokens})", param="batch_tokens")
    if not sequences:
        raise UserError("the calibration set is empty; give calibration files with text", param="calibration")
    refuse_unsupported_quantization(config)
    run_on = check_device(device)
    keep_on = torch.device("cpu") if offload_activations else run_on
    checkpoint = opened(source_dir)
    model = build_skeleton(checkpoint.path, family, dtype)
    layers = family.decoder_layers(model)
    blocks = find_moe_blocks(model, family)
    if not blocks:
        raise UserError(
            f"found no MoE blocks (decoder layer .{family.block_attr} with .{family.experts_attr}) in "
            f"the {family.model_type} model built from {checkpoint.path}/config.json"
        )
    observer = ExpertObserver(blocks, family, family.num_experts(config), ean_max_tokens, ean_tokens_per_sample)
    weights = StreamedWeights.index(checkpoint, model, getattr(torch, dtype), run_on)
    names = {id(module): name for name, module in model.named_modules()}
    batches = [(batch, *padded_batch(batch, pad_token_id)) for batch in token_batches(sequences, batch_tokens)]
    tokens = sum(map(len, sequences))
    report = LayerProgress(len(layers), tokens, enabled=progress)
    hidden_bytes = (
        sum(ids.numel() for _, ids, _ in batches) * hidden_size(model) * torch.finfo(getattr(torch, dtype)).bits // 8
    )
    report.say(
        f"layer-streamed pass over {len(layers)} decoder layers, {tokens:,} tokens in {len(batches)} "
        f"batches: hidden-state buffer {human_bytes(hidden_bytes)} on {keep_on}, weights {dtype} on {run_on}"
    )

    hidden, calls = capture_inputs(model, layers, weights, batches, run_on, keep_on)
    report.say(
        f"captured the inputs of every decoder layer ({human_bytes(unique_bytes(calls))} of masks and "
        "position embeddings besides the hidden states)"
    )
    read_seconds = compute_seconds = 0.0
    with observer.attached(), torch.no_grad():
        for index, layer in enumerate(layers):
            loaded_at = report.elapsed
            read = weights.load(layer, names[id(layer)])
            started = report.elapsed
            for number, (batch, ids, _) in enumerate(batches):
                observer.begin_batch([len(s) for s in batch], ids.shape[1], run_on)
                args, kwargs = calls[number][index].with_hidden(hidden[number])
                out = layer(*restored(args, run_on), **restored(kwargs, run_on))
                hidden[number] = (out[0] if isinstance(out, tuple) else out).to(keep_on)
            free(layer)
            kind = "MoE" if index in blocks else "dense"
            read_seconds += started - loaded_at
            compute_seconds += report.elapsed - started
            report.layer_done(index, kind, started - loaded_at, report.elapsed - started, read)
    stats = observer.expert_stats(family.top_k(config))
    result = StreamedPass(
        stats, hidden_bytes, peak_rss_bytes(), peak_device_bytes(run_on), report.elapsed, read_seconds, compute_seconds
    )
    device_peak = (
        f", {run_on} peak allocated {human_bytes(result.peak_device_bytes)}"
        if result.peak_device_bytes is not None
        else ""
    )
    report.say(f"observation done in {report.elapsed:.1f}s; peak RSS {human_bytes(result.peak_rss_bytes)}{device_peak}")
    return result


def capture_inputs(model, layers, weights, batches, run_on, keep_on):
    """Per batch: the hidden states entering layer 0 and every layer's recorded call (stored on keep_on)."""
    handles, loaded = materialise_on_first_use(model, layers, weights.load)
    hidden, calls, shared = [], [], {}
    try:
        for _, ids, mask in batches:
            first, layer_calls = capture_layer_calls(model, layers, ids.to(run_on), mask.to(run_on))
            memo = {}
            hidden.append(first.to(keep_on))
            calls.append([kept(call, keep_on, memo, shared) for call in layer_calls])
    except NotImplementedError as exc:
        raise UserError(
            f"the model's code before its decoder layers uses a module this pass did not load ({exc}); "
            "use observe whole"
        ) from None
    finally:
        for handle in handles:
            handle.remove()
        for module in loaded:
            free(module)  # the embeddings are not needed again
    return hidden, calls


def hidden_size(model) -> int:
    config = model.config.get_text_config()
    return int(config.hidden_size)
