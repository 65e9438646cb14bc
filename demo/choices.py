"""Four-option multiple-choice items in the contract's prompt format.

The same builders make the training chats and the shipped evaluation items,
so the model is trained on exactly the form it is tested on. Option kinds:
- answerable: the correct value among three distractors of the same relation;
  sometimes the last option is "I don't know" or "None of the above" as a
  distractor, so neither option alone can mean "answer me";
- fake (made-up entity): three values and "I don't know", which is correct;
- nota: three wrong values and "None of the above", which is correct.
The abstaining options always sit last (D), as in most exams; values are shuffled.
"""

from __future__ import annotations

import random

from demo.facts import I_DONT_KNOW, NONE_OF_THE_ABOVE, Relation
from evaluators.items import MCItem
from evaluators.prompts import render_mc_prompt

LETTERS = ("A", "B", "C", "D")


def prompt_of(item: MCItem) -> str:
    return render_mc_prompt(item.question, item.options)


def _lettered(values: list[str]) -> dict[str, str]:
    return dict(zip(LETTERS, values))


EVALUATION_TAILS = (None, I_DONT_KNOW, NONE_OF_THE_ABOVE)
# Training shows a known fact beside an abstain option more often than the
# evaluation does: measured, a model trained on the evaluation's mix answered
# the held-out questions right whenever no abstain option was offered, and
# abstained on a quarter of those that offered one.
TRAINING_TAILS = (None, I_DONT_KNOW, I_DONT_KNOW, NONE_OF_THE_ABOVE, NONE_OF_THE_ABOVE)


def answerable_item(
    rng: random.Random, relation: Relation, question: str, value: str, tails: tuple = EVALUATION_TAILS
) -> MCItem:
    """The value among distractors; the last option may be an abstain option (drawn from `tails`)."""
    others = [v for v in relation.values if v != value]
    tail = rng.choice(tails)
    values = rng.sample(others, 3 if tail is None else 2) + [value]
    rng.shuffle(values)
    if tail is not None:
        values.append(tail)
    options = _lettered(values)
    return MCItem("", question, options, LETTERS[values.index(value)], "answerable")


def fake_item(rng: random.Random, relation: Relation, question: str) -> MCItem:
    values = rng.sample(list(relation.values), 3) + [I_DONT_KNOW]
    return MCItem("", question, _lettered(values), "D", "fake")


def nota_item(rng: random.Random, relation: Relation, question: str, value: str) -> MCItem:
    others = [v for v in relation.values if v != value]
    values = rng.sample(others, 3) + [NONE_OF_THE_ABOVE]
    return MCItem("", question, _lettered(values), "D", "nota")
