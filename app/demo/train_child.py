"""Train the demo model in a child process whose numerics are pinned (see `app.demo.numerics`).

    python -m app.demo.train_child CONFIG_JSON OUT_DIR

The parent (`train_in_child`) sets the pinned environment, so torch loads with
it; the child trains the tokenizer and the model into OUT_DIR and writes the
training summary to OUT_DIR/train_summary.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SUMMARY = "train_summary.json"


def train_in_child(cfg, out_dir: Path, progress: bool = True, env: dict | None = None) -> dict:
    """Run the pinned training child for `cfg` into out_dir; returns its summary. `env` is the parent
    environment to start from (tests emulate other machines with it); the pins always override it."""
    from app.demo.numerics import pinned_environment

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "app.demo.train_child", json.dumps(cfg.as_dict()), str(out_dir)]
    if not progress:
        command.append("--quiet")
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(command, env=pinned_environment(env), cwd=root)
    try:
        code = child.wait()
    except BaseException:  # Ctrl-C / SIGTERM in the parent: the child must not train on alone
        child.terminate()
        child.wait(timeout=30)
        raise
    if code != 0:
        raise RuntimeError(f"demo training child exited with status {code}")
    return json.loads((out_dir / SUMMARY).read_text())


def main(argv: list[str]) -> int:
    from app.demo.numerics import enter_pinned_numerics

    enter_pinned_numerics()
    from app.demo.build import tokenizer_texts
    from app.demo.corpus import build_corpus
    from app.demo.model_config import DemoModelConfig
    from app.demo.tokenizer import train_tokenizer
    from app.demo.train import train_model

    values, out_dir = json.loads(argv[0]), Path(argv[1])
    values["biomedical_experts"] = tuple(values["biomedical_experts"])
    values["general_experts"] = tuple(values["general_experts"])
    cfg = DemoModelConfig(**values)
    corpus = build_corpus(cfg.corpus_seed)
    tokenizer = train_tokenizer(out_dir, vocab_size=cfg.vocab_size, texts=tokenizer_texts(corpus))
    summary = train_model(tokenizer, corpus, cfg, out_dir, progress="--quiet" not in argv)
    (out_dir / SUMMARY).write_text(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
