"""Report cards shipped with the demo's weights: a first run serves without evaluating.

The served pair and the base take the longest step of a first run to evaluate (the utility and
reliability sets through real vLLM engines, with the base cross-check). A card is a function of the
weights, the sets and the engine build, and `demo.evaluation` already stamps each card with the
digests of all three inputs it controls (checkpoint files, task settings and items, the gate split).
So the cards measured on the shipped weights ship in `demo/cards/<variant>/` with their stamps, and
a run whose own stamp equals a shipped one installs that card instead of evaluating. Where this
machine's pruning produced other weights (another CPU's arithmetic), the stamps differ and the
variant is evaluated here as before; `moeprune demo --evaluate-here` always evaluates.

What a shipped card cannot carry: the engine build and CPU it was measured on are not in the stamp.
Its certificates are then the shipping machine's measurement of these exact weights (docs/demo.md).
Shipped cards hold no machine paths: `model_dir` is written back on install, `endpoint` is dropped.
Refresh them with `python -m demo.shipped_cards CARDS_DIR` after the demo evaluated the served pair.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

CARD_FILE = "report_card.json"
STAMP_FILE = "demo_eval.json"  # what decided the card: checkpoint digests, task fingerprint, gate split
SHIPPED_DIR = Path(__file__).resolve().parent / "cards"
SHIPPED_NAMES = ("base", "gate-25", "gate-50")


def _portable(card: dict) -> dict:
    return {**card, "model_dir": None, "endpoint": None}


def ship_cards(cards_dir: Path, names=SHIPPED_NAMES, dest: Path = SHIPPED_DIR) -> list[Path]:
    """Copy the named variants' cards and stamps from a demo run's cards dir into `dest` (no paths kept)."""
    written = []
    for name in names:
        source = Path(cards_dir) / name
        card = json.loads((source / CARD_FILE).read_text())
        target = dest / name
        target.mkdir(parents=True, exist_ok=True)
        (target / CARD_FILE).write_text(json.dumps(_portable(card), indent=1, sort_keys=True) + "\n")
        shutil.copyfile(source / STAMP_FILE, target / STAMP_FILE)
        written.append(target)
    return written


def install_shipped_card(name: str, stamp: dict, model_dir: Path, out: Path, shipped: Path = SHIPPED_DIR) -> bool:
    """Install the shipped card of `name` into `out` when its stamp equals `stamp`; False otherwise."""
    source = shipped / name
    if not (source / STAMP_FILE).is_file() or not (source / CARD_FILE).is_file():
        return False
    if json.loads((source / STAMP_FILE).read_text()) != stamp:
        return False
    card = json.loads((source / CARD_FILE).read_text())
    card["model_dir"] = str(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / CARD_FILE).write_text(json.dumps(card, indent=1))
    (out / STAMP_FILE).write_text(json.dumps(stamp))  # last: a card without its stamp is never reused
    print(
        f"demo: {name}: the card shipped with these exact weights and sets is used "
        "(--evaluate-here measures on this machine)",
        flush=True,
    )
    return True


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="ship the served pair's and the base's demo cards")
    parser.add_argument("cards_dir", type=Path, help="a demo run's cards dir (<cache>/runs/<model>/cards)")
    args = parser.parse_args(argv)
    for path in ship_cards(args.cards_dir):
        print(f"shipped {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
