"""/metrics after real traffic: parses with prometheus_client, every family present, memory figures true."""

from __future__ import annotations

import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from safetensors import safe_open

pytestmark = pytest.mark.slow

# family -> the label names its samples must carry (docs/contracts.md).
FAMILIES = {
    "moeprune_requests": {"variant", "experiment", "status"},
    "moeprune_request_duration_seconds": {"variant", "experiment"},
    "moeprune_time_to_first_token_seconds": {"variant", "experiment"},
    "moeprune_prompt_tokens": {"variant"},
    "moeprune_completion_tokens": {"variant"},
    "moeprune_requests_in_flight": {"variant"},
    "moeprune_reliability_flags": {"variant", "experiment", "flag"},
    "moeprune_reliability_flag_baseline_ratio": {"variant", "flag"},
    "moeprune_backend_up": {"variant"},
    "moeprune_backend_restarts": {"variant"},
    "moeprune_experiment_assignments": {"experiment", "variant"},
    "moeprune_variant_weight_bytes": {"variant", "source"},
    "moeprune_variant_experts": {"variant", "kind", "source"},
    "moeprune_variant_bytes_saved": {"variant", "source"},
    "moeprune_variant_bytes_saved_ratio": {"variant", "source"},
    "moeprune_engine_resident_memory_bytes": {"variant"},
    # Experiments (app/experiments/metrics.py): created up front for every configured arm.
    "moeprune_feedback": {"experiment", "variant", "label"},
    "moeprune_feedback_outcome": {"experiment", "variant"},
    "moeprune_experiment_arm_stopped": {"experiment", "variant"},
    "moeprune_experiment_store_dropped": {"kind"},
    "moeprune_experiment_store_up": set(),
}


def tensor_bytes(checkpoint) -> int:
    total = 0
    for path in checkpoint.glob("*.safetensors"):
        with safe_open(str(path), "pt") as handle:
            for name in handle.keys():
                tensor = handle.get_tensor(name)
                total += tensor.numel() * tensor.element_size()
    return total


@pytest.fixture(scope="module")
def scraped(gateway):
    for model in ("base", "pruned", "ab"):
        response = httpx.post(
            gateway.url + "/v1/completions",
            headers=gateway.headers,
            timeout=60,
            json={"model": model, "prompt": "Aspirin inhibits", "max_tokens": 4},
        )
        assert response.status_code == 200, response.text
    text = httpx.get(gateway.url + "/metrics", timeout=10).text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    return families


def values(family, **labels) -> list[float]:
    return [s.value for s in family.samples if all(s.labels.get(k) == v for k, v in labels.items())]


def test_every_family_is_present_with_its_labels(scraped):
    for name, label_names in FAMILIES.items():
        assert name in scraped, f"{name} missing"
        samples = [s for s in scraped[name].samples if not s.name.endswith("_created")]
        assert samples, f"{name} has no samples"
        for sample in samples:
            assert set(sample.labels) - {"le"} == label_names, (name, sample.labels)
    forbidden = {"user", "session", "prompt", "x_session_id"}
    assert not any(forbidden & set(s.labels) for f in scraped.values() for s in f.samples)


def test_label_values_name_variants_experiments_and_statuses(scraped):
    requests = scraped["moeprune_requests"]
    assert values(requests, variant="base", experiment="", status="200")[0] >= 1
    assert values(requests, variant="pruned", experiment="", status="200")[0] >= 1
    assert sum(values(requests, experiment="ab", status="200")) >= 1
    assigned = {
        s.labels["variant"]
        for s in scraped["moeprune_experiment_assignments"].samples
        if s.labels["experiment"] == "ab" and s.name.endswith("_total")
    }
    assert assigned <= {"base", "pruned"} and assigned
    assert values(scraped["moeprune_backend_up"], variant="base") == [1.0]
    assert values(scraped["moeprune_backend_up"], variant="pruned") == [1.0]
    assert values(scraped["moeprune_reliability_flag_baseline_ratio"], variant="pruned", flag="low_confidence") == [
        0.12
    ]
    flags = {s.labels["flag"] for s in scraped["moeprune_reliability_flags"].samples}
    assert "low_confidence" in flags  # a random tiny model is never confident
    assert values(scraped["moeprune_completion_tokens"], variant="base")[0] >= 4


def test_memory_figures_equal_pruning_json_and_the_files(gateway, scraped):
    manifest = json.loads((gateway.dirs["pruned"] / "pruning.json").read_text())
    before, after = manifest["bytes"]["before"]["total"], manifest["bytes"]["after"]["total"]
    assert values(scraped["moeprune_variant_weight_bytes"], variant="pruned") == [tensor_bytes(gateway.dirs["pruned"])]
    assert values(scraped["moeprune_variant_weight_bytes"], variant="base") == [tensor_bytes(gateway.dirs["base"])]
    assert after == tensor_bytes(gateway.dirs["pruned"]) and before == tensor_bytes(gateway.dirs["base"])
    assert values(scraped["moeprune_variant_bytes_saved"], variant="pruned") == [before - after]
    assert values(scraped["moeprune_variant_bytes_saved_ratio"], variant="pruned") == [
        pytest.approx((before - after) / before)
    ]
    assert values(scraped["moeprune_variant_bytes_saved"], variant="base") == [0.0]
    kept = sum(len(v) for v in manifest["kept_experts"].values())
    assert values(scraped["moeprune_variant_experts"], variant="pruned", kind="kept") == [kept]
    assert values(scraped["moeprune_variant_experts"], variant="pruned", kind="total") == [16]
    assert values(scraped["moeprune_variant_experts"], variant="base", kind="kept") == [16]
    # Each engine is a real vLLM process tree: hundreds of MB resident.
    for variant in ("base", "pruned"):
        assert values(scraped["moeprune_engine_resident_memory_bytes"], variant=variant)[0] > 200e6
