"""The gateway's experiment state: record each answer, route around stopped arms, report, decide, take feedback.

One `ExperimentService` per gateway (on `GatewayState.experiments`). Answers are
recorded into the `Recorder`'s buffer (no I/O on the request path); reads
(`/v1/experiments`, feedback) flush first and then read the database, so every
replica sharing a PostgreSQL database reports the same numbers. A background
task flushes, prunes the id map and, every `experiment_evaluate_interval_s`,
recomputes the verdicts (gauges) and applies the guardrails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

from app.config.settings import Settings
from app.config.variants import Experiment, GatewayConfig
from app.errors import OpenAIError
from app.experiments.config import Decide
from app.experiments.metrics import VERDICT_VALUES, ExperimentMetrics
from app.experiments.recorder import Recorder
from app.experiments.sequential import INFERIOR, decide, overall
from app.experiments.stats import arm_summary, flag_counts, latency_counter, outcome_counts
from app.experiments.store import SqlStore, StoreUnavailable, open_store
from app.routing.experiments import arm_at
from moeprune.errors import UserError

log = logging.getLogger("moeprune.experiments")
PRUNE_EVERY_S = 60.0


def state_dir(settings: Settings) -> Path:
    """Where the SQLite file lives: MOEPRUNE_STATE_DIR, else WORK_DIR/state, else ~/.local/state/moeprune."""
    if settings.state_dir is not None:
        return Path(settings.state_dir)
    if settings.work_dir is not None:
        return Path(settings.work_dir) / "state"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "moeprune"


def experiment_dsn(settings: Settings) -> str | None:
    """MOEPRUNE_EXPERIMENT_DSN, else the first line of MOEPRUNE_EXPERIMENT_DSN_FILE; None: SQLite."""
    if settings.experiment_dsn:
        return settings.experiment_dsn
    if settings.experiment_dsn_file is None:
        return None
    try:
        text = Path(settings.experiment_dsn_file).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(
            f"cannot read MOEPRUNE_EXPERIMENT_DSN_FILE {settings.experiment_dsn_file}: "
            f"{getattr(exc, 'strerror', None) or exc}"
        ) from None
    if not text:
        raise UserError(f"MOEPRUNE_EXPERIMENT_DSN_FILE {settings.experiment_dsn_file} is empty; put the DSN in it")
    return text.splitlines()[0].strip()


def unavailable(exc: StoreUnavailable) -> OpenAIError:
    log.warning("experiment store unavailable for a read", extra={"error": str(exc)[:300]})
    return OpenAIError(
        503,
        "the experiment database is unavailable; completions are unaffected, retry later",
        code="experiment_store_unavailable",
    )


class ExperimentService:
    def __init__(
        self, settings: Settings, config: GatewayConfig, metrics: ExperimentMetrics, store: SqlStore | None = None
    ):
        self.settings, self.config, self.metrics = settings, config, metrics
        self.store = store or open_store(state_dir(settings), experiment_dsn(settings))
        self.recorder = Recorder(
            self.store,
            settings.experiment_buffer_ids,
            on_drop=lambda n: metrics.store_dropped.labels("completion_id").inc(n),
            on_state=lambda up: metrics.store_up.set(1 if up else 0),
        )
        self.stopped: dict[tuple[str, str], str] = {}  # (experiment, arm) -> why a guardrail stopped it
        self.migrated = False
        self._tasks: list[asyncio.Task] = []
        self._register(config)

    def _register(self, config: GatewayConfig) -> None:
        for name, experiment in config.experiments.items():
            self.metrics.register(name, experiment.arms, decide_metrics(experiment))
        self.metrics.store_up.set(1)

    @property
    def active(self) -> bool:
        return bool(self.config.experiments)

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Migrate (a newer schema stops the start; an unreachable database only logs) and start the loops."""
        if not self.active or self._tasks:
            return
        if await self._migrate():
            with contextlib.suppress(StoreUnavailable):
                await self.evaluate()  # arms a guardrail stopped before a restart stay stopped from the start
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name="moeprune-experiment-flush"),
            asyncio.create_task(self._evaluate_loop(), name="moeprune-experiment-evaluate"),
        ]

    async def _migrate(self) -> bool:
        if self.migrated:
            return True
        try:
            version = await self.recorder.call(self.store.migrate)
        except StoreUnavailable as exc:
            self.recorder.mark(False, str(exc))  # logged once per outage
            return False
        self.migrated = True
        log.info("experiment store ready", extra={"store": self.store.where, "schema_version": version})
        return True

    async def _flush_loop(self) -> None:
        settings = self.settings
        pruned_at = time.monotonic()
        while True:
            await asyncio.sleep(settings.experiment_flush_interval_s)
            if not await self._migrate() or not await self.recorder.flush():
                continue
            if time.monotonic() - pruned_at >= PRUNE_EVERY_S:
                pruned_at = time.monotonic()
                await self.prune()

    async def prune(self) -> int:
        older_than = time.time() - self.settings.experiment_retention_s
        try:
            return await self.recorder.call(self.store.prune, older_than, self.settings.experiment_retention_ids)
        except StoreUnavailable:
            return 0

    async def _evaluate_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.experiment_evaluate_interval_s)
            with contextlib.suppress(StoreUnavailable):
                await self.evaluate()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.recorder.close()  # live fallbacks (app/reliability/live_sync.py) use the store without experiments

    # -- the request path -----------------------------------------------------------------------------
    def route(self, name: str, experiment: Experiment, arm: str) -> str:
        """The arm to serve: a stopped arm's users go to control (everyone else keeps their arm)."""
        if (name, arm) not in self.stopped:
            return arm
        if experiment.control is not None and (name, experiment.control) not in self.stopped:
            return experiment.control
        open_arms = {a: w for a, w in experiment.arms.items() if (name, a) not in self.stopped and w > 0}
        return arm_at(open_arms, 0.0) if open_arms else arm

    def record(
        self,
        experiment: str,
        arm: str,
        status: int,
        duration_s: float,
        flags: list[str],
        completion_id: str | None,
        key_id: str,
    ) -> None:
        """Count one answer of an experiment's arm (in memory; written by the next flush)."""
        add = self.recorder.add
        add(experiment, arm, "requests")
        if status >= 500:  # the arm failed: engine 5xx, upstream failure (502), engine down (503), timeout (504)
            add(experiment, arm, "errors")
            return
        if status >= 400:  # the request's own fault (a bad value, too long a prompt, a limit, a hang-up: 499)
            add(experiment, arm, "client_errors")
            return
        add(experiment, arm, "answered")
        for flag in set(flags):
            add(experiment, arm, f"flag:{flag}")
        add(experiment, arm, latency_counter(duration_s))
        add(experiment, arm, "latency_sum", duration_s)
        if completion_id:
            self.recorder.remember((completion_id, experiment, arm, key_id, time.time()))

    # -- reads ----------------------------------------------------------------------------------------
    async def _read(self) -> tuple[dict, dict]:
        await self.recorder.flush()
        return await self.recorder.call(self.store.counters), await self.recorder.call(self.store.stops)

    async def report(self, name: str, footprints: dict) -> dict:
        """The body of GET /v1/experiments/{name}."""
        experiment = self.config.experiments[name]
        try:
            if not await self._migrate():
                raise StoreUnavailable("not reachable since the gateway started")
            counters, stops = await self._read()
        except StoreUnavailable as exc:
            raise unavailable(exc) from None
        stored = counters.get(name, {})
        arms = {}
        for arm, weight in experiment.arms.items():
            summary = arm_summary(stored.get(arm, {}))
            stopped = stops.get((name, arm))
            summary["weight"] = 0 if stopped else weight
            summary["configured_weight"] = weight
            summary["stopped"] = stopped
            footprint = footprints.get(arm)
            summary["memory"] = None if footprint is None else footprint.describe()
            if experiment.control is not None and experiment.decide is not None and arm != experiment.control:
                decisions = arm_decisions(experiment.decide, stored.get(arm, {}), stored.get(experiment.control, {}))
                summary["decision"] = overall(list(decisions.values()))
                summary["decisions"] = decisions
            arms[arm] = summary
        body: dict[str, object] = {
            "object": "experiment",
            "name": name,
            "sticky": experiment.sticky,
            "control": experiment.control,
            "arms": arms,
        }
        if experiment.decide is not None:
            body["alpha"] = experiment.decide.alpha
        return body

    async def evaluate(self) -> None:
        """Verdict and outcome gauges for every experiment; stop arms a guardrail finds conclusively worse."""
        counters, stops = await self._read()
        now = time.time()
        for name, experiment in self.config.experiments.items():
            stored = counters.get(name, {})
            for arm in experiment.arms:
                outcome = arm_summary(stored.get(arm, {}))["outcome"]
                if outcome["mean"] is not None:
                    self.metrics.outcome.labels(name, arm, "mean").set(outcome["mean"])
                    self.metrics.outcome.labels(name, arm, "lower").set(outcome["ci95"][0])
                    self.metrics.outcome.labels(name, arm, "upper").set(outcome["ci95"][1])
            control = experiment.control
            if control is None:
                continue
            for arm in experiment.arms:
                if arm == control:
                    continue
                if experiment.decide is not None:
                    for metric, decision in arm_decisions(
                        experiment.decide, stored.get(arm, {}), stored.get(control, {})
                    ).items():
                        self.metrics.verdict.labels(name, arm, metric).set(VERDICT_VALUES[decision["status"]])
                guardrail = experiment.guardrail
                if guardrail is None or (name, arm) in stops:
                    continue
                alpha = experiment.decide.alpha if experiment.decide is not None else 0.05
                check = decide(
                    guardrail.flag,
                    flag_counts(stored.get(arm, {}), guardrail.flag),
                    flag_counts(stored.get(control, {}), guardrail.flag),
                    guardrail.stop_if_worse_by,
                    alpha,
                    higher_is_better=False,
                )
                if check["status"] != INFERIOR:
                    continue
                low, high = check["interval"]
                reason = (
                    f"guardrail: {guardrail.flag} rate {check['estimate']:+.3f} vs {control} "
                    f"(95% anytime interval [{low:+.3f}, {high:+.3f}]) is worse by more than "
                    f"{guardrail.stop_if_worse_by}"
                )
                if await self.recorder.call(self.store.stop_arm, name, arm, reason, now):
                    self.metrics.guardrail_stops.labels(name, arm).inc()
                    log.warning(
                        "guardrail stopped an arm: its users go to control until a config reload",
                        extra={"experiment": name, "variant": arm, "control": control, "reason": reason},
                    )
                stops[(name, arm)] = reason
        self.stopped = {key: reason for key, reason in stops.items() if key[0] in self.config.experiments}
        for name, experiment in self.config.experiments.items():
            for arm in experiment.arms:
                self.metrics.arm_stopped.labels(name, arm).set(1 if (name, arm) in self.stopped else 0)

    # -- feedback ---------------------------------------------------------------------------------------
    async def feedback(self, completion_id: str, key_id: str, value: float, label: str | None, tags: list[str]) -> dict:
        if not self.active:
            raise OpenAIError(
                404,
                "this gateway runs no experiment: there is nothing to give feedback on",
                param="id",
                code="completion_not_found",
            )
        if not await self._migrate() or not await self.recorder.flush():
            raise unavailable(StoreUnavailable("buffered writes are waiting for the database"))
        try:
            found = await self.recorder.call(self.store.lookup, completion_id)
        except StoreUnavailable as exc:
            raise unavailable(exc) from None
        expired = found is not None and found[3] < time.time() - self.settings.experiment_retention_s
        # Another key's completion is reported as unknown: ids are not a way to probe other clients.
        if found is None or expired or found[2] != key_id:
            raise OpenAIError(
                404,
                f"no experiment completion with id {completion_id!r} for this key (unknown, "
                f"not served by an experiment, or older than the retention window)",
                param="id",
                code="completion_not_found",
            )
        experiment, arm = found[0], found[1]
        kind = label or "score"
        counters = {
            (experiment, arm, "feedback"): 1.0,
            (experiment, arm, "feedback_sum"): value,
            (experiment, arm, f"feedback_{kind}"): 1.0,
        }
        try:
            recorded = await self.recorder.call(
                self.store.add_feedback, completion_id, key_id, value, label, ",".join(tags), counters, time.time()
            )
        except StoreUnavailable as exc:
            raise unavailable(exc) from None
        if recorded:
            self.metrics.feedback.labels(experiment, arm, kind).inc()
            self.metrics.feedback_outcome.labels(experiment, arm).inc(value)
        return {
            "object": "feedback",
            "id": completion_id,
            "experiment": experiment,
            "variant": arm,
            "recorded": recorded,
            "duplicate": not recorded,
        }

    # -- reload -------------------------------------------------------------------------------------------
    async def apply_config(self, config: GatewayConfig) -> int:
        """Use a reloaded configuration (weights, margins, guardrails); clears guardrail stops. Stops cleared."""
        self.config = config
        self._register(config)
        cleared = 0
        if self.active:
            await self.start()
            try:
                cleared = await self.recorder.call(self.store.clear_stops)
            except StoreUnavailable as exc:
                raise unavailable(exc) from None
        self.stopped = {}
        for name, experiment in config.experiments.items():
            for arm in experiment.arms:
                self.metrics.arm_stopped.labels(name, arm).set(0)
        return cleared


def decide_metrics(experiment: Experiment) -> list[str]:
    if experiment.decide is None:
        return []
    return (["outcome"] if experiment.decide.outcome else []) + list(experiment.decide.flags)


def arm_decisions(settings: Decide, arm: dict, control: dict) -> dict[str, dict]:
    """metric -> decision of one arm against control, for every metric the experiment's `decide` names."""
    decisions = {}
    if settings.outcome is not None:
        decisions["outcome"] = decide(
            "outcome",
            outcome_counts(arm),
            outcome_counts(control),
            settings.outcome.margin,
            settings.alpha,
            higher_is_better=True,
        )
    for flag, margin in settings.flags.items():
        decisions[flag] = decide(
            flag,
            flag_counts(arm, flag),
            flag_counts(control, flag),
            margin.margin,
            settings.alpha,
            higher_is_better=False,
        )
    return decisions
