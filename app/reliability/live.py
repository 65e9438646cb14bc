"""Live re-certification: what the gateway served, joined to what apps later report about it.

The contract between the serving path and the feedback path (docs/reliability.md):
the serving path calls `record_served` for every completion it returns and asks
`fallback_active` before deciding flags (`served_answer` reads a recorded answer back); the feedback path
(`POST /v1/feedback`) calls `record_outcome`. When feedback shows the error rate among unflagged answers of a
(variant, domain) above the certificate's alpha (app/reliability/live_bound.py),
`fallback_active` turns true and the gateway flags every answer of that pair until
`recertify` clears it.

Per pair, only answers served since the pair's window opened count (the gateway's
start, the trip, the last re-certification): the labels that tripped a fallback
cannot clear it, and a re-certified pair starts from a fresh sample. The population
is the certificate's: unflagged and non-abstaining. While a fallback flags
everything, an answer still belongs to it when the card's certificate alone would
have served it unflagged (`moeprune.reliability.decision.decide`), so labels keep
accruing for re-certification.

State is in memory and bounded (`live_max_answers`, `live_retention_s`): a restart
forgets served answers, labels and fallbacks (docs/gateway.md, "Live re-certification").
Every method is synchronous and O(1) per call apart from a transition (no I/O): the
request path calls them on the event loop.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from app.reliability.live_bound import above_alpha, labels_to_recertify, live_upper_bound, look_level, within_alpha
from moeprune.reliability.decision import CertificateLike, decide

log = logging.getLogger("moeprune.reliability")

DEFAULT_ALPHA = DEFAULT_DELTA = 0.05  # docs/reliability.md: a pair without a card section is judged at these
MAX_PAIRS = 256  # variants x domains; domains come from the gateway's gate, so this is never reached honestly
ANONYMOUS_KEY = "anonymous"  # app.api.auth.ANONYMOUS: the key id of a gateway that runs without keys


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


@dataclass(frozen=True)
class Levels:
    """What a pair's certificate promises, and the certificate itself where a card holds one."""

    alpha: float = DEFAULT_ALPHA
    delta: float = DEFAULT_DELTA
    certificate: CertificateLike | None = None


@dataclass(frozen=True)
class Outcome:
    """What one feedback did: `new`, `same` (repeated, counted once) or `revised` (latest label wins)."""

    variant: str
    domain: str
    status: str


class UnknownCompletion(LookupError):
    """No served answer with this id for this key (never served, another key's, or past retention)."""


@dataclass
class _Served:
    answer: ServedAnswer
    served_at: float
    sequence: int
    in_population: bool  # the certificate would have served it unflagged, and it did not abstain
    wrong: bool | None = None


@dataclass
class PairState:
    levels: Levels
    opened_at: int  # sequence number where the pair's window opened
    fallback: bool = False
    labelled: int = 0  # labelled answers of the population served in the window
    wrong: int = 0
    changed_at: float = field(default_factory=time.time)

    @property
    def realised_error(self) -> float:
        return self.wrong / self.labelled if self.labelled else float("nan")

    @property
    def upper_bound(self) -> float:
        return live_upper_bound(self.wrong, self.labelled, self.levels.delta)

    def summary(self, variant: str, domain: str) -> dict:
        return {
            "variant": variant,
            "domain": domain,
            "fallback": self.fallback,
            "labelled": self.labelled,
            "wrong": self.wrong,
            "alpha": self.levels.alpha,
            "delta": self.levels.delta,
            "realised_error": None if not self.labelled else round(self.realised_error, 6),
            "upper_bound": round(self.upper_bound, 6),
        }


