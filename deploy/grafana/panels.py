"""The dashboard's panels as data: title, queries, unit, layout.

`build_dashboard.py` turns them into Grafana JSON; `render_snapshot.py` renders
the `main` ones from a live Prometheus; the tests evaluate every query. Metric
names come from docs/contracts.md ("Gateway metrics") and vLLM's own `vllm:*`
exposition; `variant` on `vllm:*` series is a scrape-time target label that ties
an engine to its gateway variant. Heavier queries read the recording rules in
deploy/prometheus/rules/recording.yml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VARIANT = 'variant=~"$variant"'
EXPERIMENT = 'experiment=~"$experiment"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat
    width: int = 8
    description: str = ""
    main: bool = False  # drawn in docs/dashboard.png
    stack: bool = False

    @property
    def rate_based(self) -> bool:
        """Empty (or NaN) without traffic: a rate, or a recording rule over a 5m rate."""
        return any(re.search(r"\brate\(|rate5m|_5m\b", query.expr) for query in self.queries)


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


ROWS: tuple[Row, ...] = (
    Row("Memory saved by pruning", (
        Panel("Memory saved vs base (bytes)", (
            Query(f"moeprune_variant_bytes_saved{{{VARIANT}}}", "{{variant}}"),
        ), unit="bytes", kind="stat", width=6,
            description="Weight bytes the variant's checkpoint does not load compared with its base (pruning.json)."),
        Panel("Memory saved vs base (%)", (
            Query(f"100 * moeprune_variant_bytes_saved_ratio{{{VARIANT}}}", "{{variant}}"),
        ), unit="percent", kind="stat", width=6, main=True,
            description="The same saving as a share of the base's weight bytes."),
        Panel("Experts kept", (
            Query(f'moeprune_variant_experts{{{VARIANT}, kind="kept"}}', "{{variant}} kept"),
            Query(f'moeprune_variant_experts{{{VARIANT}, kind="total"}}', "{{variant}} total"),
        ), kind="stat", width=12, description="Routed experts over all MoE layers."),
        Panel("Weight bytes and engine memory", (
            Query(f"moeprune_variant_weight_bytes{{{VARIANT}}}", "{{variant}} weights"),
            Query(f"moeprune_engine_resident_memory_bytes{{{VARIANT}}}", "{{variant}} engine RSS"),
            Query(f"moeprune_engine_gpu_memory_bytes{{{VARIANT}}}", "{{variant}} engine GPU"),
        ), unit="bytes", width=24, main=True,
            description="Engine RSS is the whole vLLM process tree; GPU memory appears only where NVML sees a GPU."),
    )),
    Row("Traffic and latency", (
        Panel("Request rate by status", (
            Query(f"sum by (variant, status) (rate(moeprune_requests_total{{{VARIANT}}}[$__rate_interval]))",
                  "{{variant}} {{status}}"),
        ), unit="reqps", main=True,
            description="Requests the gateway answered per second, by variant and HTTP status."),
        Panel("Error rate (5xx)", (
            Query(f"variant:moeprune_request_errors:ratio_rate5m{{{VARIANT}}}", "{{variant}}"),
        ), unit="percentunit",
            description="Share of a variant's answers that were 5xx over 5 minutes (recording rule). "
                        "Alert: MoePruneHighErrorRate."),
        Panel("Requests in flight", (
            Query(f"moeprune_requests_in_flight{{{VARIANT}}}", "{{variant}}"),
        ), description="Requests the gateway is serving right now, per variant (one series per gateway pod)."),
        Panel("End-to-end latency p50 / p95", (
            Query(f"variant:moeprune_request_duration_seconds:p50_5m{{{VARIANT}}}", "{{variant}} p50"),
            Query(f"variant:moeprune_request_duration_seconds:p95_5m{{{VARIANT}}}", "{{variant}} p95"),
        ), unit="s", main=True,
            description="Whole-request latency measured by the gateway, over 5 minutes (recording rules). "
                        "Alert: MoePruneLatencySLO."),
        Panel("Time to first token p50 / p95", (
            Query(f"variant:moeprune_time_to_first_token_seconds:p50_5m{{{VARIANT}}}", "{{variant}} p50"),
            Query(f"variant:moeprune_time_to_first_token_seconds:p95_5m{{{VARIANT}}}", "{{variant}} p95"),
        ), unit="s", description="Measured by the gateway on streamed responses."),
        Panel("Tokens per second", (
            Query(f"sum by (variant) (rate(moeprune_completion_tokens_total{{{VARIANT}}}[$__rate_interval]))",
                  "{{variant}} completion"),
            Query(f"sum by (variant) (rate(moeprune_prompt_tokens_total{{{VARIANT}}}[$__rate_interval]))",
                  "{{variant}} prompt"),
        ), unit="short", main=True,
            description="Prompt and completion tokens per second, from the engines' usage counts as the "
                        "gateway saw them."),
    )),
    Row("Reliability flags", (
        Panel("Flag rate per flag vs report-card baseline", (
            Query(f"variant_flag:moeprune_reliability_flags:ratio_rate5m{{{VARIANT}}}", "{{variant}} {{flag}}"),
            Query(f"moeprune_reliability_flag_baseline_ratio{{{VARIANT}}}", "{{variant}} {{flag}} baseline"),
        ), unit="percentunit", width=12, main=True,
            description="Share of successful responses that raised each flag; dashed: the report card's base_rate."),
        Panel("Flags raised per second", (
            Query(f"sum by (variant, flag) (rate(moeprune_reliability_flags_total{{{VARIANT}}}[$__rate_interval]))",
                  "{{variant}} {{flag}}"),
        ), unit="short", width=12,
            description="Reliability flags raised per second, by variant and flag (absolute counts; the "
                        "panel beside it gives the rate per answer)."),
        # Each replica keeps its own live state (docs/gateway.md, "Live re-certification"): max, not sum.
        Panel("Live error among unflagged answers vs the certificate's alpha", (
            Query(f"max by (variant, domain) (moeprune_live_realised_error{{{VARIANT}}})",
                  "{{variant}} {{domain}} realised"),
            Query(f"max by (variant, domain) (moeprune_live_error_upper_bound{{{VARIANT}}})",
                  "{{variant}} {{domain}} upper bound"),
            Query(f"max by (variant, domain) (moeprune_live_certificate_alpha{{{VARIANT}}})",
                  "{{variant}} {{domain}} alpha baseline"),
        ), unit="percentunit", width=12,
            description="From POST /v1/feedback on answers served without a flag, since the pair's window opened "
                        "(start, fallback, re-certification): the share wrong, its one-sided Clopper-Pearson upper "
                        "bound at the certificate's delta, and alpha (dashed). Alert: MoePruneLiveErrorBoundAboveAlpha."),
        Panel("Live fallback (1: every answer flagged) and labelled answers", (
            Query(f"max by (variant, domain) (moeprune_live_fallback_active{{{VARIANT}}})",
                  "{{variant}} {{domain}} fallback"),
            Query(f"max by (variant, domain) (moeprune_live_labelled_answers{{{VARIANT}}})",
                  "{{variant}} {{domain}} labelled"),
        ), kind="stat", width=12,
            description="Fallback: feedback showed the error above alpha (anytime-valid test); cleared by "
                        "moeprune recertify. Alert: MoePruneReliabilityFallback."),
    )),
    Row("A/B experiments", (
        Panel("Arm traffic share", (
            Query(f"experiment_variant:moeprune_experiment_assignments:share_rate5m{{{EXPERIMENT}}}",
                  "{{experiment}}: {{variant}}"),
        ), unit="percentunit", width=12, main=True, stack=True,
            description="Each arm's share of its experiment's assignments over 5 minutes; compare with the "
                        "configured weights."),
        Panel("Flag rate per arm", (
            Query(f"experiment_variant_flag:moeprune_reliability_flags:ratio_rate5m{{{EXPERIMENT}}}",
                  "{{experiment}}: {{variant}} {{flag}}"),
        ), unit="percentunit", width=12,
            description="Flag rate per arm, experiment traffic only, over 5 minutes (recording rule)."),
        # Computed from the shared experiment database, so every replica exports the same value: max, not sum.
        Panel("Outcome per arm (feedback mean, 95% interval)", (
            Query(f"max by (experiment, variant, kind) (moeprune_experiment_outcome{{{EXPERIMENT}}})",
                  "{{experiment}}: {{variant}} {{kind}}"),
        ), unit="percentunit", width=12, main=True,
            description="Mean of the apps' POST /v1/feedback outcomes (good=1, bad=0, or the score) per arm; "
                        "lower/upper: its 95% Wilson interval."),
        Panel("Verdict vs control (1 non-inferior, 0 inconclusive, -1 inferior)", (
            Query(f"max by (experiment, variant, metric) (moeprune_experiment_verdict{{{EXPERIMENT}}})",
                  "{{experiment}}: {{variant}} {{metric}}"),
        ), kind="stat", width=6,
            description="Anytime-valid non-inferiority verdict per decided metric (docs/gateway.md, "
                        "\"Experiment statistics\")."),
        Panel("Arms stopped by a guardrail", (
            Query(f"max by (experiment, variant) (moeprune_experiment_arm_stopped{{{EXPERIMENT}}})",
                  "{{experiment}}: {{variant}}"),
        ), kind="stat", width=6, description="1: the arm's weight is 0 and its users go to control until a "
                                               "config reload."),
        Panel("Arm server-error rate (5xx)", (
            # "or 0 * all": an arm with no 5xx yet shows 0, not "No data" (no 5xx series exists until one happens).
            Query(f"(sum by (experiment, variant) (rate(moeprune_requests_total{{{EXPERIMENT},status=~\"5..\"}}"
                  "[$__rate_interval])) or 0 * sum by (experiment, variant) "
                  f"(rate(moeprune_requests_total{{{EXPERIMENT}}}[$__rate_interval]))) / sum by (experiment, variant) "
                  f"(rate(moeprune_requests_total{{{EXPERIMENT}}}[$__rate_interval]))",
                  "{{experiment}}: {{variant}}"),
        ), width=12, description="Share of an arm's requests the gateway answered with a server error (5xx: engine "
                                 "failure, down, timeout), the `error_rate` of /v1/experiments; client errors (4xx) "
                                 "are the request's fault and counted apart (`client_errors`). Labelled by the "
                                 "variant that answered, which differs from the assigned arm only when a guard "
                                 "fallback answered."),
        Panel("Feedback per second", (
            Query(f"sum by (experiment, variant, label) (rate(moeprune_feedback_total{{{EXPERIMENT}}}"
                  "[$__rate_interval]))", "{{experiment}}: {{variant}} {{label}}"),
        ), width=12, description="POST /v1/feedback calls per second, by experiment, arm and label."),
    )),
    Row("Guards and routing drift", (
        Panel("Guard decisions per second", (
            Query(f"sum by (variant, guard, decision) (rate(moeprune_guard_decisions_total{{{VARIANT}}}"
                  "[$__rate_interval]))", "{{variant}} {{guard}}: {{decision}}"),
        ), width=8, stack=True, description="domain_gate: pass / fallback / unavailable; cascade: none / escalated "
                                            "/ unavailable / not_streamed (docs/gateway.md, \"Guards\")."),
        Panel("Share the domain gate keeps on the variant", (
            Query(f'sum by (variant) (rate(moeprune_guard_decisions_total{{{VARIANT}, guard="domain_gate", '
                  f'decision="pass"}}[$__rate_interval])) / sum by (variant) '
                  f'(rate(moeprune_guard_decisions_total{{{VARIANT}, guard="domain_gate"}}[$__rate_interval]))',
                  "{{variant}}"),
        ), unit="percentunit", width=8, description="Of a gated variant's requests, those the gate judged "
                                                    "in-domain (the rest go to the fallback)."),
        Panel("Latency the guards add (p50, p95)", (
            Query("histogram_quantile(0.5, sum by (variant, guard, le) "
                  f"(rate(moeprune_guard_extra_seconds_bucket{{{VARIANT}}}[$__rate_interval])))",
                  "{{variant}} {{guard}} p50"),
            Query("histogram_quantile(0.95, sum by (variant, guard, le) "
                  f"(rate(moeprune_guard_extra_seconds_bucket{{{VARIANT}}}[$__rate_interval])))",
                  "{{variant}} {{guard}} p95"),
        ), unit="s", width=8, description="Latency a guard added to the requests it handled: gate scoring, "
                                          "or the cascade's second answer."),
        Panel("Traffic on removed experts (drift)", (
            Query(f"max by (variant) (moeprune_pruned_expert_hit_ratio{{{VARIANT}}})", "{{variant}}"),
        ), unit="percentunit", width=24, description="Of the base's routed (token, expert) pairs in the sliding "
                                                     "window, the share on experts the variant removed (needs the "
                                                     "base's routed-experts telemetry). Alert: "
                                                     "MoePrunePrunedExpertDrift."),
    )),
    Row("Engines (vLLM)", (
        Panel("Engine up", (
            Query(f"moeprune_backend_up{{{VARIANT}}}", "{{variant}}"),
        ), kind="stat", width=6, description="1 while the gateway's health check of the variant's engine "
                                             "passes. Alert: MoePruneEngineDown."),
        Panel("Engine restarts (1h)", (
            Query(f"increase(moeprune_backend_restarts_total{{{VARIANT}}}[1h])", "{{variant}}"),
        ), kind="stat", width=6, description="Engine restarts over the last hour (managed engines; the "
                                             "gateway restarts a dead one). Alert: MoePruneEngineRestarting."),
        Panel("KV-cache usage", (
            Query(f"vllm:kv_cache_usage_perc{{{VARIANT}}}", "{{variant}} engine {{engine}}"),
        ), unit="percentunit", width=12, main=True,
            description="Share of vLLM's KV-cache blocks in use (1 = full: new requests wait). "
                        "Alert: MoePruneKVCacheNearFull."),
        Panel("Engine queue", (
            Query(f"vllm:num_requests_waiting{{{VARIANT}}}", "{{variant}} waiting"),
            Query(f"vllm:num_requests_running{{{VARIANT}}}", "{{variant}} running"),
        ), width=8, description="Requests vLLM is running and those waiting for KV-cache room."),
        Panel("Engine tokens per second", (
            Query(f"variant:vllm_generation_tokens:rate5m{{{VARIANT}}}", "{{variant}} generated"),
            Query(f"sum by (variant) (rate(vllm:prompt_tokens_total{{{VARIANT}}}[$__rate_interval]))",
                  "{{variant}} prompt"),
        ), width=8, description="Tokens per second counted inside the engines (generated: recording rule)."),
        Panel("Engine TTFT and e2e latency p95", (
            Query("histogram_quantile(0.95, sum by (variant, le) "
                  f"(rate(vllm:time_to_first_token_seconds_bucket{{{VARIANT}}}[$__rate_interval])))",
                  "{{variant}} TTFT p95"),
            Query("histogram_quantile(0.95, sum by (variant, le) "
                  f"(rate(vllm:e2e_request_latency_seconds_bucket{{{VARIANT}}}[$__rate_interval])))",
                  "{{variant}} e2e p95"),
        ), unit="s", width=8, description="Inside the engine; compare with the gateway's figures for its overhead."),
    )),
)


def all_panels() -> list[Panel]:
    return [panel for row in ROWS for panel in row.panels]


def main_panels() -> list[Panel]:
    return [panel for panel in all_panels() if panel.main]
