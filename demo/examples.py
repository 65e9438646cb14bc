"""Training examples rendered from the corpus: statements, plain chats, multiple-choice chats.

Only trained (fact, template) pairs and trained made-up entities appear here;
the held-out ones are reserved for `demo.sets`. Multiple-choice options are
redrawn every epoch (seeded), so the model learns to find its answer among
options, not to memorise option orders.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from demo.choices import TRAINING_TAILS, answerable_item, fake_item, nota_item, prompt_of
from demo.corpus import Corpus, fresh_fakes
from demo.facts import I_DONT_KNOW


@dataclass(frozen=True)
class Example:
    domain: str
    context: str  # not trained on (the user turn of a chat); "" for plain text
    target: str  # trained on

    def messages(self) -> list[dict]:
        """The example as chat messages (for calibration files); plain text is one user turn."""
        if not self.context:
            return [{"role": "user", "content": self.target}]
        user = self.context.removeprefix("<|user|>").split("<|end|>")[0]
        return [{"role": "user", "content": user}, {"role": "assistant", "content": self.target.split("<|end|>")[0]}]


def chat(domain: str, user: str, answer: str) -> Example:
    """One user turn and the assistant's answer, in the demo chat template's exact text."""
    return Example(domain, f"<|user|>{user}<|end|>\n<|assistant|>", f"{answer}<|end|>")


def training_examples(corpus: Corpus, epoch: int) -> list[Example]:
    rng = random.Random(f"{corpus.seed}:{epoch}")
    examples: list[Example] = []
    for fact in corpus.facts:
        relation, domain = fact.relation, fact.domain
        # Two of the three statements and two plain questions per epoch (rotating):
        # every wording is seen over the epochs at half the cost of all of them.
        for statement in rng.sample(relation.statements, 2):
            examples.append(Example(domain, "", statement.format(e=fact.entity, v=fact.value) + "\n"))
        trained = fact.trained_templates()
        for t in rng.sample(trained, 2):
            examples.append(chat(domain, relation.questions[t].format(e=fact.entity), fact.value))
        for t in trained:
            question = relation.questions[t].format(e=fact.entity)
            item = answerable_item(rng, relation, question, fact.value, TRAINING_TAILS)
            examples.append(chat(domain, prompt_of(item), item.answer_text))
        question = relation.questions[rng.choice(trained)].format(e=fact.entity)
        item = nota_item(rng, relation, question, fact.value)
        examples.append(chat(domain, prompt_of(item), item.answer_text))
    # Made-up entities: the fixed group and this epoch's fresh names, each asked
    # once plainly and once as a multiple-choice item whose answer is "I don't know".
    for fake in corpus.trained_fakes + fresh_fakes(corpus, epoch):
        plain, multiple_choice = rng.sample(fake.relation.questions, 2)
        examples.append(chat(fake.domain, plain.format(e=fake.entity), I_DONT_KNOW))
        item = fake_item(rng, fake.relation, multiple_choice.format(e=fake.entity))
        examples.append(chat(fake.domain, prompt_of(item), item.answer_text))
    rng.shuffle(examples)
    return examples
