"""General-domain tasks through lm-evaluation-harness, folded into the report card (`moeprune eval --lm-eval`).

The study ran IFEval, GSM8K (5-shot) and HumanEval-instruct through lm-eval;
this runs lm-eval's own task definitions against the same endpoint as the
rest of the card, with its API models: `local-chat-completions` (default:
the chat template applies, as for the study's instruct models, and the run's
thinking control travels with every request) or `local-completions` (also
log-likelihood tasks; the tokenizer is the server's own when it offers one,
as vLLM does, else a local tokenizer dir, `--lm-eval-tokenizer`).

Nothing is downloaded: the task YAMLs come from `--lm-eval-include DIR`
(and lm-eval's built-in task list), and their data must be local files
(`dataset_path: json` + `data_files`, or a datasets cache the user filled).
The run happens in a child process (`python -m evaluators.lm_eval_bridge
SPEC.json`), so lm-eval and `datasets` start with offline settings and their
caches under OUT/lm_eval/, and nothing of theirs stays in this process.

Tasks that execute model-written code (HumanEval; lm-eval marks them
`unsafe_code`) run only with `--allow-code-execution`; without it lm-eval
refuses them and this says which flag to add.

Each lm-eval metric `M` with filter `F` becomes card metric `M` (filter
`none`) or `M_F`, its CI the normal interval of lm-eval's stderr; the card's
task is named `lm_eval:TASK`, kind `lm_eval`, with lm-eval's sample count as n.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from evaluators.client import normalise_endpoint
from evaluators.thinking import ThinkingControl
from moeprune.errors import UserError

MODEL_TYPES = ("local-chat-completions", "local-completions")
CARD_PREFIX = "lm_eval:"
Z95 = 1.959964


@dataclass(frozen=True)
class LmEvalRun:
    """What `--lm-eval` asks for; `run` evaluates it and returns the card's task entries."""

    tasks: tuple[str, ...]
    include_path: str | None = None
    model_type: str = "local-chat-completions"
    tokenizer: str | None = None
    allow_code_execution: bool = False
    num_fewshot: int | None = None
    concurrency: int = 4
    domain: str = "general"
    timeout: float = 3600.0
    extra_env: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.tasks or not all(self.tasks):
            raise UserError("--lm-eval needs comma-separated lm-eval task names, e.g. gsm8k,ifeval", param="lm_eval")
        if self.model_type not in MODEL_TYPES:
            raise UserError(
                f"--lm-eval-model {self.model_type!r}: valid: {', '.join(MODEL_TYPES)}", param="lm_eval_model"
            )
        if self.include_path is not None and not Path(self.include_path).is_dir():
            raise UserError(
                f"--lm-eval-include {self.include_path} is not a directory of lm-eval task YAMLs",
                param="lm_eval_include",
            )
        if self.tokenizer is not None and not Path(self.tokenizer).is_dir():
            raise UserError(
                f"--lm-eval-tokenizer {self.tokenizer} is not a local tokenizer directory", param="lm_eval_tokenizer"
            )

    def run(
        self,
        endpoint: str,
        model: str,
        out_dir,
        *,
        api_key: str | None = None,
        thinking: ThinkingControl | None = None,
        limit: int | None = None,
    ) -> tuple[dict, dict]:
        """({card task name: TaskResult dict}, run info) for every task lm-eval reports."""
        work = Path(out_dir) / "lm_eval"
        work.mkdir(parents=True, exist_ok=True)
        thinking = thinking or ThinkingControl()
        chat = self.model_type == "local-chat-completions"
        spec = {
            "simple_evaluate": self.simple_evaluate_args(endpoint, model, thinking, limit),
            "include_path": self.include_path,
            "results": str(work / "results.json"),
        }
        (work / "spec.json").write_text(json.dumps(spec, indent=2) + "\n")
        env = {**os.environ, **self.environment(work, api_key)}
        try:
            done = subprocess.run(
                [sys.executable, "-m", "evaluators.lm_eval_bridge", str(work / "spec.json")],
                env=env,
                capture_output=True,
                text=True,
                timeout=self.timeout,
            )
        except subprocess.TimeoutExpired:
            raise UserError(f"lm-eval did not finish within {self.timeout:.0f} s (log: {work})") from None
        (work / "lm_eval.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise UserError(self.failure(done.stderr, work))
        results = json.loads((work / "results.json").read_text())
        sent = thinking.as_card() if chat else None
        tasks = fold_results(results, self.domain, sent)
        info = {
            "tasks": list(self.tasks),
            "model_type": self.model_type,
            "results": str(work / "results.json"),
            "lm_eval_version": results.get("lm_eval_version"),
            "code_execution": self.allow_code_execution,
        }
        return tasks, info

    def simple_evaluate_args(self, endpoint: str, model: str, thinking: ThinkingControl, limit) -> dict:
        chat = self.model_type == "local-chat-completions"
        route = "chat/completions" if chat else "completions"
        model_args = {
            "model": model,
            "base_url": f"{normalise_endpoint(endpoint)}/v1/{route}",
            "num_concurrent": self.concurrency,
            "max_retries": 3,
        }
        if chat:
            model_args["think_end_token"] = "</think>"  # reasoning left in the content is not the answer
        elif self.tokenizer:
            model_args.update(tokenizer_backend="huggingface", tokenizer=str(Path(self.tokenizer).resolve()))
        args = {
            "model": self.model_type,
            "model_args": model_args,
            "tasks": list(self.tasks),
            "apply_chat_template": chat,
            "confirm_run_unsafe_code": self.allow_code_execution,
            "log_samples": False,
            "limit": limit,
            "num_fewshot": self.num_fewshot,
        }
        fields = thinking.request_fields(chat)
        if fields:
            args["gen_kwargs"] = fields  # lm-eval puts generation kwargs into every request body
        return args

    def environment(self, work: Path, api_key: str | None) -> dict:
        env = {
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_CACHE": str(work / "datasets-cache"),
            "TOKENIZERS_PARALLELISM": "false",
            "OPENAI_API_KEY": api_key or "none",
            **self.extra_env,
        }
        if self.allow_code_execution:
            env["HF_ALLOW_CODE_EVAL"] = "1"  # the `code_eval` metric's own opt-in
        return env

    def failure(self, stderr: str, work: Path) -> str:
        tail = stderr.strip().splitlines()[-1:] or ["no output"]
        if "No module named 'lm_eval'" in stderr:
            return "lm-evaluation-harness is not installed: pip install 'lm-eval>=0.4.5'"
        if "marked as unsafe" in stderr or "HF_ALLOW_CODE_EVAL" in stderr:
            return (
                "an lm-eval task executes model-written code (e.g. HumanEval); run it only in a sandbox, "
                "with --allow-code-execution"
            )
        if "not found" in stderr.lower() and "task" in stderr.lower():
            return (
                f"lm-eval does not know a task of {', '.join(self.tasks)}: point --lm-eval-include at the "
                f"directory of its YAML files ({tail[0][:300]}; log: {work / 'lm_eval.log'})"
            )
        return f"lm-eval failed: {tail[0][:300]} (log: {work / 'lm_eval.log'})"


def card_metric_name(key: str) -> str | None:
    """lm-eval's `acc,none` -> `acc`; `exact_match,strict-match` -> `exact_match_strict-match`; stderr -> None."""
    metric, _, filt = key.partition(",")
    if not filt or metric.endswith("_stderr") or metric == "alias":
        return None
    return metric if filt == "none" else f"{metric}_{filt}"


def fold_results(results: dict, domain: str, thinking: dict | None) -> dict:
    """lm-eval's results dict -> {card task name: TaskResult dict}."""
    samples = results.get("n-samples") or {}
    versions = results.get("versions") or {}
    out = {}
    for task, values in (results.get("results") or {}).items():
        metrics = {}
        for key, value in values.items():
            name = card_metric_name(key)
            if name is None or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            metric, _, filt = key.partition(",")
            stderr = values.get(f"{metric}_stderr,{filt}")
            ci = [value - Z95 * stderr, value + Z95 * stderr] if isinstance(stderr, (int, float)) else None
            metrics[name] = {"value": float(value), "ci95": ci}
        if not metrics:
            continue
        n = (samples.get(task) or {}).get("effective")
        entry = {
            "domain": domain,
            "kind": "lm_eval",
            "n": int(n) if isinstance(n, int) else 0,
            "version": versions.get(task),
            "format": "lm-eval",
            "metrics": metrics,
        }
        if thinking is not None:
            entry["thinking"] = thinking
        out[CARD_PREFIX + task] = entry
    return out


def add_lm_eval_arguments(parser) -> None:
    """`moeprune eval`'s lm-eval flags."""
    parser.add_argument(
        "--lm-eval",
        metavar="TASKS",
        help="comma-separated lm-evaluation-harness tasks run against the endpoint and folded into "
        "the card (e.g. ifeval,gsm8k); their data must be local (see --lm-eval-include)",
    )
    parser.add_argument("--lm-eval-include", metavar="DIR", help="directory of lm-eval task YAML files")
    parser.add_argument(
        "--lm-eval-model",
        choices=MODEL_TYPES,
        default="local-chat-completions",
        help="lm-eval API model (default local-chat-completions; local-completions for log-likelihood tasks)",
    )
    parser.add_argument(
        "--lm-eval-tokenizer",
        metavar="DIR",
        help="local tokenizer dir for local-completions when the server has no /tokenize",
    )
    parser.add_argument("--lm-eval-fewshot", type=int, metavar="N", help="lm-eval num_fewshot (e.g. 5 for GSM8K)")
    parser.add_argument(
        "--allow-code-execution",
        action="store_true",
        help="let lm-eval run tasks that execute model-written code (HumanEval); use a sandbox",
    )


def lm_eval_from_args(args) -> LmEvalRun | None:
    if not args.lm_eval:
        if args.lm_eval_include or args.allow_code_execution:
            raise UserError("--lm-eval-include / --allow-code-execution need --lm-eval TASKS", param="lm_eval")
        return None
    tasks = tuple(name.strip() for name in args.lm_eval.split(",") if name.strip())
    return LmEvalRun(
        tasks,
        args.lm_eval_include,
        args.lm_eval_model,
        args.lm_eval_tokenizer,
        args.allow_code_execution,
        args.lm_eval_fewshot,
        args.concurrency,
    )


def child(spec_path: str) -> int:
    """The child process: lm-eval's simple_evaluate with the spec, results written as JSON."""
    spec = json.loads(Path(spec_path).read_text())
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=spec["include_path"]) if spec.get("include_path") else TaskManager()
    results = simple_evaluate(task_manager=manager, **spec["simple_evaluate"])
    keep = {key: results.get(key) for key in ("results", "n-samples", "versions", "configs", "lm_eval_version")}
    Path(spec["results"]).write_text(json.dumps(keep, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(child(sys.argv[1]))
