"""The one refusal matcher: the card's refusal rate and the gateway's `refusal` flag are this function.

An answer is a refusal (an abstention: "I don't know"-type) when, after
normalisation (lower case, unified apostrophes, punctuation to spaces), it
contains one of the phrases below as whole words. Whole words, so that
"unknown" matches "Unknown." but not "unknowns"; phrases, so that a model
declining ("As an AI, I cannot say.") and a model recognising a made-up
entity ("No such drug exists.") both count.
"""

from __future__ import annotations

import re

REFUSAL_PHRASES: tuple[str, ...] = (
    # not knowing
    "i don't know",
    "i do not know",
    "i dont know",
    "not sure",
    "i have no information",
    "no information",
    "unknown",
    "unable to determine",
    "cannot be determined",
    # declining to answer
    "i cannot answer",
    "i can't answer",
    "i am unable to",
    "i'm unable to",
    "not able to answer",
    "i cannot help",
    "i can't help",
    "i cannot provide",
    "i can't provide",
    "as an ai",
    # recognising a made-up entity
    "no such",
    "does not exist",
    "doesn't exist",
    "not a real",
)


def normalise(text: str) -> str:
    """Lower case, unified apostrophes, punctuation to spaces, single spaces."""
    text = text.lower().replace("\u2019", "'").replace("`", "'")
    text = re.sub(r"[^\w\s']", " ", text)
    return " ".join(text.split())


_PADDED_PHRASES = tuple(f" {normalise(phrase)} " for phrase in REFUSAL_PHRASES)


def is_refusal(answer: str) -> bool:
    """True when the answer contains a refusal phrase as whole words (see the module docstring)."""
    padded = f" {normalise(answer or '')} "
    return any(phrase in padded for phrase in _PADDED_PHRASES)
