"""Reading the global (largest) expert count of a heterogeneous transformers config, where that is safe."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def global_counts_readable(config):
    """Let stock code read the global (largest) count of a heterogeneous config.

    transformers raises on a global read of a per-layer attribute unless the config allows it;
    callers use this only where the global value is safe: the stock layers built at that count are replaced
    right after (transformers), or the value feeds a path that is refused for uneven counts (vLLM).
    """
    before = config.__dict__.get("allow_global_per_layer_attribute_access")
    config.allow_global_per_layer_attribute_access = True
    try:
        yield config
    finally:
        if before is None:
            config.__dict__.pop("allow_global_per_layer_attribute_access", None)  # keep it out of config.json
        else:
            config.allow_global_per_layer_attribute_access = before
