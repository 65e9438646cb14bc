"""The free-text labelled sets: held-out questions asked plainly, the way an app asks them.

Apps send plain questions, not the contract's multiple-choice prompt, and a certificate holds only for
traffic like its calibration set (docs/reliability.md). These sets put free-text answers into every
variant's calibration: per domain,
- each fact asked with its first held-out template and no options (150): right when the answer is the
  fact's value (exact match after normalisation, evaluators/answers.py), wrong otherwise;
- each held-out made-up entity asked with a fourth template (60; the multiple-choice sets use three):
  right when the answer declines (moeprune/reliability/refusal.py).
The demo model was trained to answer plain questions with the bare value (demo/examples.py), so the
reference-match label is exact for answers in that form; `bench/free_text_labels.md` reports how often
it agrees with a hand-checked sample. Like the reliability sets, these are kept out of the model's cache key.
"""

from __future__ import annotations

import json

from demo.corpus import TEMPLATES_PER_RELATION, Corpus
from demo.facts import DOMAINS, I_DONT_KNOW
from demo.sets import FILE_PREFIX, ID_PREFIX

FAKE_TEMPLATE_SHIFT = 3  # the utility set asks shift 0, the reliability set shifts 1 and 2


def open_records(corpus: Corpus, domain: str) -> list[dict]:
    """One domain's free-text items: {id, question, answer, domain, kind}, answerable first."""
    rows = [
        ("answerable", fact.relation.questions[fact.held_out_templates()[0]].format(e=fact.entity), fact.value)
        for fact in corpus.facts_of(domain)
    ]
    rows += [
        (
            "fake",
            fake.relation.questions[(fake.index + FAKE_TEMPLATE_SHIFT) % TEMPLATES_PER_RELATION].format(e=fake.entity),
            I_DONT_KNOW,
        )
        for fake in corpus.fakes_of(domain, held_out=True)
    ]
    return [
        {
            "id": f"{ID_PREFIX[domain]}_open-{n:03d}",
            "question": question,
            "answer": answer,
            "domain": domain,
            "kind": kind,
        }
        for n, (kind, question, answer) in enumerate(rows)
    ]


def open_set_files(corpus: Corpus) -> dict[str, str]:
    """File name -> exact JSONL text of each domain's free-text set."""
    return {
        f"{FILE_PREFIX[domain]}_open.jsonl": "".join(
            json.dumps(r, ensure_ascii=False) + "\n" for r in open_records(corpus, domain)
        )
        for domain in DOMAINS
    }
