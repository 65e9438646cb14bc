"""The experiment metrics, on the gateway's own registry (names and labels: docs/contracts.md).

Labels stay bounded: experiment and variant come from variants.yaml, `label` is
good/bad/score, `metric` is `outcome` or a flag named in `decide`, `kind` a
fixed word. The verdict and outcome gauges are recomputed from the shared
database, so every replica exports the same values (dashboards take `max`); the
worker processes of one gateway (app/workers) export the latest one computed.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

VERDICT_VALUES = {"non_inferior": 1, "inconclusive": 0, "inferior": -1}


class ExperimentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        p = "moeprune_"
        self.feedback = Counter(
            p + "feedback_total",
            "Feedback recorded (first per completion id and key)",
            ["experiment", "variant", "label"],
            registry=registry,
        )
        self.feedback_outcome = Counter(
            p + "feedback_outcome_total",
            "Sum of recorded outcomes (good=1, bad=0, score)",
            ["experiment", "variant"],
            registry=registry,
        )
        self.outcome = Gauge(
            p + "experiment_outcome",
            "Mean feedback outcome per arm and its 95% interval",
            ["experiment", "variant", "kind"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.verdict = Gauge(
            p + "experiment_verdict",
            "Non-inferiority verdict vs control: 1 non_inferior, 0 inconclusive, -1 inferior",
            ["experiment", "variant", "metric"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.arm_stopped = Gauge(
            p + "experiment_arm_stopped",
            "1 while a guardrail holds the arm at weight 0",
            ["experiment", "variant"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.guardrail_stops = Counter(
            p + "guardrail_stops_total",
            "Arms this gateway's guardrail stopped",
            ["experiment", "variant"],
            registry=registry,
        )
        self.store_dropped = Counter(
            p + "experiment_store_dropped_total",
            "Experiment records dropped because the database was behind",
            ["kind"],
            registry=registry,
        )
        self.store_up = Gauge(
            p + "experiment_store_up",
            "1 when the last write to the experiment database worked",
            registry=registry,
            multiprocess_mode="livemin",
        )

    def register(self, experiment: str, arms, decide_metrics: list[str]) -> None:
        """Create every series up front (zeros, not gaps)."""
        for arm in arms:
            self.arm_stopped.labels(experiment, arm).set(0)
            self.feedback_outcome.labels(experiment, arm)
            for label in ("good", "bad", "score"):
                self.feedback.labels(experiment, arm, label)
            for metric in decide_metrics:
                self.verdict.labels(experiment, arm, metric).set(0)
        self.store_dropped.labels("completion_id")
