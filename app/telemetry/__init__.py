"""Routing telemetry from live traffic: per-layer expert counts from vLLM's routed_experts (no text, ever),
the pruned-expert hit ratio (drift) and the export `moeprune prune --scores-in` reads. docs/gateway.md."""
