"""Selection: scores -> the experts each MoE layer keeps, in rank order (best first).

Uniform (the study's): every layer removes round(ratio x E) experts (halves
round up). Global: the same total budget, ranked across layers on per-layer
normalised scores, with a per-layer floor. Coverage: the same total budget,
each layer keeping experts until it covers as much of its own score mass as
the others (layer-adaptive counts). Global and coverage may keep different
counts per layer (written as `per_layer_config`, see moeprune.formats.expert_counts). Every selection is checked against
what the model needs to still run: at least top-k experts per layer, and for
grouped routing (DeepSeek-style) the same number of experts kept in every
group, >= 2 per group and top_k <= topk_group x experts per group.
"""

from __future__ import annotations

from dataclasses import dataclass

from moeprune.errors import UserError

Ranked = dict[int, list[int]]


@dataclass(frozen=True)
class Routing:
    """What a layer's router needs from a selection."""

    num_experts: int
    top_k: int
    n_group: int | None = None  # grouped routing: number of expert groups
    topk_group: int | None = None  # groups each token may use

    @classmethod
    def from_config(cls, family, config: dict) -> Routing:
        n_group, topk_group = family.num_groups(config)
        grouped = n_group > 1  # one group is plain top-k routing
        return cls(
            family.num_experts(config),
            family.top_k(config),
            n_group if grouped else None,
            topk_group if grouped else None,
        )

    @property
    def group_size(self) -> int:
        return self.num_experts // self.n_group if self.n_group else self.num_experts

    def group_of(self, expert: int) -> int:
        return expert // self.group_size

    def kept_count_problem(self, kept: int) -> str | None:
        """Why keeping `kept` experts per layer cannot work, or None if it can."""
        if kept < self.top_k:
            return f"{_experts(kept)} is fewer than top-k = {self.top_k} (every token needs {self.top_k})"
        if self.n_group:
            if kept % self.n_group:
                return f"{_experts(kept)} do not split evenly over n_group = {self.n_group} expert groups"
            per_group = kept // self.n_group
            if per_group < 2:
                return f"{per_group} expert(s) per group; grouped routing scores a group by its top 2 experts"
            if self.topk_group and self.top_k > self.topk_group * per_group:
                return (
                    f"top_k = {self.top_k} > topk_group ({self.topk_group}) x {per_group} experts per group; "
                    "tokens could not find enough experts"
                )
        return None

    def valid_kept_counts(self, floor: int = 0) -> list[int]:
        return [k for k in range(max(floor, 1), self.num_experts + 1) if self.kept_count_problem(k) is None]


def _experts(count: int) -> str:
    return f"{count} expert" if count == 1 else f"{count} experts"


def removed_count(ratio: float, num_experts: int) -> int:
    """round(ratio x E), halves rounded up (Python's round() would round 0.5 to even)."""
    return int(ratio * num_experts + 0.5)


def check_ratio(ratio) -> float:
    if ratio is None:
        raise UserError("ratio is required with a method (the share of experts to remove, e.g. 0.5)", param="ratio")
    ratio = float(ratio)
    if not 0.0 <= ratio < 1.0:
        raise UserError(
            f"ratio {ratio} is outside [0, 1): it is the share of experts to REMOVE (0 keeps all)", param="ratio"
        )
    return ratio


def _ratio_fix(routing: Routing, floor: int = 0) -> str:
    valid = routing.valid_kept_counts(floor)
    if not valid:
        return "no expert count works for this model"
    ratios = ", ".join(f"{(routing.num_experts - k) / routing.num_experts:g}" for k in valid[:6])
    return (
        f"the largest valid ratio is {(routing.num_experts - valid[0]) / routing.num_experts:g} "
        f"(keeps {valid[0]} of {routing.num_experts}); valid ratios: {ratios}{' ...' if len(valid) > 6 else ''}"
    )


