"""The deploy tests' live fixture: gateway + two tiny vLLM CPU variants + a real Prometheus, under traffic."""

from __future__ import annotations

import time

import pytest

from tests.deploy.live_stack import live_stack
from tests.deploy.traffic import send_traffic


@pytest.fixture(scope="module")
def live(tiny_qwen3_moe, tmp_path_factory):
    with live_stack(tmp_path_factory.mktemp("deploy-live"), base_model=tiny_qwen3_moe) as stack:
        # Two rounds a few scrapes apart, so rate() and the quantiles see counters move.
        statuses = send_traffic(stack.gateway_url)
        time.sleep(3)
        statuses += send_traffic(stack.gateway_url)
        time.sleep(4)  # last scrapes and rule evaluations (1 s interval)
        stack.statuses = statuses
        yield stack
