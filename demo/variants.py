"""The demo's pruned variants: one per (method, ratio), pruned once and reused.

Each variant lives under the cache, in a directory named after the base
model's key, so a retrained base never reuses stale pruned copies, and a
second `moeprune demo` skips every finished prune (its pruning.json exists).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from moeprune.progress import progress as progress_display

ALL_METHODS = ("random", "frequency", "gate", "ean", "reap", "reap-sum", "easyep")
ALL_RATIOS = (0.25, 0.5, 0.75)
# The default sweep (`moeprune demo`; `--full` runs ALL_METHODS): random as the control, the count-based
# and router-weight methods that led the multi-seed table, and the study's REAP, so every finding can be
# checked in a first run's time.
DEFAULT_METHODS = ("random", "frequency", "gate", "reap")


@dataclass(frozen=True)
class Variant:
    name: str
    model_dir: Path
    method: str | None = None
    ratio: float | None = None
    seed: int = 0


def variant_name(method: str, ratio: float, seed: int = 0) -> str:
    name = f"{method}-{round(ratio * 100)}"
    return name if seed == 0 else f"{name}-s{seed}"


def prune_variants(
    base_dir: Path,
    variants_dir: Path,
    calibration: Path,
    methods,
    ratios,
    seeds=(0,),
    samples: int = 128,
    progress: bool = True,
    gate_reference: Path | None = None,
) -> list[Variant]:
    """Prune base_dir with every (method, ratio, seed); returns the variants (cached ones reused).

    `gate_reference`: the general texts each data-driven variant's domain gate is fitted against (default:
    the shipped general set); a cached variant whose gate learned from other reference texts gets its gate
    refitted (`refit_gate`), its weights untouched."""
    from pruning.pipeline import run_prune

    jobs = [(m, r, s) for m in methods for r in ratios for s in (seeds if m == "random" else (0,))]
    # One observation pass serves every method and ratio: its statistics file is method independent.
    stats = variants_dir / "calibration-statistics.json"
    done = []
    bar = progress_display(len(jobs), "pruning variants", "variant", enabled=progress, every=1)
    for method, ratio, seed in jobs:
        name = variant_name(method, ratio, seed)
        out = variants_dir / name
        bar.set_postfix(variant=name)
        if not (out / "pruning.json").exists():
            staging = out.with_name(out.name + ".partial")
            shutil.rmtree(staging, ignore_errors=True)
            # Every data-driven variant gets its own pass over the calibration file (about a second on the
            # demo model), because a variant pruned from saved scores has no calibration text to fit its
            # domain gate on, and the gateway splits certificates by that gate (docs/reliability.md).
            if method == "random":
                source = {}
            else:
                source = {
                    "calibration": [calibration],
                    "samples": samples,
                    **({} if stats.exists() else {"scores_out": stats}),
                    **({"gate_reference": [gate_reference]} if gate_reference is not None else {}),
                }
            run_prune(
                base_dir, staging, method=method, ratio=ratio, seed=seed, progress=False, overwrite=True, **source
            )
            shutil.rmtree(out, ignore_errors=True)
            staging.rename(out)
        elif method != "random" and gate_reference is not None:
            refit_gate(out, calibration, gate_reference)
        done.append(Variant(name, out, method, ratio, seed))
        bar.update(1)
    bar.close()
    return done


def refit_gate(variant_dir: Path, calibration: Path, gate_reference: Path) -> bool:
    """Refit the variant's domain gate on (calibration, gate_reference) unless it already learned from exactly
    those bytes; True when it was refitted. The gate is a file beside the weights (attach_gate re-records its
    sha256 in pruning.json), so the weights and their digests stay as they are."""
    from moeprune.formats.domain_gate import GATE_NAME, DomainGate
    from pruning.domain_gate_files import attach_gate, build_gate, read_texts

    path = Path(variant_dir) / GATE_NAME
    if path.is_file():
        training = DomainGate.load(path).training
        same = (
            training.get("reference_sha256") == read_texts([gate_reference])[1]
            and training.get("in_domain_sha256") == read_texts([calibration])[1]
        )
        if same:
            return False
    attach_gate(variant_dir, build_gate([calibration], [gate_reference]))
    return True
