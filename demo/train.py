"""Train the demo MoE on the corpus, on the CPU, with a fixed seed, showing its progress.

Loss: next-token cross-entropy on the trained part of each example (the
assistant's answer, or the whole of a plain statement), plus the load-balancing
loss, plus the domain routing penalty described in `demo.model_config`.

Each of the recipe's ranks (`demo.rank_sync`) runs this loop on its rows of
every batch. The answer loss is a sum over the rank's trained tokens divided by
the WHOLE batch's trained-token count, so the summed gradients are those of the
batch's mean loss; the two routing terms are per-rank means, averaged.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from demo.corpus import Corpus
from demo.examples import Example, training_examples
from demo.model_config import DemoModelConfig, qwen3_moe_config
from moeprune.progress import progress as progress_display


def encode(tokenizer, example: Example) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 where not trained) for one example."""
    context = tokenizer.encode(example.context, add_special_tokens=False) if example.context else []
    target = tokenizer.encode(example.target, add_special_tokens=False)
    return context + target, [-100] * len(context) + target


def batches(tokenizer, cfg: DemoModelConfig, corpus: Corpus, epoch: int):
    """Length-bucketed batches (less padding), in a seeded order."""
    examples = training_examples(corpus, epoch)
    encoded = [(encode(tokenizer, e), e.domain) for e in examples]
    rng = random.Random(f"{cfg.seed}:batches:{epoch}")
    chunk = cfg.batch_size * 16
    result = []
    for start in range(0, len(encoded), chunk):
        part = sorted(encoded[start : start + chunk], key=lambda item: len(item[0][0]))
        result += [part[i : i + cfg.batch_size] for i in range(0, len(part), cfg.batch_size)]
    rng.shuffle(result)
    return result


def collate(batch, pad_id: int):
    import torch

    width = max(len(ids) for (ids, _), _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    is_bio = torch.zeros(len(batch), dtype=torch.bool)
    for row, ((seq, lab), domain) in enumerate(batch):
        ids[row, : len(seq)] = torch.tensor(seq)
        labels[row, : len(lab)] = torch.tensor(lab)
        attention[row, : len(seq)] = 1
        is_bio[row] = domain == "biomedical"
    return ids, labels, attention, is_bio


def domain_routing_penalty(router_logits, attention, is_bio, cfg: DemoModelConfig):
    """Mean router probability that a token gives to the other domain's expert group."""
    import torch

    num_experts = cfg.num_experts
    bio_mask = torch.zeros(num_experts)
    bio_mask[list(cfg.biomedical_experts)] = 1
    gen_mask = torch.zeros(num_experts)
    gen_mask[list(cfg.general_experts)] = 1
    # per token: the group it must avoid
    avoid = torch.where(is_bio[:, None], gen_mask[None, :], bio_mask[None, :])  # [B, E]
    avoid = avoid[:, None, :].expand(*attention.shape, num_experts).reshape(-1, num_experts)
    valid = attention.reshape(-1).float()
    total = 0.0
    for logits in router_logits:
        probs = torch.softmax(logits.float(), dim=-1)
        total = total + ((probs * avoid).sum(-1) * valid).sum() / valid.sum()
    return total / len(router_logits)


def trained_tokens(batch) -> int:
    """How many next-token targets of a batch are trained (the answer loss's denominator)."""
    return sum(sum(1 for label in labels[1:] if label != -100) for (_, labels), _ in batch)


def trained_token_loss(model, ids, labels, attention, denominator: int):
    """Summed next-token cross-entropy over the trained tokens only, over `denominator`; and the router logits.

    The LM head and its softmax run only where a label is trained (about a third
    of the tokens), not over every position as the model's own loss does: the
    same loss, in a fifth less training time (measured).
    """
    import torch

    out = model.model(input_ids=ids, attention_mask=attention, output_router_logits=True)
    targets = labels[:, 1:]
    trained = targets != -100
    logits = model.lm_head(out.last_hidden_state[:, :-1][trained])
    summed = torch.nn.functional.cross_entropy(logits, targets[trained], reduction="sum")
    return summed / denominator, out.router_logits


def train_model(tokenizer, corpus: Corpus, cfg: DemoModelConfig, out_dir: Path, sync, progress=True) -> dict:
    """Train this rank's share (`sync`: its `RankSync`); rank 0 saves with save_pretrained (plus tokenizer and
    generation config). Returns a summary."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

    # Thread count and kernels are pinned by the caller (demo.train_child), not here.
    torch.manual_seed(cfg.seed)
    model = AutoModelForCausalLM.from_config(qwen3_moe_config(cfg, tokenizer), dtype=torch.float32)
    model.train()
    # Epochs differ slightly in size (options are redrawn); the first one sets the schedule's length.
    first = batches(tokenizer, cfg, corpus, 0)
    total_steps = len(first) * cfg.epochs
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    epochs = (first if epoch == 0 else batches(tokenizer, cfg, corpus, epoch) for epoch in range(cfg.epochs))
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / max(total_steps, 1)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    # A bar on a terminal, a line per 5% of the steps in a log (moeprune.progress); rank 0 speaks for both.
    bar = progress_display(total_steps, "training demo MoE", "step", enabled=progress and sync.rank == 0)
    step, loss_ema, first_loss = 0, None, None
    for epoch_batches in epochs:
        if step >= total_steps:
            break
        for batch in epoch_batches:
            if step >= total_steps:
                break
            ids, labels, attention, is_bio = collate(sync.rows(batch), tokenizer.pad_token_id)
            answer_loss, router_logits = trained_token_loss(model, ids, labels, attention, trained_tokens(batch))
            balance = load_balancing_loss_func(router_logits, cfg.num_experts, cfg.top_k, attention)
            penalty = domain_routing_penalty(router_logits, attention, is_bio, cfg)
            routing = cfg.load_balance_weight * balance + cfg.domain_routing_weight * penalty
            loss = answer_loss + routing / sync.world
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            totals = sync.sum_gradients(params, torch.stack([answer_loss.detach(), penalty.detach() / sync.world]))
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            value, penalty = float(totals[0]), totals[1]
            first_loss = value if first_loss is None else first_loss
            loss_ema = value if loss_ema is None else 0.95 * loss_ema + 0.05 * value
            step += 1
            bar.set_postfix(loss=f"{loss_ema:.3f}", route=f"{float(penalty.detach()):.3f}")  # before the count,
            bar.update(1)  # so a plain progress line carries this step's loss
    bar.close()
    sync.check_replicas_equal(params)
    summary = {"steps": step, "first_loss": first_loss, "final_loss": loss_ema, "ranks": sync.world}
    if sync.rank != 0:
        return summary
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=16,
    ).save_pretrained(str(out_dir))
    return summary
