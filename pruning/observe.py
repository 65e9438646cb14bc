"""The observation pass: one forward over the calibration tokens, hooks on every MoE block.

Generic over families: a forward pre-hook on each block's fused experts
module reads exactly what the model routed, ``experts(hidden, top_k_index,
top_k_weights)`` (transformers 5 calls every family's experts this way), so
the hook sees the experts' real input (after any latent projection) and the
router's real choice. Single-expert outputs E_i(x) come from calling the same
experts module with one expert per row and weight 1: ``experts(x, [[i]], [[1]])``.
Only the routed (token, expert) pairs are run, plus, for EAN, every expert on
the EAN rows: the first `ean_tokens_per_sample` tokens of every sample (the
study's rule) when that is set, and at most `ean_max_tokens` rows per layer in
stream order (the whole rule when no per-sample count is set).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from moeprune.errors import UserError
from moeprune.formats.statistics import VECTORS, ExpertStats, LayerStats

# Largest activation slab (rows x hidden) materialised at once when calling experts.
CHUNK_ELEMENTS = 1 << 23
# The hooks rely on transformers 5's fused-experts call; under 4.x they never fire and every
# statistic would silently stay 0 (every method would then keep experts 0..k-1).
MIN_TRANSFORMERS_MAJOR = 5


def require_transformers(version: str) -> None:
    """Refuse a transformers older than the fused-experts call the observation hooks need."""
    major = version.split(".", 1)[0]
    if not major.isdigit() or int(major) < MIN_TRANSFORMERS_MAJOR:
        raise UserError(
            f"transformers {version} is installed, but the observation pass needs transformers >= "
            f"{MIN_TRANSFORMERS_MAJOR} (its experts modules take (hidden, top_k_index, top_k_weights)); "
            "upgrade it: pip install 'transformers>=5'"
        )


def check_every_layer_routed(stats: dict[int, LayerStats], family) -> None:
    """A MoE layer that saw no routed token means the hooks did not fire: never hand on silent zeros."""
    silent = [
        layer for layer, layer_stats in sorted(stats.items()) if layer_stats.tokens == 0 or not any(layer_stats.counts)
    ]
    if silent:
        raise UserError(
            f"the observation pass saw no routed tokens in MoE layer(s) {silent} of this "
            f"{family.model_type} model: its experts modules were never called the way the hooks "
            "expect, so every score would be 0. Check the transformers version (>= 5) and that the "
            "calibration data is not empty"
        )


# Without a per-sample rule, EAN runs every expert on at most this many rows per layer (stream order).
DEFAULT_EAN_MAX_TOKENS = 4096


def default_ean_limits(ean_max_tokens: int | None, ean_tokens_per_sample: int | None) -> tuple[int | None, int | None]:
    """(cap per layer, prefix per sample) with the default filled in, checked.

    With neither given, the cap is 4096 rows per layer in stream order. With a per-sample prefix and no cap,
    there is no cap: every sample's prefix counts, as in the study (first 256 tokens of every sample).
    """
    if ean_max_tokens is None and ean_tokens_per_sample is None:
        ean_max_tokens = DEFAULT_EAN_MAX_TOKENS
    check_ean_limits(ean_max_tokens, ean_tokens_per_sample)
    return ean_max_tokens, ean_tokens_per_sample


def check_ean_limits(ean_max_tokens: int | None, ean_tokens_per_sample: int | None) -> None:
    """The EAN token rule's numbers: a per-layer cap (None: none) and a per-sample prefix (None: none)."""
    if ean_max_tokens is not None and ean_max_tokens < 0:
        raise UserError(f"ean_max_tokens must be >= 0 (got {ean_max_tokens})", param="ean_max_tokens")
    if ean_tokens_per_sample is not None and ean_tokens_per_sample < 1:
        raise UserError(
            f"ean_tokens_per_sample must be at least 1 (got {ean_tokens_per_sample}); switch EAN off "
            "with ean_max_tokens 0",
            param="ean_tokens_per_sample",
        )


def find_moe_blocks(model, family) -> dict[int, object]:
    """Decoder-layer index -> MoE block, located by the family descriptor (never by class names)."""
    return dict(family.moe_blocks(model))


