"""Is the served checkpoint the one a report card's certificates were measured on?

A certificate holds for the weights it was computed with, nothing else: a card copied
next to another checkpoint (re-pruned, re-quantised, another ratio) would hand out a
guarantee nobody measured. The card carries `weights_digest` of the evaluated checkpoint;
the gateway computes the same digest of the checkpoint it serves (pruning.json's recorded
hashes spare re-reading a pruned checkpoint; an unpruned one is read once at start-up).
"""

from __future__ import annotations

import logging
from pathlib import Path

from app.config.variants import Variant
from moeprune.errors import UserError
from moeprune.formats.hashing import weights_digest
from moeprune.formats.manifest import PruningManifest

log = logging.getLogger("moeprune.reliability")

VERIFIED = "verified"
UNVERIFIED = "unverified"  # url: variants and hub ids (no local weights), cards without a digest


def check_weights(name: str, variant: Variant, card_digest: str | None, card: Path) -> str:
    """VERIFIED or UNVERIFIED; a UserError when the card names other weights than the served ones."""
    model_dir = Path(variant.model) if variant.model is not None else None
    if model_dir is None or not model_dir.is_dir():
        return UNVERIFIED
    if card_digest is None:
        log.warning(
            "the report card records no weights digest: its certificates are not checked against the served checkpoint",
            extra={"variant": name, "card": str(card)},
        )
        return UNVERIFIED
    manifest = PruningManifest.load(model_dir)
    try:
        served = weights_digest(model_dir, manifest.files if manifest is not None else None)
    except FileNotFoundError as exc:
        raise UserError(f"variants.{name}.model: {exc}; serve a checkpoint with its weights") from None
    if served != card_digest:
        raise UserError(
            f"variants.{name}.report_card ({card}) certifies other weights than the served checkpoint "
            f"{model_dir}: the card's weights_sha256 is {card_digest}, the checkpoint's is {served}. "
            f"Re-run `moeprune eval` on {model_dir} to write its own card, or point report_card at "
            "the card of this checkpoint"
        )
    return VERIFIED
