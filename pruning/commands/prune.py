"""`moeprune prune`: prune experts from an MoE checkpoint by a scoring method or a published mask."""

from __future__ import annotations

from pathlib import Path

from moeprune.formats.expert_counts import format_counts
from moeprune.formats.manifest import PruningManifest
from moeprune.units import human_bytes
from pruning.methods import METHODS
from pruning.observe import DTYPES
from pruning.pipeline import OBSERVE_MODES
from pruning.selection import ALLOCATIONS

EXAMPLES = """examples:
  moeprune prune ./Qwen3-30B-A3B --out ./q3-reap-50 --method reap --ratio 0.5 --calibration med.jsonl
  moeprune prune ./src --out ./out --method frequency --ratio 0.25 --calibration a.jsonl --scores-out stats.json
  moeprune prune ./src --out ./out2 --method reap --ratio 0.5 --scores-in stats.json   # no new pass
  moeprune prune ./gpt-oss-20b --out ./gpt-oss-mask --mask expert_mask.json
  moeprune prune ./src --out ./q3-cov-50 --method reap --ratio 0.5 --allocation coverage --scores-in stats.json
      # counts may differ per layer: load with `import moeprune.models`; vLLM loads the plugin when installed
  moeprune prune ./Qwen3-30B-A3B --out ./q3-ean-50 --method ean --ratio 0.5 --calibration medinst.jsonl:128 \\
      general.jsonl:128 --chat-template-kwargs '{"enable_thinking": false}' --ean-tokens-per-sample 256
"""


# Python parameter -> this command's argparse dest, where they differ (for the CLI's flag hints).
PARAM_DESTS = {"out_dir": "out", "mask_file": "mask"}


def configure(parser) -> None:
    import argparse

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument("source", metavar="SOURCE_DIR", help="Hugging Face MoE checkpoint directory (safetensors)")
    parser.add_argument("--out", required=True, metavar="OUT_DIR", help="where to write the pruned checkpoint")
    how = parser.add_argument_group("how experts are chosen (a method and ratio, or a mask)")
    how.add_argument("--method", choices=list(METHODS), help="scoring method")
    how.add_argument("--ratio", type=float, help="share of experts to REMOVE per MoE layer, in [0, 1)")
    how.add_argument("--mask", metavar="MASK.json", help="kept experts per MoE layer (the study's expert_mask.json)")
    how.add_argument("--allocation", choices=ALLOCATIONS, default="uniform",
                     help="uniform: the same count per layer; global: one budget ranked across layers; coverage: "
                          "each layer keeps experts until it covers as much of its score mass as the others "
                          "(global and coverage may keep different counts per layer)")
    how.add_argument("--min-experts", type=int,
                     help="per-layer floor for --allocation global or coverage (default: top-k)")
    how.add_argument("--seed", type=int, default=0, help="seed for sampling calibration data and for 'random'")
    data = parser.add_argument_group("calibration pass")
    data.add_argument("--calibration", nargs="+", default=[], metavar="FILE[:N]",
                      help="*.jsonl ({'text'}, {'messages'} or MedINST {'instruction','input','output'}), *.txt, "
                           "or PubMedQA *.json; FILE:N draws N samples from that file alone")
    data.add_argument("--samples", type=int, default=128,
                      help="documents drawn from the files given without :N, together (default 128)")
    data.add_argument("--chat-template-kwargs", metavar="JSON",
                      help='extra chat-template arguments as a JSON object, e.g. \'{"enable_thinking": false}\'')
    data.add_argument("--max-tokens", type=int, default=2048, help="tokens kept per document (default 2048)")
    data.add_argument("--device", default="cpu", help="torch device for the pass, e.g. cpu, cuda, cuda:1")
    data.add_argument("--dtype", choices=DTYPES, default="bfloat16",
                      help="weight dtype for the pass (default bfloat16; statistics are summed in float64)")
    data.add_argument("--observe", choices=OBSERVE_MODES, default="stream",
                      help="stream: one decoder layer in memory at a time, read from the shards (default); "
                           "whole: load the whole model first")
    data.add_argument("--offload-activations", action="store_true",
                      help="keep the streamed pass's hidden states in CPU memory when they do not fit on the device")
    data.add_argument("--batch-tokens", type=int, default=8192, help="padded tokens per forward batch")
    data.add_argument("--ean-max-tokens", type=int, default=None,
                      help="at most this many tokens per layer (stream order) on which EAN runs every expert "
                           "(default 4096; no cap with --ean-tokens-per-sample)")
    data.add_argument("--ean-tokens-per-sample", type=int, default=None, metavar="N",
                      help="EAN runs every expert on the first N tokens of every sample (the study: 256)")
    data.add_argument("--scores-out", metavar="FILE", help="save the pass's statistics (re-score without a pass)")
    data.add_argument("--scores-in", metavar="FILE", help="reuse statistics saved with --scores-out")
    gate = parser.add_argument_group("the gateway's domain gate (fitted on the calibration files)")
    gate.add_argument("--gate-reference", nargs="+", metavar="FILE",
                      help="general-domain texts the gate learns to tell apart (default: the shipped set)")
    gate.add_argument("--no-domain-gate", action="store_true", help="write no domain_gate.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")


def run(args) -> int:
    from pruning.pipeline import run_prune

    out = run_prune(
        args.source, args.out, method=args.method, ratio=args.ratio, calibration=args.calibration,
        samples=args.samples, max_tokens=args.max_tokens, seed=args.seed, allocation=args.allocation,
        min_experts=args.min_experts, mask_file=args.mask, scores_in=args.scores_in, scores_out=args.scores_out,
        device=args.device, overwrite=args.overwrite, dtype=args.dtype, batch_tokens=args.batch_tokens,
        ean_max_tokens=args.ean_max_tokens, ean_tokens_per_sample=args.ean_tokens_per_sample,
        chat_template_kwargs=args.chat_template_kwargs, observe=args.observe,
        offload_activations=args.offload_activations, domain_gate=not args.no_domain_gate,
        gate_reference=args.gate_reference,
    )
    print(summary(Path(out)))
    return 0


def summary(out: Path) -> str:
    manifest = PruningManifest.load(out)
    counts = sorted({len(v) for v in manifest.kept_experts.values()})
    per_layer = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    line = (f"kept {per_layer} of {manifest.experts_per_layer_before} experts in each of {manifest.moe_layers} "
            f"MoE layers ({manifest.experts_kept_total} in total); saved {human_bytes(manifest.bytes_saved, 1)} "
            f"({manifest.bytes_saved_ratio:.1%}) -> {out}")
    if len(counts) > 1:
        line += "\nexperts kept per layer: " + format_counts(manifest.experts_kept_by_layer)
    return line
