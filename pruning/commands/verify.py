"""`moeprune verify DIR`: re-hash every file of a pruned checkpoint against its pruning.json."""

from __future__ import annotations

import sys
from pathlib import Path

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
    count = len(PruningManifest.load(args.dir).files)
    print(f"{args.dir}: OK, {count} files match {MANIFEST_NAME}")
    return 0
