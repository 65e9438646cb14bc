"""The deploy tests' live fixture: gateway + two tiny vLLM CPU variants + a real Prometheus, under traffic."""

from __future__ import annotations

import time

import pytest

from testkit.live_stack import live_stack
from testkit.traffic import send_traffic


@pytest.fixture(scope="module")
def live(tiny_qwen3_moe, tmp_path_factory):
    with live_stack(tmp_path_factory.mktemp("deploy-live"), base_model=tiny_qwen3_moe) as stack:
        # Two rounds, each seen by a scrape, so rate() and the quantiles see counters
        # MOVE: with fast engines both rounds could otherwise end before the first
        # scrape, and a counter that never changes between scrapes has rate 0.
        wait_until_scraped(stack, "count(moeprune_backend_up) >= 2")
        statuses = send_traffic(stack.gateway_url)
        wait_until_scraped(stack, f"sum(moeprune_requests_total) >= {len(statuses)}")
        # rate5m counts only increases between scrapes, over 300 s: the alert needs
        # > 0.05 req/s per variant, i.e. more than 15 requests seen moving. Measured:
        # a second round of 8 gave pruned-50 0.044 req/s and no alert.
        statuses += send_traffic(stack.gateway_url, per_variant=24)
        wait_until_scraped(stack, f"sum(moeprune_requests_total) >= {len(statuses)}")
        wait_until_scraped(stack, "count(moeprune_experiment_outcome) >= 1")  # evaluated from the feedback
        time.sleep(4)  # rule evaluations on the last scrape (1 s interval)
        stack.statuses = statuses
        yield stack


def wait_until_scraped(stack, condition: str, timeout: float = 60) -> None:
    """Until the PromQL condition has a result (i.e. Prometheus has scraped what it needs)."""
    deadline = time.monotonic() + timeout
    while not stack.query(condition).get("data", {}).get("result"):
        assert time.monotonic() < deadline, f"Prometheus never saw {condition!r} within {timeout:.0f} s"
        time.sleep(0.5)
