"""`moeprune prune`: prune experts from an MoE checkpoint by a scoring method or a published mask."""

from __future__ import annotations

from pathlib import Path

from moeprune.formats.expert_counts import format_counts
from moeprune.formats.manifest import PruningManifest
from moeprune.units import human_bytes

EXAMPLES = """examples:
  moeprune prune ./Qwen3-30B-A3B --out ./q3-reap-50 --method reap --ratio 0.5 --calibration med.jsonl
  moeprune prune ./src --out ./out --method frequency --ratio 0.25 --calibration a.jsonl --scores-out stats.json
  moeprune prune ./src --out ./out2 --method reap --ratio 0.5 --scores-in stats.json   # no new pass
  moeprune prune ./gpt-oss-20b --out ./gpt-oss-mask --mask expert_mask.json
  moeprune prune ./gpt-oss-20b --out ./gpt-oss-bf16 --mask expert_mask.json --dequantize   # vLLM CPU without AMX
  moeprune prune ./src --out ./q3-cov-50 --method reap --ratio 0.5 --allocation coverage --scores-in stats.json
      # counts may differ per layer: load with `import moeprune.models`; vLLM loads the plugin when installed
  moeprune prune ./Qwen3-30B-A3B --out ./q3-ean-50 --method ean --ratio 0.5 --calibration medinst.jsonl:128 \\
      general.jsonl:128 --chat-template-kwargs '{"enable_thinking": false}' --ean-tokens-per-sample 256
"""


# Python parameter -> this command's argparse dest, where they differ (for the CLI's flag hints). The flags
# generated from PruneConfig keep the field name as their dest (--mask -> mask_file), so only --out is here.
PARAM_DESTS = {"out_dir": "out"}


def configure(parser) -> None:
    import argparse

    from moeprune.cli_config import add_model_arguments
    from pruning.config import PruneConfig

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    # The source and the output are run_prune's arguments, not options: declared here, by hand.
    parser.add_argument("source", metavar="SOURCE_DIR", help="Hugging Face MoE checkpoint directory (safetensors)")
    parser.add_argument("--out", required=True, metavar="OUT_DIR", help="where to write the pruned checkpoint")
    add_model_arguments(parser, PruneConfig)  # every option: flag, default, choices, group and help from its field


def run(args) -> int:
    from moeprune.cli_config import model_from_namespace
    from pruning.config import PruneConfig
    from pruning.pipeline import run_prune

    out = run_prune(args.source, args.out, model_from_namespace(PruneConfig, args))
    print(summary(Path(out)))
    return 0


def summary(out: Path) -> str:
    manifest = PruningManifest.load(out)
    counts = sorted({len(v) for v in manifest.kept_experts.values()})
    per_layer = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    saved = manifest.bytes_saved
    size = (
        f"saved {human_bytes(saved, 1)} ({manifest.bytes_saved_ratio:.1%})"
        if saved >= 0
        else f"{human_bytes(-saved, 1)} larger than the source (+{-manifest.bytes_saved_ratio:.1%}: dequantized)"
    )
    line = (
        f"kept {per_layer} of {manifest.experts_per_layer_before} experts in each of {manifest.moe_layers} "
        f"MoE layers ({manifest.experts_kept_total} in total); {size} -> {out}"
    )
    if len(counts) > 1:
        line += "\nexperts kept per layer: " + format_counts(manifest.experts_kept_by_layer)
    return line
