"""Admission by sequences (prompts x n), per variant and per API key.

A request holds `sequences` slots of its variant's engine and of its key from
admission to its end, so one key cannot take every slot of an engine (its
other users still get in) and a batch request counts for what it costs. All
bookkeeping runs on the event loop: no locks needed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from app.engines.backends import Backend
from app.errors import OpenAIError

RETRY_AFTER_FULL_S = "1"


@dataclass
class Slots:
    """Slots held by one request (or one extra check call); release() is idempotent."""

    admission: Admission
    backend: Backend
    key_id: str | None
    count: int
    released: bool = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self.backend.in_flight -= self.count
        if self.key_id is not None:
            self.admission.release_key(self.key_id, self.count)


@dataclass
class Admission:
    by_key: Counter = field(default_factory=Counter)

    def check_size(self, backend: Backend, sequences: int, per_key_limit: int | None) -> None:
        """A request bigger than a limit can never be admitted: a 400, not a 429 to retry forever."""
        largest = min(backend.max_in_flight, per_key_limit or backend.max_in_flight)
        if sequences > largest:
            raise OpenAIError(
                400,
                f"this request asks for {sequences} sequences (prompts x n); variant "
                f"{backend.variant!r} admits at most {largest} from one key at once",
                param="n",
                code="too_many_sequences",
            )

    def admit(self, backend: Backend, key_id: str | None, sequences: int, per_key_limit: int | None) -> Slots:
        """`key_id` None: no per-key accounting (a gateway without keys cannot tell its clients apart)."""
        if key_id is None:
            per_key_limit = None
        self.check_size(backend, sequences, per_key_limit)
        if per_key_limit is not None and self.by_key[key_id] + sequences > per_key_limit:
            raise OpenAIError(
                429,
                f"this API key has {self.by_key[key_id]} sequences in flight (limit {per_key_limit}); retry shortly",
                code="key_limit",
                headers={"Retry-After": RETRY_AFTER_FULL_S},
            )
        if backend.in_flight + sequences > backend.max_in_flight:
            raise OpenAIError(
                429,
                f"variant {backend.variant!r} has {backend.in_flight} sequences in flight "
                f"(limit {backend.max_in_flight}); retry shortly",
                code="queue_full",
                headers={"Retry-After": RETRY_AFTER_FULL_S},
            )
        if per_key_limit is not None:
            self.by_key[key_id] += sequences
        backend.in_flight += sequences
        return Slots(self, backend, key_id if per_key_limit is not None else None, sequences)

    def try_admit_check(self, backend: Backend, sequences: int) -> Slots | None:
        """Slots for a gateway-made check call (base_check, self_consistency) on `backend`: its engine's
        capacity only (the client's key already holds its request's slots); None when full."""
        if backend.in_flight + sequences > backend.max_in_flight:
            return None
        backend.in_flight += sequences
        return Slots(self, backend, None, sequences)

    def release_key(self, key_id: str, count: int) -> None:
        self.by_key[key_id] -= count
        if self.by_key[key_id] <= 0:
            del self.by_key[key_id]  # the table holds only keys with requests in flight

    def in_flight_for(self, key_id: str) -> int:
        return self.by_key.get(key_id, 0)
