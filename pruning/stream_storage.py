"""How the layer-streamed pass keeps each batch's captured layer inputs between layers, compactly and exactly.

What a decoder layer is called with besides its hidden states (`pruning.stream_inputs.LayerCall`: masks,
position ids, rotary tables) is captured once per batch and kept for every layer. Kept naively it grows
with the calibration set: a padded batch gets a boolean mask of batch x T x T, 4 MiB per 2,048-token
sample, so 128 such samples hold 512 MiB of masks. Three exact savings:
- a tensor shared by several layers' calls (one mask for all full-attention layers) is moved once;
- a tensor equal to one kept for an earlier batch (same shape, same bits: unpadded batches' rotary
  tables) is kept once;
- a large tensor of at most two values (a boolean mask, or an additive float mask of 0 and a minimum)
  is bit-packed, 8 elements per byte, and unpacked for each layer call.
The layers receive the same bits either way; the statistics tests compare against the whole-model pass.
"""

from __future__ import annotations

from dataclasses import dataclass

PACK_MIN_ELEMENTS = 4096  # smaller boolean tensors are not worth the unpacking
SHARE_CANDIDATES = 4  # a new tensor is compared with the last few kept of its kind only


@dataclass(frozen=True)
class PackedBool:
    """A tensor of at most two distinct values (a boolean mask, or an additive float mask of 0 and a
    minimum) stored as one bit per element plus the two values. torch only, so it stays on the device it
    was packed on. `pack` returns None for a tensor it cannot store exactly this way."""

    packed: object  # uint8 tensor, ceil(numel / 8) bytes: bit set where the element is `high`
    low: object  # 0-d tensors of the original dtype
    high: object
    shape: tuple
    numel: int

    @classmethod
    def pack(cls, tensor) -> PackedBool | None:
        import torch

        flat = tensor.reshape(-1)
        if flat.dtype == torch.bool:
            low, high = torch.tensor(False), torch.tensor(True)
        else:  # one pass each, no sort: the extremes, then whether every element is one of them
            low, high = flat.min(), flat.max()
            if torch.isnan(low.float()) or torch.isnan(high.float()) or not ((flat == low) | (flat == high)).all():
                return None
        bits = flat == high
        spare = (-bits.numel()) % 8
        if spare:
            bits = torch.cat([bits, bits.new_zeros(spare)])
        weights = 1 << torch.arange(8, device=bits.device, dtype=torch.uint8)
        packed = (bits.reshape(-1, 8).to(torch.uint8) * weights).sum(dim=1, dtype=torch.uint8)
        return cls(packed, low.clone(), high.clone(), tuple(tensor.shape), tensor.numel())

    def unpack(self, device=None):
        import torch

        packed = self.packed if device is None else self.packed.to(device)
        shifts = torch.arange(8, device=packed.device, dtype=torch.uint8)
        bits = ((packed[:, None] >> shifts) & 1).reshape(-1)[: self.numel].to(torch.bool).reshape(self.shape)
        low, high = self.low.to(packed.device), self.high.to(packed.device)
        return bits if low.dtype == torch.bool and not low and high else torch.where(bits, high, low)

    @property
    def nbytes(self) -> int:
        return self.packed.numel() + 2 * self.low.element_size()


def map_tensors(value, fn):
    """`value` (a LayerCall, or tuples / lists / dicts of them) with fn applied to every tensor and PackedBool."""
    import torch

    from pruning.stream_inputs import LayerCall

    if isinstance(value, (torch.Tensor, PackedBool)):
        return fn(value)
    if isinstance(value, LayerCall):
        return LayerCall(map_tensors(value.args, fn), map_tensors(value.kwargs, fn))
    if isinstance(value, tuple):
        return tuple(map_tensors(item, fn) for item in value)
    if isinstance(value, list):
        return [map_tensors(item, fn) for item in value]
    if isinstance(value, dict):
        return {key: map_tensors(item, fn) for key, item in value.items()}
    return value


def moved(value, device, memo: dict | None = None):
    """`value` with every tensor on `device`; a tensor shared by several calls is moved once (via `memo`)."""
    memo = {} if memo is None else memo

    def move(tensor):
        if isinstance(tensor, PackedBool) or tensor.device == device:
            return tensor
        if id(tensor) not in memo:
            memo[id(tensor)] = tensor.to(device)
        return memo[id(tensor)]

    return map_tensors(value, move)


def kept(call, device, memo: dict, shared: dict):
    """A captured call as the pass keeps it: on `device`, large boolean tensors bit-packed, and a tensor
    equal to one kept for a recent batch reused. `memo` is per batch (tensors its layers share); `shared`
    spans batches: (shape, dtype, device) -> the last few kept of that kind."""

    def keep(tensor):
        if isinstance(tensor, PackedBool):
            return tensor
        if id(tensor) not in memo:
            value = tensor.to(device)
            if _worth_packing(value):
                value = PackedBool.pack(value) or value  # None: more than two values, kept as it is
            same_kind = shared.setdefault((tuple(tensor.shape), tensor.dtype, str(device)), [])
            match = next((old for old in same_kind if _equal(_data(old), _data(value))), None)
            if match is None:
                match = value
                same_kind.append(value)
                del same_kind[:-SHARE_CANDIDATES]
            memo[id(tensor)] = match
        return memo[id(tensor)]

    return map_tensors(call, keep)


def _worth_packing(value) -> bool:
    """Large enough, and a mask or could be one: any boolean or integer tensor, or a float tensor with a
    (query x key) pair of equal trailing dimensions. Rotary tables and the like are floats of many values;
    `pack` refuses what it cannot store exactly after a min / max pass."""
    if value.numel() < PACK_MIN_ELEMENTS:
        return False
    return not value.is_floating_point() or (value.dim() >= 2 and value.shape[-1] == value.shape[-2])


def _data(value):
    if isinstance(value, PackedBool):
        return (value.packed, value.low, value.high)
    return value


def _equal(a, b) -> bool:
    import torch

    if isinstance(a, tuple) or isinstance(b, tuple):
        return isinstance(a, tuple) and isinstance(b, tuple) and all(torch.equal(x, y) for x, y in zip(a, b))
    return torch.equal(a, b)


def restored(value, device):
    """`value` ready for a layer call on `device`: packed tensors unpacked, every tensor moved there."""
    memo: dict = {}

    def restore(tensor):
        if isinstance(tensor, PackedBool):
            if id(tensor) not in memo:
                memo[id(tensor)] = tensor.unpack(device)
            return memo[id(tensor)]
        return moved(tensor, device, memo)

    return map_tensors(value, restore)


def unique_bytes(calls) -> int:
    """Bytes the kept calls hold, each tensor (or packed tensor) counted once."""
    seen: dict = {}

    def count(tensor):
        seen[id(tensor)] = tensor.nbytes if isinstance(tensor, PackedBool) else tensor.numel() * tensor.element_size()
        return tensor

    map_tensors(calls, count)
    return sum(seen.values())
