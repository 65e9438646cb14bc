"""`moeprune report CARD... --out DIR`: one HTML page with plots from report cards."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cards", nargs="+", metavar="CARD", help="report_card.json files (or directories holding one)")
    parser.add_argument("--out", required=True, help="output directory for index.html and the PNG plots")


def run(args: argparse.Namespace) -> int:
    from evaluators.report import render_report

    print(render_report(args.cards, args.out))
    return 0
