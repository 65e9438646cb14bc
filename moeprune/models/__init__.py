"""Model classes for pruned checkpoints whose MoE layers keep different numbers of experts.

Importing this package registers the transformers classes with `AutoModelForCausalLM`,
so `AutoModelForCausalLM.from_pretrained(dir)` of an uneven checkpoint works without
`trust_remote_code` (the class is chosen by the renamed architecture in config.json,
see `moeprune.formats.expert_counts`). vLLM finds its classes through the
`vllm.general_plugins` entry point `moeprune.models.vllm_plugin:register`.

This package lives in `moeprune` (the neutral core) and not in `pruning/`: the
gateway's engines and the evaluators load pruned checkpoints too, and `app/`,
`evaluators/` and `pruning/` may import only `moeprune`.
"""

from moeprune.models.transformers_uneven import register as _register_transformers

_register_transformers()
