"""What each decoder layer is called with, captured once per calibration batch by the model's own code.

Rather than re-implement every family's pre-layer code (embeddings, rotary
position embeddings, causal / sliding-window / Mamba / linear-attention masks,
multimodal position ids), the model runs it: its decoder layers stay on the
meta device with their `forward` replaced by a recorder that keeps the call's
arguments and hands the hidden states straight on, and the last one stops the
forward. What precedes the layers (the embeddings, rotary buffers) is
materialised on first use by a forward pre-hook, so modules the text path
never calls (a vision tower, the LM head) are never read.

Layers of different kinds get different masks (`layer_types`, Nemotron-H's
`block_type`); recording every layer's own call keeps that right. The tensors
they share (one mask object for all full-attention layers) are stored once.
"""

from __future__ import annotations

from dataclasses import dataclass

from moeprune.errors import UserError


class _LayersReached(Exception):
    """Raised by the last layer's recorder: the rest of the forward is not needed."""


@dataclass
class LayerCall:
    """A decoder layer's call without its hidden states: positional args after them, and keyword args."""

    args: tuple
    kwargs: dict

    def with_hidden(self, hidden):
        return (hidden, *self.args), self.kwargs


def capture_layer_calls(model, layers: list, input_ids, attention_mask) -> tuple[object, list[LayerCall]]:
    """(hidden states entering layer 0, one LayerCall per layer) for one batch."""
    import torch

    calls: list[LayerCall | None] = [None] * len(layers)
    first_hidden = []

    def recorder(index):
        def forward(*args, **kwargs):
            if args:
                hidden, rest = args[0], args[1:]
            elif "hidden_states" in kwargs:
                kwargs = dict(kwargs)
                hidden, rest = kwargs.pop("hidden_states"), ()
            else:
                raise UserError(
                    f"decoder layer {index} was called without hidden states; this model's layer "
                    "call is not supported by the layer-streamed pass (use observe whole)"
                )
            if index == 0:
                first_hidden.append(hidden)
            calls[index] = LayerCall(tuple(rest), dict(kwargs))
            if index == len(layers) - 1:
                raise _LayersReached
            return hidden

        return forward

    for index, layer in enumerate(layers):
        layer.forward = recorder(index)
    try:
        with torch.no_grad():
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _LayersReached:
        pass
    finally:
        for layer in layers:
            del layer.forward  # the class's forward again
    skipped = [index for index, call in enumerate(calls) if call is None]
    if skipped or not first_hidden:
        raise UserError(
            f"the model's forward never called decoder layer(s) {skipped}; the layer-streamed pass "
            "needs every layer called in order (use observe whole)"
        )
    return first_hidden[0], calls


def materialise_on_first_use(model, layer_modules: list, load) -> tuple[list, list]:
    """Forward pre-hooks that load each module outside the decoder layers the first time it runs.

    `load(module, prefix)` fills a module from the checkpoint. Returns the hook handles and the list
    the loaded modules are appended to (so the caller can free them after the capture).
    """
    layer_ids = {id(layer) for layer in layer_modules}
    layer_names = [name for name, module in model.named_modules() if id(module) in layer_ids]
    # Every module that contains a decoder layer ("" is the model itself).
    containers = {
        ".".join(parts[:depth]) for parts in (name.split(".") for name in layer_names) for depth in range(len(parts))
    }
    loaded, handles = [], []
    for name, module in model.named_modules():
        parent = name.rsplit(".", 1)[0] if "." in name else ""
        if not name or name in containers or id(module) in layer_ids or parent not in containers:
            continue  # a container, a layer, or inside a subtree its own top module loads

        def hook(mod, args, name=name):
            if any(t.is_meta for t in [*mod.parameters(), *mod.buffers()]):
                load(mod, name)
                loaded.append(mod)

        handles.append(module.register_forward_pre_hook(hook))
    return handles, loaded
