"""Evaluation sets in the project's JSONL formats, and a task file naming them."""

from __future__ import annotations

import json

import pytest

CAPITALS = [
    ("France", "Paris"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Germany", "Berlin"),
    ("Japan", "Tokyo"),
    ("Egypt", "Cairo"),
    ("Peru", "Lima"),
    ("Kenya", "Nairobi"),
]
ORGANS = [
    ("insulin", "Pancreas"),
    ("bile", "Liver"),
    ("urine", "Kidney"),
    ("tears", "Lacrimal gland"),
    ("saliva", "Salivary gland"),
    ("sweat", "Skin"),
    ("thyroxine", "Thyroid"),
    ("melatonin", "Pineal gland"),
]


def _write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _mc(question, right, wrongs, position, **extra):
    options = list(wrongs)
    options.insert(position % (len(wrongs) + 1), right)
    letters = "ABCD"
    return {
        "question": question,
        "options": dict(zip(letters, options)),
        "answer": letters[options.index(right)],
        **extra,
    }


@pytest.fixture(scope="session")
def eval_sets(tmp_path_factory):
    """Small sets: bio/general QA, fake, NOTA and summaries, plus tasks.yaml naming them."""
    root = tmp_path_factory.mktemp("eval-sets")
    general = [
        _mc(
            f"What is the capital of {country}?",
            city,
            ["Oslo", "Quito", "Hanoi"],
            i,
            id=f"g{i}",
            domain="general",
            kind="answerable",
        )
        for i, (country, city) in enumerate(CAPITALS)
    ]
    bio = [
        _mc(
            f"Which organ or gland produces {what}?",
            organ,
            ["Spleen", "Stomach", "Lung"],
            i,
            id=f"b{i}",
            domain="biomedical",
            kind="answerable",
        )
        for i, (what, organ) in enumerate(ORGANS)
    ]
    fake = [
        {
            "id": f"f{i}",
            "question": f"What does the Zorvanite gland number {i} secrete?",
            "options": {"A": "Insulin", "B": "Bile", "C": "Mucus", "D": "I don't know"},
            "answer": "D",
            "domain": "biomedical",
            "kind": "fake",
        }
        for i in range(6)
    ]
    nota = [
        {
            "id": f"n{i}",
            "question": f"Which of these is a mammal (set {i})?",
            "options": {"A": "Trout", "B": "Sparrow", "C": "Frog", "D": "None of the above"},
            "answer": "D",
            "domain": "general",
            "kind": "nota",
        }
        for i in range(6)
    ]
    summaries = [
        {
            "id": f"s{i}",
            "source": f"Metformin is used for type 2 diabetes. Trial {i} enrolled adults.",
            "reference": "Metformin treats type 2 diabetes.",
        }
        for i in range(3)
    ]
    for name, rows in (
        ("bio.jsonl", bio),
        ("general.jsonl", general),
        ("fake.jsonl", fake),
        ("nota.jsonl", nota),
        ("summaries.jsonl", summaries),
    ):
        _write(root / name, rows)
    (root / "tasks.yaml").write_text(
        "tasks:\n"
        "  - {name: t_bio, format: jsonl, path: bio.jsonl, domain: biomedical}\n"
        "  - {name: t_general, format: jsonl, path: general.jsonl, domain: general, template: completion}\n"
        "  - {name: t_fake, format: jsonl, path: fake.jsonl, domain: biomedical}\n"
        "  - {name: t_nota, format: jsonl, path: nota.jsonl, domain: general, few_shot: 1}\n"
        "  - {name: t_sum, format: summaries, path: summaries.jsonl, domain: biomedical, max_tokens: 24}\n"
    )
    return root
