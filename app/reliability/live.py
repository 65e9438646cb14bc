"""Live re-certification: what the gateway served, joined to what apps later report about it.

The contract between the serving path and the feedback path (docs/reliability.md):
the serving path calls `record_served` for every completion it returns and asks
`fallback_active` before deciding flags; the feedback path (`POST /v1/feedback`) calls
`record_outcome`. When the exact bound on the realised error among unflagged answers of a
(variant, domain) crosses the certificate's alpha, `fallback_active` turns true and the
gateway flags every answer of that pair until it is re-certified.

This first version keeps the state in memory; persistence and metrics build on the same API.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServedAnswer:
    completion_id: str
    variant: str
    domain: str
    p_wrong: float | None
    flagged: bool  # above_risk or uncertified when served
    abstained: bool
    card_sha256: str | None
    key_id: str | None = None  # the API key's id (never the key), so feedback is accepted only from it


@dataclass
class LiveCertificates:
    served: dict[str, ServedAnswer] = field(default_factory=dict)
    fallbacks: set[tuple[str, str]] = field(default_factory=set)

    def record_served(self, answer: ServedAnswer) -> None:
        self.served[answer.completion_id] = answer

    def fallback_active(self, variant: str, domain: str) -> bool:
        return (variant, domain) in self.fallbacks
