"""Which side of the variant's domain gate each evaluated prompt falls on (`gate_domain`), and its `gate_score`.

The gate scores the text the gateway's gate scores for the same request (app/guard/prompt_text.py: every
user turn of a chat, joined by newlines, few-shot turns included; a completion's prompt string), so a
certificate fitted per `gate_domain` here is the one the gateway picks for that request. The threshold is the
one the gateway applies: the variants file's, else the card's `domain_gate.threshold`, else the gate
file's; `moeprune eval` takes it from --gate-threshold, else from --gate-recall's choice, else the file.
Without a gate every record is in the one domain `all`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evaluators.records import AnsweredRecord
from evaluators.requests import Prompt
from moeprune.errors import UserError
from moeprune.formats.domain_gate import GATE_NAME, DomainGate
from moeprune.formats.hashing import sha256_file

IN_DOMAIN, CROSS_DOMAIN, ALL = "in_domain", "cross_domain", "all"


def gate_text(prompt: Prompt) -> str:
    if prompt.is_chat:
        return "\n".join(str(m.get("content") or "") for m in prompt.messages if m.get("role") == "user")
    return prompt.text or ""


@dataclass(frozen=True)
class GateAssignment:
    gate: DomainGate
    threshold: float
    sha256: str

    def fields(self, prompt: Prompt) -> tuple[str, float | None]:
        """(gate_domain, gate_score) of one prompt; a prompt without text passes, as in the gateway."""
        text = gate_text(prompt)
        if not text.strip():
            return IN_DOMAIN, None
        score = self.gate.score(text)
        return (IN_DOMAIN if self.gate.passes(score, self.threshold) else CROSS_DOMAIN), score


def gate_path(explicit: str | Path | None, model_dir: str | Path | None) -> Path | None:
    """The gate file that assigns domains: --gate FILE, else the model dir's domain_gate.json if it has one."""
    if explicit is not None:
        path = Path(explicit)
        path = path / GATE_NAME if path.is_dir() else path
        if not path.is_file():
            raise UserError(
                f"domain gate {path} does not exist; pass a domain_gate.json (e.g. the one in a "
                "pruned variant's directory) or leave out --gate",
                param="gate",
            )
        return path
    if model_dir is not None and (Path(model_dir) / GATE_NAME).is_file():
        return Path(model_dir) / GATE_NAME
    return None


def load_assignment(path: Path, threshold: float | None = None) -> GateAssignment:
    gate = DomainGate.load(path)
    if threshold is not None and not 0 <= threshold <= 1:
        raise UserError(f"gate threshold {threshold} must lie in [0, 1]", param="gate_threshold")
    return GateAssignment(gate, gate.threshold if threshold is None else threshold, sha256_file(path))


def with_gate(record: AnsweredRecord, assignment: GateAssignment | None, prompt: Prompt) -> AnsweredRecord:
    """The record with `gate_domain` and, under a gate, the `gate_score` signal."""
    if assignment is None:
        record.gate_domain = ALL
        return record
    domain, score = assignment.fields(prompt)
    record.gate_domain = domain
    if score is not None:
        record.signals["gate_score"] = score
    return record
