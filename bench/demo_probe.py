"""Quick in-process checks of a demo model with transformers (no vLLM): accuracy and routing.

Used while designing the demo and by the bench script for many random-pruning
seeds, where starting a vLLM server per mask would cost minutes each. Pruning
is simulated by masking dropped experts out of routing, which gives the same
logits as the physically pruned checkpoint (measured in shared/VLLM-CPU.md).
"""

from __future__ import annotations

import contextlib

from demo.choices import prompt_of
from evaluators.items import MCItem
from evaluators.prompts import parse_answer
from moeprune.formats.manifest import PruningManifest


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
    """Greedy continuations of chat prompts, decoded up to the end-of-turn token.

    Prompts are batched by token length, so no padding shifts the rotary positions.
    """
    import torch

    encoded = [tokenizer.encode(chat_prompt(p), add_special_tokens=False) for p in prompts]
    by_length: dict[int, list[int]] = {}
    for index, ids in enumerate(encoded):
        by_length.setdefault(len(ids), []).append(index)
    answers: list[str] = [""] * len(prompts)
    for indices in by_length.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            ids = torch.tensor([encoded[i] for i in chunk])
            with torch.no_grad():
                out = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.pad_token_id,
                )
            for i, row in zip(chunk, out[:, ids.shape[1] :]):
                answers[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
    return answers


def choice_accuracy(model, tokenizer, items: list[MCItem]) -> float:
    answers = greedy_answers(model, tokenizer, [prompt_of(item) for item in items])
    right = sum(parse_answer(a, item.options).choice == item.answer for a, item in zip(answers, items))
    return right / max(len(items), 1)


def routing_distribution(model, tokenizer, texts: list[str]):
    """Per MoE layer, the share of top-k routing slots each expert received over the texts."""
    import torch

    counts = None
    with torch.no_grad():
        for start in range(0, len(texts), 64):
            enc = tokenizer(texts[start : start + 64], return_tensors="pt", padding=True, add_special_tokens=False)
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


def load(model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    model.eval()
    return model, AutoTokenizer.from_pretrained(str(model_dir))


def domain_prompts(corpus, domain: str) -> list[str]:
    from demo.sets import evaluation_items

    return [chat_prompt(prompt_of(item)) for item in evaluation_items(corpus, domain, "qa")]


def routing_specialisation(model_dir, cfg, corpus) -> dict[str, list[float]]:
    """Per layer TV(bio routing, general routing) on the evaluation questions: trained vs untrained."""
    import torch
    from transformers import AutoModelForCausalLM

    from demo.model_config import qwen3_moe_config

    model, tokenizer = load(model_dir)
    bio, general = domain_prompts(corpus, "biomedical"), domain_prompts(corpus, "general")
    result = {
        "trained": total_variation(
            routing_distribution(model, tokenizer, bio), routing_distribution(model, tokenizer, general)
        )
    }
    torch.manual_seed(cfg.seed)
    untrained = AutoModelForCausalLM.from_config(qwen3_moe_config(cfg, tokenizer)).eval()
    result["untrained (same architecture and seed)"] = total_variation(
        routing_distribution(untrained, tokenizer, bio), routing_distribution(untrained, tokenizer, general)
    )
    return result


def random_kept(num_layers: int, num_experts: int, keep: int, seed: int) -> dict[int, list[int]]:
    import random

    rng = random.Random(f"probe:{seed}")
    return {layer: sorted(rng.sample(range(num_experts), keep)) for layer in range(num_layers)}


def probe_random_seeds(model_dir, corpus, pruned, ratios, seeds: int) -> dict:
    """Answerable-set accuracy (bio, general) under routing masks: many random seeds, and each data-driven
    variant's kept experts, measured the same way so the two are comparable."""

    from demo.sets import evaluation_items

    model, tokenizer = load(model_dir)
    items = {d: evaluation_items(corpus, d, "qa") for d in ("biomedical", "general")}

    def accuracy(kept):
        with routing_mask(model, kept):
            return tuple(round(choice_accuracy(model, tokenizer, items[d]), 4) for d in items)

    num_layers, num_experts = model.config.num_hidden_layers, model.config.num_experts
    result = {"base": accuracy(None), "ratios": {}}
    for ratio in ratios:
        keep = num_experts - round(num_experts * ratio)
        entry = {
            "random": [accuracy(random_kept(num_layers, num_experts, keep, s)) for s in range(seeds)],
            "methods": {},
        }
        for variant in pruned:
            if variant.ratio == ratio and variant.method != "random":
                kept = PruningManifest.load(variant.model_dir).kept_experts
                entry["methods"][variant.method] = accuracy(kept)
        result["ratios"][ratio] = entry
    return result


SET_KINDS = ("qa", "fake", "nota")


def set_items(corpus) -> dict[tuple[str, str], list[MCItem]]:
    from demo.sets import evaluation_items

    return {(d, k): evaluation_items(corpus, d, k) for d in ("biomedical", "general") for k in SET_KINDS}


def masked_row(model, tokenizer, items: dict, kept, name: str, method: str | None, ratio: float | None) -> dict:
    """One variant's row (the keys of `demo.summary.card_row`) from greedy answers under a routing mask.

    Correct and abstained are decided by the evaluators' own parser, so a row
    means what a report card's metrics mean: hallucination = neither correct
    nor abstained, refusal = abstained on a made-up entity.
    """
    scored = {}
    with routing_mask(model, kept):
        for key, group in items.items():
            answers = greedy_answers(model, tokenizer, [prompt_of(item) for item in group])
            parsed = [parse_answer(a, item.options) for a, item in zip(answers, group)]
            correct = [p.choice == item.answer for p, item in zip(parsed, group)]
            abstained = [p.abstained(item.options) for p, item in zip(parsed, group)]
            scored[key] = {
                "accuracy": sum(correct) / len(group),
                "refusal": sum(abstained) / len(group),
                "hallucination": sum(not c and not a for c, a in zip(correct, abstained)) / len(group),
            }
    return {
        "variant": name,
        "method": method,
        "ratio": ratio,
        "bio_acc": scored["biomedical", "qa"]["accuracy"],
        "general_acc": scored["general", "qa"]["accuracy"],
        "bio_refusal": scored["biomedical", "fake"]["refusal"],
        "general_refusal": scored["general", "fake"]["refusal"],
        "refusal": (scored["biomedical", "fake"]["refusal"] + scored["general", "fake"]["refusal"]) / 2,
        "hallucination": (scored["biomedical", "fake"]["hallucination"] + scored["general", "fake"]["hallucination"])
        / 2,
        "nota": (scored["biomedical", "nota"]["accuracy"] + scored["general", "nota"]["accuracy"]) / 2,
        "bytes_saved": 0,
        "flags": {},
    }
