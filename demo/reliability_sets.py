"""The labelled sets the flags are certified on: more held-out questions per domain.

A certificate needs hundreds of labelled answers per variant and domain
(docs/reliability.md). The utility sets (`demo.sets`) give 270 per domain; these
add 330 more from material training never shows, asked in forms the utility sets
do not use:
- each fact's *second* held-out template as an answerable question (150);
- each held-out made-up entity under two more templates (120; the utility set uses one);
- each none-of-the-above fact's *first* held-out template as a none-of-the-above item (60).

They are kept out of the demo model's cache key (`demo.recipe.corpus_digest` hashes only
`demo.sets.set_files`): the model never sees evaluation items, so adding labelled
items must not retrain it. Written beside the utility sets in `evaluators/sets/`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from demo.choices import answerable_item, fake_item, nota_item
from demo.corpus import TEMPLATES_PER_RELATION, Corpus, nota_facts
from demo.facts import DOMAINS
from demo.sets import FILE_PREFIX, ID_PREFIX

FAKE_EXTRA_TEMPLATES = 2


def reliability_records(corpus: Corpus, domain: str) -> list[dict]:
    rng = random.Random(f"{corpus.seed}:reliability:{domain}")
    prefix = f"{ID_PREFIX[domain]}_rel"
    items = []
    for fact in corpus.facts_of(domain):
        question = fact.relation.questions[fact.held_out_templates()[1]].format(e=fact.entity)
        items.append(("qa", answerable_item(rng, fact.relation, question, fact.value)))
    for fake in corpus.fakes_of(domain, held_out=True):
        for shift in range(1, FAKE_EXTRA_TEMPLATES + 1):
            template = (fake.index + shift) % TEMPLATES_PER_RELATION  # the utility set asks shift 0
            items.append(
                ("fake", fake_item(rng, fake.relation, fake.relation.questions[template].format(e=fake.entity)))
            )
    for fact in nota_facts(corpus, domain):
        question = fact.relation.questions[fact.held_out_templates()[0]].format(e=fact.entity)
        items.append(("nota", nota_item(rng, fact.relation, question, fact.value)))
    return [
        {
            "id": f"{prefix}_{kind}-{n:03d}",
            "question": item.question,
            "options": item.options,
            "answer": item.answer,
            "domain": domain,
            "kind": item.kind,
        }
        for n, (kind, item) in enumerate(items)
    ]


def reliability_set_files(corpus: Corpus) -> dict[str, str]:
    """File name -> exact JSONL text of each domain's reliability set."""
    return {
        f"{FILE_PREFIX[domain]}_reliability.jsonl": "".join(
            json.dumps(r, ensure_ascii=False) + "\n" for r in reliability_records(corpus, domain)
        )
        for domain in DOMAINS
    }


def main(argv: list[str] | None = None) -> int:
    """(Re)write the shipped labelled sets, multiple-choice and free-text:
    `python -m demo.reliability_sets evaluators/sets`."""
    import argparse

    from demo.corpus import build_corpus
    from demo.open_sets import open_set_files

    parser = argparse.ArgumentParser(prog="python -m demo.reliability_sets", description=main.__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("--corpus-seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = build_corpus(args.corpus_seed)
    for name, text in {**reliability_set_files(corpus), **open_set_files(corpus)}.items():
        (out / name).write_text(text, encoding="utf-8")
        print(out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
