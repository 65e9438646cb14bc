"""lm-evaluation-harness evaluates a variant through the gateway (`local-completions`), fully offline.

Two tiny local tasks: a multiple-choice one (log-likelihoods via `echo` +
`logprobs`, so the gateway's logprob trimming must keep lm-eval's parsing
intact) and a generation one (`generate_until`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import httpx
import pytest

pytestmark = pytest.mark.slow

ITEMS = [
    {"question": "Which organ does hepatitis affect?", "choices": ["the liver", "the kidney"], "answer": 0},
    {"question": "What does metformin treat?", "choices": ["scurvy", "type 2 diabetes"], "answer": 1},
    {"question": "What is the capital of France?", "choices": ["Paris", "Au"], "answer": 0},
    {"question": "What does aspirin inhibit?", "choices": ["the violin", "cyclooxygenase"], "answer": 1},
]

TASKS = """
task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: {output_type}
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
{extra}
"""
MC_EXTRA = """doc_to_choice: "{{choices}}"
doc_to_target: "{{answer}}"
metric_list:
  - metric: acc
"""
GEN_EXTRA = """doc_to_target: "{{choices[answer]}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 6
metric_list:
  - metric: exact_match
"""


def completed_requests(gateway) -> float:
    text = httpx.get(gateway.url + "/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("moeprune_requests_total{") and 'variant="base"' in line and 'status="200"' in line
    )


def test_lm_eval_local_completions_through_the_gateway(gateway, tmp_path):
    data = tmp_path / "items.jsonl"
    data.write_text("\n".join(json.dumps(item) for item in ITEMS) + "\n")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for name, output_type, extra in (
        ("gw_tiny_mc", "multiple_choice", MC_EXTRA),
        ("gw_tiny_gen", "generate_until", GEN_EXTRA),
    ):
        (tasks / f"{name}.yaml").write_text(
            textwrap.dedent(TASKS.format(name=name, data=data, output_type=output_type, extra=extra))
        )
    before = completed_requests(gateway)
    model_args = (
        f"model=base,base_url={gateway.url}/v1/completions,tokenizer_backend=huggingface,"
        f"tokenizer={gateway.dirs['base']},num_concurrent=2,max_retries=1"
    )
    env = {
        **os.environ,
        "OPENAI_API_KEY": gateway.api_key,
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(tmp_path / "datasets-cache"),
        "TOKENIZERS_PARALLELISM": "false",
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "lm_eval",
            "run",
            "--model",
            "local-completions",
            "--model_args",
            model_args,
            "--tasks",
            "gw_tiny_mc,gw_tiny_gen",
            "--include_path",
            str(tasks),
            "--output_path",
            str(tmp_path / "out"),
            "--batch_size",
            "1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    results_file = next((tmp_path / "out").rglob("results_*.json"))
    results = json.loads(results_file.read_text())["results"]
    assert 0 <= results["gw_tiny_mc"]["acc,none"] <= 1
    assert 0 <= results["gw_tiny_gen"]["exact_match,none"] <= 1
    # 4 items x 2 choices of log-likelihood requests plus 4 generations went through the gateway.
    assert completed_requests(gateway) - before >= 12