def token_batches(sequences: list[list[int]], batch_tokens: int) -> Iterator[list[list[int]]]:
    """Consecutive sequences grouped so that (longest x count) stays within the token budget."""
    batch, longest = [], 0
    for sequence in sequences:
        grown = max(longest, len(sequence))
        if batch and grown * (len(batch) + 1) > batch_tokens:
            yield batch
            batch, grown = [], len(sequence)
        batch.append(sequence)
        longest = grown
    if batch:
        yield batch


def padded_batch(batch: list[list[int]], pad_token_id: int):
    """(input_ids, attention_mask), right-padded to the longest sequence: what every pass driver feeds."""
    import torch

    width = max(len(s) for s in batch)
    ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, sequence in enumerate(batch):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
    return ids, mask


class ExpertObserver:
    """Accumulates per-expert statistics from the experts modules' inputs."""

    def __init__(
        self,
        blocks: dict[int, object],
        family,
        num_experts: int,
        ean_max_tokens: int | None,
        ean_tokens_per_sample: int | None = None,
    ):
        import torch

        check_ean_limits(ean_max_tokens, ean_tokens_per_sample)
        self.torch = torch
        self.family = family
        self.num_experts = num_experts
        self.ean_max_tokens = ean_max_tokens  # None: no cap on EAN rows per layer
        self.ean_tokens_per_sample = ean_tokens_per_sample  # None: no per-sample rule
        self.experts = {layer: getattr(block, family.experts_attr) for layer, block in blocks.items()}
        self.sums: dict[int, dict[str, object]] = {}
        self.tokens = {layer: 0 for layer in blocks}
        self.ean_tokens = {layer: 0 for layer in blocks}
        self.valid = None  # flattened bool mask of real (non-padding) tokens of the current batch
        self.ean_rows = None  # among those real tokens, the ones inside each sample's EAN prefix
        self._busy = False  # our own calls into the experts must not be observed

    def begin_batch(self, lengths: list[int], width: int, device) -> None:
        """Declare the next batch's real rows (right-padded sequences of these lengths, padded to width).

        Every driver (the whole-model pass, the layer-streamed pass) calls this before each batch
        reaches a MoE layer, so which rows count is decided in one place.
        """
        torch = self.torch
        positions = torch.arange(width).expand(len(lengths), width)
        valid = positions < torch.tensor(lengths).reshape(-1, 1)
        self.valid = valid.reshape(-1).to(device)
        if self.ean_tokens_per_sample is not None:
            # Positions count from each sample's first token, so batching and padding never move the rule.
            self.ean_rows = (positions < self.ean_tokens_per_sample)[valid].to(device)

    @contextmanager
    def attached(self):
        handles = [
            experts.register_forward_pre_hook(self._hook_for(layer), with_kwargs=True)
            for layer, experts in self.experts.items()
        ]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def _hook_for(self, layer: int):
        def hook(module, args, kwargs):
            if self._busy:
                return None
            inputs = list(args) + list(kwargs.values())
            if len(inputs) < 3:
                raise RuntimeError(
                    f"layer {layer}: experts module called with {len(inputs)} inputs; expected "
                    "(hidden_states, top_k_index, top_k_weights)"
                )
            self._busy = True
            try:
                with self.torch.no_grad():
                    self._observe(layer, module, *inputs[:3])
            finally:
                self._busy = False
            return None

        return hook

    def _accumulators(self, layer: int, device):
        if layer not in self.sums:
            self.sums[layer] = {
                name: self.torch.zeros(self.num_experts, dtype=self.torch.float64, device=device) for name in VECTORS
            }
        return self.sums[layer]

    def _observe(self, layer, experts, hidden, index, weights):
        torch = self.torch
        hidden = hidden.reshape(-1, hidden.shape[-1])
        index = index.reshape(hidden.shape[0], -1).long()
        weights = weights.reshape(hidden.shape[0], -1)
        if self.valid is not None and self.valid.numel() == hidden.shape[0]:
            keep = self.valid.to(hidden.device)
            hidden, index, weights = hidden[keep], index[keep], weights[keep]
        if hidden.shape[0] == 0:
            return
        acc = self._accumulators(layer, hidden.device)
        num_experts = self.num_experts
        routed = index < num_experts  # some routers mark dropped slots with index == num_experts
        index = index.clamp(max=num_experts - 1)
        gates = weights.float() * routed
        gates = gates / gates.sum(dim=-1, keepdim=True).clamp_min(1e-20)
        norms, mixed = self._routed_outputs(experts, hidden, index, gates, weights.dtype)
        x = hidden.float()
        token_weight = 1.0 - torch.nn.functional.cosine_similarity(x, x + mixed, dim=-1)
        flat = index.reshape(-1)

        def add(name, values):
            acc[name] += torch.bincount(flat, weights=values.reshape(-1).double(), minlength=num_experts)

        add("counts", routed.float())
        add("gate_sum", gates)
        add("reap_sum", gates * norms)
        add("easyep_sum", token_weight[:, None] * gates * norms)
        self.tokens[layer] += hidden.shape[0]
        subset = self._ean_subset(layer, hidden)
        if subset.shape[0] > 0:
            acc["ean_sum"] += self._all_expert_norms(experts, subset).sum(dim=0).double()
            self.ean_tokens[layer] += subset.shape[0]

    def _ean_subset(self, layer, hidden):
        """The rows of this (padding-free) batch on which EAN runs every expert."""
        if self.ean_tokens_per_sample is not None:
            if self.ean_rows is None or self.ean_rows.numel() != hidden.shape[0]:
                raise RuntimeError(
                    f"layer {layer}: the per-sample EAN rule needs begin_batch(lengths, width, "
                    "device) for this batch before its MoE layers run"
                )
            hidden = hidden[self.ean_rows.to(hidden.device)]
        if self.ean_max_tokens is None:
            return hidden
        return hidden[: max(0, self.ean_max_tokens - self.ean_tokens[layer])]

    def _call_experts(self, experts, rows, expert_ids, dtype):
        ones = self.torch.ones(expert_ids.shape[0], 1, dtype=dtype, device=rows.device)
        return experts(rows, expert_ids.reshape(-1, 1), ones).float()

    def _routed_outputs(self, experts, hidden, index, gates, dtype):
        """||E_i(x_t)|| for every routed pair [N, k], and sum_j g_j E_j(x_t) [N, H]."""
        torch = self.torch
        n_tokens, top_k = index.shape
        step = max(1, CHUNK_ELEMENTS // (hidden.shape[-1] * top_k))
        norms, mixed = [], []
        for start in range(0, n_tokens, step):
            x = hidden[start : start + step]
            ids = index[start : start + step]
            out = self._call_experts(experts, x.repeat_interleave(top_k, dim=0), ids.reshape(-1), dtype)
            out = out.reshape(x.shape[0], top_k, -1)
            norms.append(out.norm(dim=-1))
            mixed.append((gates[start : start + step, :, None] * out).sum(dim=1))
        return torch.cat(norms), torch.cat(mixed)

    def _all_expert_norms(self, experts, hidden):
        """||E_i(x_t)|| for every expert on every given token: [N, E] (EAN only)."""
        torch = self.torch
        num_experts = self.num_experts
        step = max(1, CHUNK_ELEMENTS // (hidden.shape[-1] * num_experts))
        all_ids = torch.arange(num_experts, device=hidden.device)
        norms = []
        for start in range(0, hidden.shape[0], step):
            x = hidden[start : start + step]
            ids = all_ids.repeat(x.shape[0])
            out = self._call_experts(experts, x.repeat_interleave(num_experts, dim=0), ids, hidden.dtype)
            norms.append(out.norm(dim=-1).reshape(x.shape[0], num_experts))
        return torch.cat(norms)

    def layer_stats(self) -> dict[int, LayerStats]:
        stats = {}
        for layer in self.experts:
            sums = self.sums.get(layer)
            vectors = {name: sums[name].cpu().tolist() for name in VECTORS} if sums else {}
            stats[layer] = LayerStats(self.num_experts, self.tokens[layer], self.ean_tokens[layer], **vectors)
        return stats

    def expert_stats(self, top_k: int) -> ExpertStats:
        """What every pass driver returns: the statistics, checked, with the EAN rule that produced them."""
        layers = self.layer_stats()
        check_every_layer_routed(layers, self.family)
        return ExpertStats(
            model_type=self.family.model_type,
            num_experts=self.num_experts,
            top_k=top_k,
            layers=layers,
            ean_max_tokens=self.ean_max_tokens,
            ean_tokens_per_sample=self.ean_tokens_per_sample,
        )


def observe(
    model,
    family,
    config: dict,
    sequences: list[list[int]],
    *,
    batch_tokens: int = 8192,
    ean_max_tokens: int | None = 4096,
    ean_tokens_per_sample: int | None = None,
    pad_token_id: int = 0,
    progress: bool = True,
) -> ExpertStats:
    """Run the calibration sequences through `model` once and return per-expert statistics.

    EAN runs every expert on the first `ean_tokens_per_sample` tokens of each sample (if set), and on at
    most `ean_max_tokens` such rows per layer in stream order (None: no cap).
    """
    import torch
    import transformers

    from moeprune.progress import progress as progress_display

    require_transformers(transformers.__version__)
    if batch_tokens < 1:
        raise UserError(f"batch_tokens must be at least 1 (got {batch_tokens})", param="batch_tokens")
    check_ean_limits(ean_max_tokens, ean_tokens_per_sample)
    blocks = find_moe_blocks(model, family)
    if not blocks:
        raise UserError(
            f"found no MoE blocks (decoder layer .{family.block_attr} with .{family.experts_attr}) in the loaded "
            f"{family.model_type} model; is the checkpoint complete?"
        )
    observer = ExpertObserver(blocks, family, family.num_experts(config), ean_max_tokens, ean_tokens_per_sample)
    device = next(model.parameters()).device
    model.eval()
    total = sum(len(s) for s in sequences)
    # A bar on a terminal, a plain line per 5% of the tokens in a log (moeprune.progress).
    with observer.attached(), torch.no_grad(), progress_display(total, "observing", "tok", enabled=progress) as bar:
        for batch in token_batches(sequences, batch_tokens):
            ids, mask = padded_batch(batch, pad_token_id)
            observer.begin_batch([len(s) for s in batch], ids.shape[1], device)
            model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
            bar.update(int(mask.sum()))
    return observer.expert_stats(family.top_k(config))


DTYPES = ("float32", "bfloat16", "float16")


def model_class_names(family) -> list[str]:
    """The transformers auto classes tried, in order, for a family's checkpoints (whole or streamed pass)."""
    # The family may name its auto class (VL checkpoints); else causal LM, then image-text-to-text.
    if getattr(family, "auto_class", None):
        return [family.auto_class]
    return ["AutoModelForCausalLM", "AutoModelForImageTextToText"]


def load_model(source_dir, family=None, device: str = "cpu", dtype: str = "float32"):
    """Load the source checkpoint with transformers for observation (no remote code).

    `source_dir` is a directory or a `Checkpoint` the caller has opened (its headers are then not read again).
    """
    import torch
    import transformers

    import moeprune.models  # noqa: F401  (registers the classes of uneven checkpoints: re-pruning one works)
    from moeprune.formats.checkpoint import Checkpoint
    from pruning import mxfp4

    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}", param="dtype")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device} requested but torch sees no CUDA device; use the cpu", param="device")
    path = source_dir.path if isinstance(source_dir, Checkpoint) else source_dir
    names = model_class_names(family)
    for position, name in enumerate(names):
        try:
            # Loaded on the CPU then moved: device_map would need `accelerate`, not a dependency.
            # MXFP4 checkpoints (gpt-oss) load with their experts dequantized: see pruning/mxfp4.py.
            model = getattr(transformers, name).from_pretrained(
                str(path), dtype=getattr(torch, dtype), **mxfp4.from_pretrained_options(source_dir)
            )
            return mxfp4.match_dtype(model, source_dir, dtype).to(device)
        except ValueError:
            # "Unrecognized configuration class" for this auto class: try the next one.
            if position == len(names) - 1:
                raise
