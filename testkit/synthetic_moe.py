"""TESTING ONLY: synthetic Qwen3-MoE checkpoints of any size, written straight to safetensors (no model object).

Real tensor names and shapes (per-expert tensors on disk, as Qwen3-30B-A3B
ships them), one shard per decoder layer plus one for the embeddings, and an
index, so a checkpoint of many GB is written with one layer's header in
memory. Values are random normals (std 0.02, norms 1.0) drawn once into a
pool and read from it at shifting offsets: writing costs disk time, not
sampling time, and routing still spreads tokens over the experts.

Used by the flat-memory test (tests/pruning/test_observe_rss.py) and
bench/observe_scale.py.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

_POOL_VALUES = 1 << 22  # 4 Mi random values (8 MiB in bf16)
_DTYPES = {"bfloat16": ("BF16", 2), "float32": ("F32", 4)}


@dataclass(frozen=True)
class MoeShape:
    layers: int
    hidden: int = 2048
    experts: int = 128
    expert_width: int = 768
    top_k: int = 8
    heads: int = 32
    kv_heads: int = 4
    head_dim: int = 128
    vocab: int = 151936
    dtype: str = "bfloat16"

    @property
    def item(self) -> int:
        return _DTYPES[self.dtype][1]

    def layer_shapes(self, layer: int) -> dict[str, tuple[int, ...]]:
        p, h = f"model.layers.{layer}.", self.hidden
        shapes = {
            p + "input_layernorm.weight": (h,),
            p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (self.heads * self.head_dim, h),
            p + "self_attn.k_proj.weight": (self.kv_heads * self.head_dim, h),
            p + "self_attn.v_proj.weight": (self.kv_heads * self.head_dim, h),
            p + "self_attn.o_proj.weight": (h, self.heads * self.head_dim),
            p + "self_attn.q_norm.weight": (self.head_dim,),
            p + "self_attn.k_norm.weight": (self.head_dim,),
            p + "mlp.gate.weight": (self.experts, h),
        }
        for e in range(self.experts):
            shapes[p + f"mlp.experts.{e}.gate_proj.weight"] = (self.expert_width, h)
            shapes[p + f"mlp.experts.{e}.up_proj.weight"] = (self.expert_width, h)
            shapes[p + f"mlp.experts.{e}.down_proj.weight"] = (h, self.expert_width)
        return shapes

    def outer_shapes(self) -> dict[str, tuple[int, ...]]:
        return {
            "model.embed_tokens.weight": (self.vocab, self.hidden),
            "model.norm.weight": (self.hidden,),
            "lm_head.weight": (self.vocab, self.hidden),
        }

    def layer_bytes(self) -> int:
        return sum(math.prod(shape) for shape in self.layer_shapes(0).values()) * self.item

    def embedding_bytes(self) -> int:
        return self.vocab * self.hidden * self.item

    def config(self) -> dict:
        return {
            "architectures": ["Qwen3MoeForCausalLM"],
            "model_type": "qwen3_moe",
            "hidden_size": self.hidden,
            "intermediate_size": 3 * self.hidden,
            "moe_intermediate_size": self.expert_width,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "head_dim": self.head_dim,
            "num_experts": self.experts,
            "num_experts_per_tok": self.top_k,
            "decoder_sparse_step": 1,
            "mlp_only_layers": [],
            "norm_topk_prob": True,
            "vocab_size": self.vocab,
            "max_position_embeddings": 40960,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "tie_word_embeddings": False,
            "hidden_act": "silu",
            "attention_bias": False,
            "dtype": self.dtype,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 0,
        }


def write_checkpoint(out_dir, shape: MoeShape, seed: int = 0) -> Path:
    """config.json + one shard per decoder layer + one for the rest + the index; returns the directory."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    pool = (torch.randn(_POOL_VALUES, generator=generator) * 0.02).to(getattr(torch, shape.dtype))
    pool_bytes = memoryview(pool.view(torch.uint8).numpy())
    ones = memoryview(
        torch.ones(max(shape.hidden, shape.head_dim), dtype=getattr(torch, shape.dtype)).view(torch.uint8).numpy()
    )
    files = [("model-outer.safetensors", shape.outer_shapes())]
    files += [(f"model-layer-{layer:04d}.safetensors", shape.layer_shapes(layer)) for layer in range(shape.layers)]
    weight_map, offset = {}, 0
    for name, shapes in files:
        offset = _write_shard(out / name, shapes, shape, pool_bytes, ones, offset)
        weight_map.update({tensor: name for tensor in shapes})
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (out / "config.json").write_text(json.dumps(shape.config(), indent=2))
    (out / "synthetic.json").write_text(json.dumps(asdict(shape)))
    return out


def _write_shard(path: Path, shapes: dict, shape: MoeShape, pool: memoryview, ones: memoryview, start: int) -> int:
    code, item = _DTYPES[shape.dtype]
    header, position = {"__metadata__": {"format": "pt"}}, 0
    for name, dims in shapes.items():
        nbytes = math.prod(dims) * item
        header[name] = {"dtype": code, "shape": list(dims), "data_offsets": [position, position + nbytes]}
        position += nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        for name, dims in shapes.items():
            nbytes = math.prod(dims) * item
            if name.endswith("norm.weight"):
                handle.write(ones[:nbytes])
                continue
            while nbytes:  # random values from the pool, at an offset that moves on with every tensor
                start %= len(pool) - item
                start -= start % item
                piece = min(nbytes, len(pool) - start)
                handle.write(pool[start : start + piece])
                nbytes -= piece
                start += piece + 7919 * item
    return start
