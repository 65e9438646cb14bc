"""The multiple-choice prompt and the parsing of a model's answer to it.

This exact prompt is a contract (docs/contracts.md): the shipped evaluation
sets and the demo model's training data use it, so a model trained on it is
evaluated on what it saw. Parsing is ordered and never guesses: a leading
option letter, else the text of exactly one option, else a refusal, else
unparsed (counted wrong). Refusals: `moeprune/reliability/refusal.py`, shared with the gateway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from moeprune.reliability.refusal import is_refusal, normalise

ABSTAINED = "abstained"  # parse result when a refusal has no abstain option to map to
UNPARSED = None


def render_mc_prompt(question: str, options: dict[str, str]) -> str:
    """The contract prompt: `Question: ...`, `Options:`, one `L. text` line per option."""
    lines = [f"Question: {question}", "Options:"]
    lines += [f"{letter}. {text}" for letter, text in options.items()]
    return "\n".join(lines)


def render_completion_prompt(question: str, options: dict[str, str]) -> str:
    """Completion-style tasks send the same prompt with `\\nAnswer:` appended."""
    return render_mc_prompt(question, options) + "\nAnswer:"


def abstain_option(options: dict[str, str]) -> str | None:
    """The letter of the item's explicit abstain option ("I don't know"), if it has one."""
    for letter, text in options.items():
        if is_refusal(text):
            return letter
    return None


def _leading_letter(answer: str, letters: list[str]) -> str | None:
    # `B`, `B.`, `(B)`, `B) ...`, `B: ...`: a letter standing alone or closed by
    # punctuation. "A drug ..." is not a letter answer (it falls through to text).
    match = re.match(r"\s*[\(\[]?([A-Za-z])(?:[\)\]\.:,]|\s*$)", answer)
    if match and match.group(1).upper() in letters:
        return match.group(1).upper()
    return None


def _option_by_text(answer: str, options: dict[str, str]) -> str | None:
    norm = normalise(answer)
    if not norm:
        return None
    exact = [letter for letter, text in options.items() if normalise(text) == norm]
    if len(exact) == 1:
        return exact[0]
    padded = f" {norm} "
    contained = [letter for letter, text in options.items() if normalise(text) and f" {normalise(text)} " in padded]
    if len(contained) == 1:
        return contained[0]
    return None


@dataclass(frozen=True)
class ParsedAnswer:
    """What an answer was parsed as: an option letter, ABSTAINED, or None (unparsed)."""

    choice: str | None
    how: str  # "letter", "text", "refusal", "unparsed"

    def abstained(self, options: dict[str, str]) -> bool:
        """A refusal, or the choice of the item's explicit abstain option."""
        return self.how == "refusal" or (self.choice is not None and self.choice == abstain_option(options))


def parse_answer(answer: str, options: dict[str, str]) -> ParsedAnswer:
    """Parse a model's answer to an MC item, in the contract's order (never guessing)."""
    letters = list(options)
    letter = _leading_letter(answer or "", letters)
    if letter:
        return ParsedAnswer(letter, "letter")
    letter = _option_by_text(answer or "", options)
    if letter:
        return ParsedAnswer(letter, "text")
    if is_refusal(answer or ""):
        return ParsedAnswer(abstain_option(options) or ABSTAINED, "refusal")
    return ParsedAnswer(UNPARSED, "unparsed")
