"""Reference for the pruning invariant: the SOURCE model with some experts routed around.

Inside `experts_masked(model, family, kept)` every MoE router of the loaded
source model adds -inf to the router logits of the experts not in `kept`, so
they are never selected and get zero weight. For grouped sigmoid routers
(DeepSeek, Nemotron-H) a removed expert's selection score is
sigmoid(logit) + e_score_correction_bias, which a -inf logit alone would
leave at the bias; that bias is set to -inf too. A correctly pruned
checkpoint must reproduce this model's logits.

The -inf is added to the output of the router's own linear layer (every
family's router computes its logits with one `F.linear` call) through a
torch function mode, so no family's routing code is copied here.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


class _AddToFirstLinear(TorchFunctionMode):
    def __init__(self, offset: torch.Tensor):
        super().__init__()
        self.offset = offset
        self.done = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is F.linear and not self.done:
            self.done = True
            out = out + self.offset.to(device=out.device, dtype=out.dtype)
        return out


def _masked_forward(original, offset):
    def forward(*args, **kwargs):
        with _AddToFirstLinear(offset):
            return original(*args, **kwargs)

    return forward


@contextlib.contextmanager
def experts_masked(model, family, kept: dict[int, list[int]], num_experts: int):
    """Route around every expert not in kept[layer] in the loaded source model."""
    blocks = family.moe_blocks(model)
    if sorted(blocks) != sorted(kept):
        raise ValueError(f"kept has layers {sorted(kept)}, the model's MoE layers are {sorted(blocks)}")
    restore = []
    try:
        for layer, block in blocks.items():
            router = family.router(block)
            removed = [i for i in range(num_experts) if i not in set(kept[layer])]
            offset = torch.zeros(num_experts)
            offset[removed] = float("-inf")
            router.forward = _masked_forward(router.forward, offset)
            restore.append((router, None, None))
            if family.selection_bias_attr:
                bias = getattr(router, family.selection_bias_attr)
                restore.append((router, bias, bias.detach().clone()))
                with torch.no_grad():
                    bias[removed] = float("-inf")
        yield model
    finally:
        for router, bias, saved in reversed(restore):
            if bias is None:
                del router.forward
            else:
                with torch.no_grad():
                    bias.copy_(saved)
