"""The shipped evaluation sets, drawn from the corpus's held-out part.

Answerable items ask each fact with its first held-out template; none-of-the-
above items ask some facts with their second held-out template and leave the
correct value out of the options; fake items ask the held-out made-up
entities, which training never mentions. Written to `evaluators/sets/` in the
contract's item format (docs/contracts.md).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from demo.choices import answerable_item, fake_item, nota_item
from demo.corpus import TEMPLATES_PER_RELATION, Corpus, nota_facts
from demo.facts import BIOMEDICAL, DOMAINS
from evaluators.items import MCItem

# file stem prefix and task-name prefix per domain (docs/contracts.md)
FILE_PREFIX = {BIOMEDICAL: "biomedical", "general": "general"}
ID_PREFIX = {BIOMEDICAL: "bio", "general": "general"}
SET_KINDS = ("qa", "fake", "nota")


def evaluation_items(corpus: Corpus, domain: str, set_kind: str) -> list[MCItem]:
    rng = random.Random(f"{corpus.seed}:sets:{domain}:{set_kind}")
    if set_kind == "qa":
        return [
            answerable_item(
                rng, f.relation, f.relation.questions[f.held_out_templates()[0]].format(e=f.entity), f.value
            )
            for f in corpus.facts_of(domain)
        ]
    if set_kind == "nota":
        return [
            nota_item(rng, f.relation, f.relation.questions[f.held_out_templates()[1]].format(e=f.entity), f.value)
            for f in nota_facts(corpus, domain)
        ]
    if set_kind == "fake":
        return [
            fake_item(rng, f.relation, f.relation.questions[f.index % TEMPLATES_PER_RELATION].format(e=f.entity))
            for f in corpus.fakes_of(domain, held_out=True)
        ]
    raise ValueError(f"unknown set kind {set_kind!r}; known: {', '.join(SET_KINDS)}")


def item_records(corpus: Corpus, domain: str, set_kind: str) -> list[dict]:
    prefix = f"{ID_PREFIX[domain]}_{set_kind}"
    return [
        {
            "id": f"{prefix}-{n:03d}",
            "question": item.question,
            "options": item.options,
            "answer": item.answer,
            "domain": domain,
            "kind": item.kind,
        }
        for n, item in enumerate(evaluation_items(corpus, domain, set_kind))
    ]


def set_files(corpus: Corpus) -> dict[str, str]:
    """File name -> exact JSONL text, for every shipped set."""
    files = {}
    for domain in DOMAINS:
        for set_kind in SET_KINDS:
            lines = [json.dumps(r, ensure_ascii=False) for r in item_records(corpus, domain, set_kind)]
            files[f"{FILE_PREFIX[domain]}_{set_kind}.jsonl"] = "\n".join(lines) + "\n"
    return files


def write_sets(corpus: Corpus, out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in set_files(corpus).items():
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    return written


def main(argv: list[str] | None = None) -> int:
    """The explicit step that (re)writes the shipped sets: `python -m demo.sets evaluators/sets`."""
    import argparse

    from demo.corpus import build_corpus

    parser = argparse.ArgumentParser(prog="python -m demo.sets", description=main.__doc__)
    parser.add_argument("out_dir", help="where to write the JSONL sets (the shipped ones: evaluators/sets)")
    parser.add_argument("--corpus-seed", type=int, default=0)
    args = parser.parse_args(argv)
    for path in write_sets(build_corpus(args.corpus_seed), args.out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
