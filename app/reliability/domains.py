"""Which certificate applies to a request: the domain its prompt belongs to, by the variant's domain gate.

The evaluators certify per `gate_domain` (docs/reliability.md): `in_domain` when the gate's
P(in-domain) of the prompt is >= the threshold, `cross_domain` below it, `all` for a variant
evaluated without a gate. The gateway must split requests the same way, so it scores the same
text (the user turns, app/guard/prompt_text.py) with the same gate (the card's `gate_sha256`
is checked against the file) at the card's threshold. A prompt with no text to score
(token ids) has no domain the card knows: `unknown`, hence uncertified.
"""

from __future__ import annotations

from dataclasses import dataclass

from moeprune.formats.domain_gate import DomainGate

ALL = "all"
IN_DOMAIN = "in_domain"
CROSS_DOMAIN = "cross_domain"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class DomainSplit:
    gate: DomainGate | None = None
    threshold: float | None = None

    def assign(self, text: str) -> tuple[float | None, str]:
        """(gate_score, domain) of a prompt's text."""
        if self.gate is None or self.threshold is None:
            return None, ALL
        if not text.strip():
            return None, UNKNOWN
        score = self.gate.score(text)
        return score, IN_DOMAIN if score >= self.threshold else CROSS_DOMAIN