@dataclass
class LiveCertificates:
    levels: Mapping[tuple[str, str], Levels] = field(default_factory=dict)  # from the cards (live_cards.py)
    max_answers: int = 100_000
    retention_s: float = 7 * 86400
    on_new_pair: Callable[[str, str], None] | None = None  # the metrics register the pair's gauges
    # (variant, domain, (reason, since) or None): a fallback set or cleared here, for live_sync to persist.
    on_change: Callable[[str, str, tuple[str, float] | None], None] | None = None
    served: OrderedDict[str, _Served] = field(default_factory=OrderedDict)
    pairs: dict[tuple[str, str], PairState] = field(default_factory=dict)
    _sequence: int = 0

    def __post_init__(self) -> None:
        for variant, domain in self.levels:
            if domain != "*":  # "*" holds a card's defaults, not a domain answers report
                self._pair(variant, domain)

    # -- the serving path -----------------------------------------------------------------------------
    def record_served(self, answer: ServedAnswer) -> None:
        if answer.completion_id in self.served:  # an id served twice: the later answer is the one to rate
            self._drop(self.served.pop(answer.completion_id))
        pair = self._pair(answer.variant, answer.domain)
        if pair is None:
            return
        self._forget_old(time.time(), keep=self.max_answers - 1)  # room for this one
        self._sequence += 1
        self.served[answer.completion_id] = _Served(
            answer, time.time(), self._sequence, self._in_population(answer, pair)
        )

    def served_answer(self, completion_id: str) -> ServedAnswer | None:
        """The answer recorded under this id, as `record_served` got it; None if never served or forgotten."""
        entry = self.served.get(completion_id)
        return None if entry is None else entry.answer

    def fallback_active(self, variant: str, domain: str) -> bool:
        pair = self.pairs.get((variant, domain))
        return pair is not None and pair.fallback

    # -- the feedback path ----------------------------------------------------------------------------
    def record_outcome(self, completion_id: str, key_id: str, wrong: bool) -> Outcome:
        """Join a label to its served answer; the latest label of an id wins. Raises UnknownCompletion."""
        self._forget_old(time.time(), keep=self.max_answers)
        entry = self.served.get(completion_id)
        # Another key's id is answered like an unknown one: ids are not a way to probe other clients.
        if entry is None or (entry.answer.key_id or ANONYMOUS_KEY) != key_id:
            raise UnknownCompletion(completion_id)
        variant, domain = entry.answer.variant, entry.answer.domain
        if entry.wrong == wrong:
            return Outcome(variant, domain, "same")
        status = "new" if entry.wrong is None else "revised"
        pair = self.pairs[(variant, domain)]
        if self._counts(entry, pair):
            self._untally(entry, pair)
        entry.wrong = wrong
        if self._counts(entry, pair):
            pair.labelled += 1
            pair.wrong += int(wrong)
            self._check(variant, domain, pair)
        return Outcome(variant, domain, status)

    # -- re-certification -----------------------------------------------------------------------------
    def recertify(self, variant: str | None = None, domain: str | None = None, force: bool = False) -> list[dict]:
        """Clear the fallbacks (of one pair, of one variant, or all) whose fresh labels support the bound again.

        Without `force`, a pair is cleared only when the labels of its window (answers served since
        the trip) hold the anytime upper bound at or below alpha; `force` clears it anyway (after a new
        card was loaded, say) and says so in the log. Either way the pair's window restarts.
        """
        results = []
        for (pair_variant, pair_domain), pair in self.pairs.items():
            if (variant is not None and pair_variant != variant) or (domain is not None and pair_domain != domain):
                continue
            if not pair.fallback:
                continue
            summary = pair.summary(pair_variant, pair_domain)
            alpha, delta = pair.levels.alpha, pair.levels.delta
            supported = within_alpha(pair.wrong, pair.labelled, alpha, delta)
            if supported or force:
                self._open_window(pair, fallback=False)
                self._changed(pair_variant, pair_domain, None)
                log.warning(
                    "live re-certification: fallback cleared",
                    extra={
                        **summary,
                        "fallback": False,
                        "forced": force and not supported,
                        "event_kind": "recertified",
                    },
                )
                summary.update(fallback=False, cleared=True, forced=force and not supported)
            else:
                needed = labels_to_recertify(alpha, delta)
                summary.update(
                    cleared=False,
                    reason=(
                        f"the {pair.labelled} labelled unflagged answers since the fallback ({pair.wrong} wrong) "
                        f"do not bound the error at or below alpha={alpha} (at least {needed} labelled answers are "
                        f"needed even with none wrong); wait for more feedback, or pass force after loading a "
                        f"re-evaluated card"
                    ),
                )
                log.info("live re-certification: fallback kept", extra={**summary, "event_kind": "recertify_refused"})
            results.append(summary)
        return results

    def hold_fallback(self, variant: str, domain: str, reason: str) -> None:
        """Another replica (or this gateway before a restart) tripped this pair: flag it here too."""
        pair = self._pair(variant, domain)
        if pair is not None and not pair.fallback:
            self._open_window(pair, fallback=True)
            log.warning(
                "live re-certification: fallback held from the experiment database",
                extra={"variant": variant, "domain": domain, "reason": reason, "event_kind": "fallback"},
            )

    def release_fallback(self, variant: str, domain: str) -> None:
        """Another replica re-certified this pair (its row is gone from the database)."""
        pair = self.pairs.get((variant, domain))
        if pair is not None and pair.fallback:
            self._open_window(pair, fallback=False)
            log.warning(
                "live re-certification: fallback cleared by another replica",
                extra={"variant": variant, "domain": domain, "event_kind": "recertified"},
            )

    def snapshot(self) -> list[dict]:
        return [pair.summary(variant, domain) for (variant, domain), pair in sorted(self.pairs.items())]

    # -- internals ------------------------------------------------------------------------------------
    def _pair(self, variant: str, domain: str) -> PairState | None:
        pair = self.pairs.get((variant, domain))
        if pair is not None:
            return pair
        if len(self.pairs) >= MAX_PAIRS:
            log.warning(
                "live re-certification: too many (variant, domain) pairs; this one is not tracked",
                extra={"variant": variant, "domain": domain, "pairs": len(self.pairs)},
            )
            return None
        levels = self.levels.get((variant, domain)) or self.levels.get((variant, "*")) or Levels()
        pair = self.pairs[(variant, domain)] = PairState(levels, opened_at=self._sequence + 1)
        if self.on_new_pair is not None:
            self.on_new_pair(variant, domain)
        return pair

    def _in_population(self, answer: ServedAnswer, pair: PairState) -> bool:
        if answer.abstained:
            return False
        if not pair.fallback:
            return not answer.flagged
        # The fallback flags everything; the certificate's own decision says who it speaks for.
        return not decide(answer.p_wrong, pair.levels.certificate).flagged

    @staticmethod
    def _counts(entry: _Served, pair: PairState) -> bool:
        return entry.in_population and entry.wrong is not None and entry.sequence >= pair.opened_at

    def _untally(self, entry: _Served, pair: PairState) -> None:
        assert entry.wrong is not None  # only a counted entry (self._counts: labelled) is untallied
        pair.labelled -= 1
        pair.wrong -= int(entry.wrong)

    def _drop(self, entry: _Served) -> None:
        pair = self.pairs.get((entry.answer.variant, entry.answer.domain))
        if pair is not None and self._counts(entry, pair):
            self._untally(entry, pair)

    def _forget_old(self, now: float, keep: int) -> None:
        """Forget served answers past the retention window or beyond the newest `keep` (their labels go too)."""
        while self.served:
            oldest = next(iter(self.served.values()))
            if len(self.served) <= keep and oldest.served_at >= now - self.retention_s:
                break
            self._drop(self.served.popitem(last=False)[1])

    def _changed(self, variant: str, domain: str, held: tuple[str, float] | None) -> None:
        if self.on_change is not None:
            self.on_change(variant, domain, held)

    def _open_window(self, pair: PairState, fallback: bool) -> None:
        self._sequence += 1
        pair.opened_at, pair.fallback = self._sequence, fallback
        pair.labelled = pair.wrong = 0
        pair.changed_at = time.time()

    def _check(self, variant: str, domain: str, pair: PairState) -> None:
        if pair.fallback:
            return
        alpha, delta = pair.levels.alpha, pair.levels.delta
        if not above_alpha(pair.wrong, pair.labelled, alpha, delta):
            return
        summary = pair.summary(variant, domain)
        self._open_window(pair, fallback=True)
        reason = (
            f"{summary['wrong']} of {summary['labelled']} labelled unflagged answers wrong, above "
            f"alpha={alpha} (anytime test at delta={delta})"
        )
        self._changed(variant, domain, (reason, time.time()))
        log.warning(
            "live re-certification: fallback on, every answer of this variant and domain is flagged "
            "until re-certified (moeprune recertify)",
            extra={
                **summary,
                "fallback": True,
                "look_level": look_level(delta, summary["labelled"]),
                "event_kind": "fallback",
            },
        )
