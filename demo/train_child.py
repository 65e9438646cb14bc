"""Train the demo model in child processes whose numerics are pinned (see `demo.numerics`).

    python -m demo.train_child CONFIG_JSON OUT_DIR RANK [--quiet]

The parent (`train_in_child`) sets the pinned environment, so torch loads with
it, and starts the recipe's ranks (`demo.rank_sync`). Rank 0 trains the
tokenizer, every rank then trains its rows of each batch, and rank 0 saves the
model and writes the training summary to OUT_DIR/train_summary.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

SUMMARY = "train_summary.json"
RENDEZVOUS = ".rank-rendezvous"


def train_in_child(cfg, out_dir: Path, progress: bool = True, env: dict | None = None) -> dict:
    """Run the pinned training ranks for `cfg` into out_dir; returns rank 0's summary. `env` is the parent
    environment to start from (tests emulate other machines with it); the pins always override it.

    If any rank fails, the others are stopped at once (a survivor would otherwise wait in a collective
    until the process group's timeout); Ctrl-C / SIGTERM in the parent stops them all."""
    from demo.rank_sync import RANKS

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RENDEZVOUS).unlink(missing_ok=True)
    root = Path(__file__).resolve().parents[1]
    children = []
    try:
        for rank in range(RANKS):
            command = [sys.executable, "-m", "demo.train_child", json.dumps(cfg.as_dict()), str(out_dir), str(rank)]
            if not progress:
                command.append("--quiet")
            children.append(subprocess.Popen(command, env=rank_environment(env), cwd=root))
        failed = _wait_all(children)
    finally:  # interrupted, or one rank failed: none may train on alone
        _stop(children)
        (out_dir / RENDEZVOUS).unlink(missing_ok=True)
    if failed:
        told = ", ".join(
            f"rank {rank} exited with status {code}" + (f" (signal {-code})" if code < 0 else "")
            for rank, code in failed
        )
        raise RuntimeError(f"demo training failed: {told}; the other ranks were stopped")
    return json.loads((out_dir / SUMMARY).read_text())


def rank_environment(env: dict | None) -> dict:
    """The pinned numerics, and gloo on the loopback interface: the ranks are on one machine, and gloo would
    otherwise pick an interface by resolving the hostname, which fails or picks an unroutable address on
    hosts without a resolvable name (containers, offline CI). Not part of the numerics (nor the cache key)."""
    from demo.numerics import pinned_environment

    return {**pinned_environment(env), "GLOO_SOCKET_IFNAME": "lo"}


def _wait_all(children) -> list[tuple[int, int]]:
    """Wait until every child has exited or one has failed; the (rank, status) of those that failed."""
    while True:
        codes = [child.poll() for child in children]
        failed = [(rank, code) for rank, code in enumerate(codes) if code not in (None, 0)]
        if failed or all(code == 0 for code in codes):
            return failed
        time.sleep(0.2)


def _stop(children) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main(argv: list[str]) -> int:
    from demo.numerics import enter_pinned_numerics

    enter_pinned_numerics()
    from transformers import PreTrainedTokenizerFast

    from demo.corpus import build_corpus
    from demo.model_config import DemoModelConfig
    from demo.rank_sync import RANKS, RankSync
    from demo.recipe import tokenizer_texts
    from demo.tokenizer import train_tokenizer
    from demo.train import train_model

    values, out_dir, rank = json.loads(argv[0]), Path(argv[1]), int(argv[2])
    values["biomedical_experts"] = tuple(values["biomedical_experts"])
    values["general_experts"] = tuple(values["general_experts"])
    cfg = DemoModelConfig(**values)
    sync = RankSync(rank, RANKS, out_dir / RENDEZVOUS)
    try:
        corpus = build_corpus(cfg.corpus_seed)
        if rank == 0:  # one tokenizer, trained once
            train_tokenizer(out_dir, vocab_size=cfg.vocab_size, texts=tokenizer_texts(corpus))
        sync.barrier()
        # Every rank reads it back, so all of them encode with the same object built the same way: the
        # replica check cannot see ranks that encode differently (they would still sum to equal steps).
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(out_dir))
        summary = train_model(tokenizer, corpus, cfg, out_dir, sync, progress="--quiet" not in argv)
        sync.barrier()  # rank 0 has saved
    finally:
        sync.close()
    if rank == 0:
        (out_dir / SUMMARY).write_text(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
