"""`moeprune guard build VARIANT_DIR --in-domain FILES [--reference FILES]`: fit a variant's domain gate.

For variants pruned before gates existed (or to refit on other data): writes
`domain_gate.json` into the variant dir and records its sha256 in pruning.json.
`moeprune prune` does the same at the end of a run that had calibration files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

PARAM_DESTS = {"variant_dir": "variant_dir", "in_domain": "in_domain"}


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build",
        help="fit the domain gate of a variant dir",
        description="fit the domain gate of a variant dir (domain_gate.json)",
    )
    build.add_argument("variant_dir", type=Path, help="the pruned checkpoint dir the gate belongs to")
    build.add_argument(
        "--in-domain",
        nargs="+",
        required=True,
        metavar="FILE",
        help="in-domain texts: the variant's calibration files (.jsonl text/messages, .txt, PubMedQA .json)",
    )
    build.add_argument(
        "--reference",
        nargs="+",
        metavar="FILE",
        help="general-domain texts (default: the reference set shipped with the project)",
    )


def run(args: argparse.Namespace) -> int:
    from pruning.domain_gate_files import attach_gate, build_gate

    gate = build_gate(args.in_domain, args.reference)
    path = attach_gate(args.variant_dir, gate)
    training = gate.training
    print(
        f"{path}: domain gate fitted on {training['in_domain_texts']} in-domain and "
        f"{training['reference_texts']} reference texts (threshold {gate.threshold}; "
        "`moeprune eval --gate-recall R` picks one for a target in-domain recall)"
    )
    return 0
