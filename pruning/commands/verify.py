"""`moeprune verify DIR`: re-hash every file of a pruned checkpoint against its pruning.json."""

from __future__ import annotations

import sys
from pathlib import Path

from moeprune.formats.expert_counts import format_counts
from moeprune.formats.manifest import MANIFEST_NAME, PruningManifest, verify


def configure(parser) -> None:
    parser.add_argument("dir", type=Path, help=f"a pruned checkpoint directory (with {MANIFEST_NAME})")


def run(args) -> int:
    problems = verify(args.dir)
    if problems:
        print(f"{args.dir}: {len(problems)} difference(s) from {MANIFEST_NAME}:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    manifest = PruningManifest.load(args.dir)
    counts = manifest.experts_kept_by_layer
    kept = (
        f"{counts[next(iter(counts))]} experts in every MoE layer"
        if len(set(counts.values())) == 1
        else f"experts per layer {format_counts(counts)}"
    )
    print(f"{args.dir}: OK, {len(manifest.files)} files match {MANIFEST_NAME}; {kept}")
    return 0
