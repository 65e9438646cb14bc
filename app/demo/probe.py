"""Quick in-process checks of a demo model with transformers (no vLLM): accuracy and routing.

Used while designing the demo and by the bench script for many random-pruning
seeds, where starting a vLLM server per mask would cost minutes each. Pruning
is simulated by masking dropped experts out of routing, which gives the same
logits as the physically pruned checkpoint (measured in shared/VLLM-CPU.md).
"""

from __future__ import annotations

import contextlib

from app.demo.choices import ChoiceItem
from evaluators.prompts import parse_answer


@contextlib.contextmanager
def routing_mask(model, kept: dict[int, list[int]] | None):
    """Within the block, experts not in kept[layer] can never be chosen."""
    import torch

    handles = []
    if kept:
        for index, layer in enumerate(model.model.layers):
            if index not in kept:
                continue
            router = layer.mlp.gate
            blocked = torch.ones(router.num_experts, dtype=torch.bool)
            blocked[list(kept[index])] = False

            def hook(module, inputs, output, blocked=blocked):
                logits = output[0].masked_fill(blocked, float("-inf"))
                probs = torch.softmax(logits, dim=-1, dtype=torch.float)
                top, indices = torch.topk(probs, module.top_k, dim=-1)
                if module.norm_topk_prob:
                    top = top / top.sum(dim=-1, keepdim=True)
                return logits, top.to(output[1].dtype), indices

            handles.append(router.register_forward_hook(hook))
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()


def chat_prompt(user: str) -> str:
    return f"<|user|>{user}<|end|>\n<|assistant|>"


def greedy_answers(model, tokenizer, prompts: list[str], max_new_tokens: int = 8, batch_size: int = 64) -> list[str]:
    """Greedy continuations of chat prompts, decoded up to the end-of-turn token."""
    import torch

    answers = []
    tokenizer.padding_side = "left"
    for start in range(0, len(prompts), batch_size):
        chunk = [chat_prompt(p) for p in prompts[start:start + batch_size]]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        for row in out[:, enc["input_ids"].shape[1]:]:
            answers.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return answers


def choice_accuracy(model, tokenizer, items: list[ChoiceItem]) -> float:
    answers = greedy_answers(model, tokenizer, [item.prompt() for item in items])
    right = sum(parse_answer(a, item.options).choice == item.answer for a, item in zip(answers, items))
    return right / max(len(items), 1)


def routing_distribution(model, tokenizer, texts: list[str]):
    """Per MoE layer, the share of top-k routing slots each expert received over the texts."""
    import torch

    counts = None
    with torch.no_grad():
        for start in range(0, len(texts), 64):
            enc = tokenizer(texts[start:start + 64], return_tensors="pt", padding=True, add_special_tokens=False)
            out = model(**enc, output_router_logits=True)
            valid = enc["attention_mask"].reshape(-1).bool()
            layer_counts = []
            for logits in out.router_logits:
                top = torch.topk(logits[valid], model.config.num_experts_per_tok, dim=-1).indices
                layer_counts.append(torch.bincount(top.reshape(-1), minlength=logits.shape[-1]).float())
            stacked = torch.stack(layer_counts)
            counts = stacked if counts is None else counts + stacked
    return counts / counts.sum(dim=-1, keepdim=True)


def total_variation(p, q) -> list[float]:
    """Per layer, half the L1 distance between two routing distributions (0 = same, 1 = disjoint)."""
    return [round(float(v), 3) for v in 0.5 * (p - q).abs().sum(dim=-1)]