def rank(scores: list[float]) -> list[int]:
    """Expert indices best first; ties go to the lower index (deterministic)."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def keep_best(scores: list[float], kept: int, routing: Routing) -> list[int]:
    """The `kept` best experts in rank order; with grouped routing, the same number from every group."""
    order = rank(scores)
    if not routing.n_group:
        return order[:kept]
    per_group = kept // routing.n_group
    taken: dict[int, int] = {}
    chosen = []
    for expert in order:
        group = routing.group_of(expert)
        if taken.get(group, 0) < per_group:
            taken[group] = taken.get(group, 0) + 1
            chosen.append(expert)
    return chosen


def select_uniform(scores: dict[int, list[float]], ratio: float, routing: Routing) -> Ranked:
    ratio = check_ratio(ratio)
    kept = routing.num_experts - removed_count(ratio, routing.num_experts)
    problem = routing.kept_count_problem(kept)
    if problem:
        raise UserError(
            f"ratio {ratio:g} keeps {kept} of {routing.num_experts} experts per layer: {problem}; "
            f"{_ratio_fix(routing)}",
            param="ratio",
        )
    return {layer: keep_best(values, kept, routing) for layer, values in sorted(scores.items())}


def normalise(values: list[float]) -> list[float]:
    """A layer's scores as shares of the layer's total, so layers with larger raw scores
    (e.g. deeper layers with larger activations) do not win the global budget by scale."""
    total = sum(max(v, 0.0) for v in values)
    if total <= 0:
        return [1.0 / len(values)] * len(values)
    return [max(v, 0.0) / total for v in values]


def _check_uneven_budget(
    scores: dict, ratio: float, routing: Routing, min_experts: int | None, allocation: str
) -> tuple[int, int]:
    """(experts removed in total, per-layer floor) for an allocation that may differ per layer."""
    ratio = check_ratio(ratio)
    experts = routing.num_experts
    floor = routing.top_k if min_experts is None else int(min_experts)
    if routing.n_group and allocation != "global":
        raise UserError(
            f"allocation {allocation} is not supported with grouped routing (n_group = {routing.n_group}): "
            "each layer must keep the same number in every group; use allocation global or uniform"
        )
    if floor < routing.top_k:
        raise UserError(
            f"min_experts {floor} is below top-k = {routing.top_k}; use at least {routing.top_k}", param="min_experts"
        )
    if floor > experts:
        raise UserError(f"min_experts {floor} exceeds the {experts} experts per layer", param="min_experts")
    budget = removed_count(ratio, experts) * len(scores)
    removable = (experts - floor) * len(scores)
    if budget > removable:
        raise UserError(
            f"ratio {ratio:g} removes {budget} experts in total, but a floor of {floor} per layer over "
            f"{len(scores)} layers allows at most {removable}; lower ratio or min_experts"
        )
    return budget, floor


def select_global(
    scores: dict[int, list[float]], ratio: float, routing: Routing, min_experts: int | None = None
) -> Ranked:
    budget, floor = _check_uneven_budget(scores, ratio, routing, min_experts, "global")
    if routing.n_group:
        return _select_global_grouped(scores, budget, floor, routing)
    experts = routing.num_experts
    # Weakest first; on equal shares the higher index goes first, matching rank()'s tie rule.
    pool = sorted(
        ((share, layer, expert) for layer, values in scores.items() for expert, share in enumerate(normalise(values))),
        key=lambda item: (item[0], item[1], -item[2]),
    )
    left = {layer: experts for layer in scores}
    removed: set[tuple[int, int]] = set()
    for _, layer, expert in pool:
        if len(removed) == budget:
            break
        if left[layer] > floor:
            removed.add((layer, expert))
            left[layer] -= 1
    return {layer: [e for e in rank(values) if (layer, e) not in removed] for layer, values in sorted(scores.items())}


def _select_global_grouped(scores: dict[int, list[float]], budget: int, floor: int, routing: Routing) -> Ranked:
    """`global` under grouped routing: experts leave a layer one per group at a time, so every layer keeps the
    same number in each of its groups (its count a multiple of n_group). A layer's t-th tier is the t-th
    weakest expert of every group; tiers are ranked across layers by their summed share of the layer's mass.
    Every layer's count stays one that grouped routing can use (`Routing.kept_count_problem`) and >= floor.
    """
    groups, size = routing.n_group or 1, routing.group_size
    if budget % groups:
        raise UserError(
            f"grouped routing removes experts one per group ({groups} at a time), but this ratio "
            f"removes {budget} in total; choose a ratio that removes a multiple of {groups} per layer",
            param="ratio",
        )
    valid = [k for k in routing.valid_kept_counts(floor) if k % groups == 0]
    if not valid:
        raise UserError(
            f"no count of at least {floor} experts suits grouped routing ({groups} groups of {size}, "
            f"top-k {routing.top_k}, topk_group {routing.topk_group}); lower min_experts",
            param="min_experts",
        )
    removable_tiers = (routing.num_experts - valid[0]) // groups
    pool = []
    for layer, values in scores.items():
        shares = normalise(values)
        # Within each group, weakest first (the reverse of rank()'s order, ties included).
        weakest = [[e for e in reversed(rank(values)) if routing.group_of(e) == g] for g in range(groups)]
        for tier in range(removable_tiers):
            pool.append((sum(shares[members[tier]] for members in weakest), layer, tier))
    pool.sort(key=lambda item: (item[0], item[1], item[2]))
    removed = {layer: 0 for layer in scores}
    left = budget // groups
    for _, layer, tier in pool:
        if left == 0:
            break
        if tier == removed[layer]:  # a layer's tiers leave in order; its floor ends its list
            removed[layer] += 1
            left -= 1
    if left:
        raise UserError(
            f"ratio removes {budget} experts in total, but grouped routing with a floor of {valid[0]} "
            f"per layer allows at most {removable_tiers * groups * len(scores)}; lower ratio or "
            "min_experts",
            param="ratio",
        )
    return {
        layer: keep_best(values, routing.num_experts - groups * removed[layer], routing)
        for layer, values in sorted(scores.items())
    }


def select_coverage(
    scores: dict[int, list[float]], ratio: float, routing: Routing, min_experts: int | None = None
) -> Ranked:
    """Layer-adaptive counts: every layer keeps its best experts until it covers as much of its own
    score mass as the others do (the lowest covered share is raised first), under the same total as
    uniform. A layer whose mass sits in a few experts (a peaked router) keeps few; a layer that
    spreads its mass keeps many. Unlike `global`, which compares single experts' shares across
    layers, this compares what each layer still holds after pruning.
    """
    budget, floor = _check_uneven_budget(scores, ratio, routing, min_experts, "coverage")
    order = {layer: rank(values) for layer, values in scores.items()}
    shares = {layer: normalise(values) for layer, values in scores.items()}
    kept = {layer: floor for layer in scores}
    covered = {layer: sum(shares[layer][e] for e in order[layer][:floor]) for layer in scores}
    to_add = routing.num_experts * len(scores) - budget - floor * len(scores)
    for _ in range(to_add):
        # The least-covered layer that can still grow; ties go to the lower layer index.
        layer = min(
            (layer for layer in scores if kept[layer] < routing.num_experts), key=lambda layer: (covered[layer], layer)
        )
        covered[layer] += shares[layer][order[layer][kept[layer]]]
        kept[layer] += 1
    return {layer: order[layer][: kept[layer]] for layer in sorted(scores)}


ALLOCATIONS = ("uniform", "global", "coverage")


def select(
    scores: dict[int, list[float]],
    ratio: float,
    routing: Routing,
    allocation: str = "uniform",
    min_experts: int | None = None,
) -> Ranked:
    if allocation == "uniform":
        if min_experts is not None and experts_kept(ratio, routing) < int(min_experts):
            raise UserError(
                f"ratio {ratio:g} keeps {experts_kept(ratio, routing)} experts per layer, "
                f"below min_experts {min_experts}",
                param="ratio",
            )
        return select_uniform(scores, ratio, routing)
    if allocation == "global":
        return select_global(scores, ratio, routing, min_experts)
    if allocation == "coverage":
        return select_coverage(scores, ratio, routing, min_experts)
    raise UserError(f"unknown allocation {allocation!r}; valid: {', '.join(ALLOCATIONS)}", param="allocation")


def experts_kept(ratio: float, routing: Routing) -> int:
    return routing.num_experts - removed_count(check_ratio(ratio), routing.num_experts)
