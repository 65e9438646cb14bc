"""The deterministic demo corpus: facts, made-up entities, and what is held out.

`build_corpus(seed)` draws, for every relation, entity names (from the
relation's domain syllables) and a value per fact. Each fact is asked with six
question templates; two of them are HELD OUT for that fact (rotating, so every
template is still trained on the other facts) and become the evaluation
questions: one for the answerable set, one (for some facts) for the
none-of-the-above set. Made-up entities come in three disjoint kinds: a
fixed trained group, a FRESH group drawn anew for every epoch (`fresh_fakes`),
both taught to answer "I don't know", and the held-out ones, the evaluation's
fake entities, which never appear in training.

Why fresh fakes: with only a fixed group, a small model memorises "these ten
names -> I don't know" as just more facts, and refuses held-out made-up
entities little better than chance (measured: 35-45% after 64 epochs). Names
never seen twice can only be refused by noticing that the entity is unknown,
which is the behaviour the evaluation asks for.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from demo.facts import ENDINGS, RELATIONS, SYLLABLES, Relation

FACTS_PER_RELATION = 25  # 6 relations x 25 = 150 answerable evaluation items per domain
NOTA_FACTS_PER_RELATION = 10  # 60 none-of-the-above items per domain
TRAINED_FAKES_PER_RELATION = 10
FRESH_FAKES_PER_RELATION = 20  # new names every epoch
HELDOUT_FAKES_PER_RELATION = 10  # 60 made-up-entity evaluation items per domain
TEMPLATES_PER_RELATION = 6
HELD_OUT_TEMPLATES_PER_FACT = 2


@dataclass(frozen=True)
class Fact:
    relation: Relation
    entity: str
    value: str
    index: int  # position within the relation: decides which templates are held out

    @property
    def domain(self) -> str:
        return self.relation.domain

    def held_out_templates(self) -> tuple[int, int]:
        """(answerable-set template, none-of-the-above-set template) for this fact."""
        first = self.index % TEMPLATES_PER_RELATION
        return first, (first + 1) % TEMPLATES_PER_RELATION

    def trained_templates(self) -> list[int]:
        held = set(self.held_out_templates())
        return [t for t in range(TEMPLATES_PER_RELATION) if t not in held]


@dataclass(frozen=True)
class FakeEntity:
    relation: Relation
    entity: str
    index: int

    @property
    def domain(self) -> str:
        return self.relation.domain


@dataclass
class Corpus:
    seed: int
    facts: list[Fact] = field(default_factory=list)
    trained_fakes: list[FakeEntity] = field(default_factory=list)
    heldout_fakes: list[FakeEntity] = field(default_factory=list)

    def facts_of(self, domain: str) -> list[Fact]:
        return [f for f in self.facts if f.domain == domain]

    def fakes_of(self, domain: str, held_out: bool) -> list[FakeEntity]:
        fakes = self.heldout_fakes if held_out else self.trained_fakes
        return [f for f in fakes if f.domain == domain]

    def trained_entities(self) -> set[str]:
        """Entities of facts and of the fixed trained fakes (fresh fakes are drawn per epoch)."""
        return {f.entity for f in self.facts} | {f.entity for f in self.trained_fakes}

    def all_entities(self) -> set[str]:
        return self.trained_entities() | {f.entity for f in self.heldout_fakes}


class NameMaker:
    """Unique made-up names: two domain syllables, a third, and an ending of the entity kind."""

    def __init__(self, rng: random.Random, taken: set[str] | None = None, avoid_parts: set[str] | None = None):
        self.rng = rng
        self.used: set[str] = set(taken or ())
        # names that must not even occur inside a new name (a shared prefix would leak tokens)
        self.avoid_parts = {part.lower() for part in avoid_parts or ()}

    def make(self, domain: str, kind: str) -> str:
        onsets, middles = SYLLABLES[domain]
        for _ in range(10_000):
            name = self.rng.choice(onsets) + self.rng.choice(middles) + self.rng.choice(ENDINGS[kind])
            if self.rng.random() < 0.5:
                name = self.rng.choice(onsets) + self.rng.choice(middles) + name
            name = name.capitalize()
            if name not in self.used and not any(part in name.lower() for part in self.avoid_parts):
                self.used.add(name)
                return name
        raise RuntimeError(f"ran out of distinct {domain} {kind} names")  # syllable tables too small


def build_corpus(seed: int = 0) -> Corpus:
    """Everything the demo knows and asks, drawn deterministically from `seed`."""
    rng = random.Random(seed)
    names = NameMaker(rng)
    corpus = Corpus(seed=seed)
    for relation in RELATIONS:
        for index in range(FACTS_PER_RELATION):
            entity = names.make(relation.domain, relation.entity_kind)
            corpus.facts.append(Fact(relation, entity, rng.choice(relation.values), index))
        for index in range(TRAINED_FAKES_PER_RELATION):
            corpus.trained_fakes.append(FakeEntity(relation, names.make(relation.domain, relation.entity_kind), index))
        for index in range(HELDOUT_FAKES_PER_RELATION):
            corpus.heldout_fakes.append(FakeEntity(relation, names.make(relation.domain, relation.entity_kind), index))
    return corpus


def nota_facts(corpus: Corpus, domain: str) -> list[Fact]:
    """The facts whose second held-out template becomes a none-of-the-above item."""
    return [f for f in corpus.facts_of(domain) if f.index < NOTA_FACTS_PER_RELATION]


def fresh_fakes(corpus: Corpus, epoch: int) -> list[FakeEntity]:
    """This epoch's new made-up entities: never a fact, a fixed fake or a held-out fake."""
    names = NameMaker(
        random.Random(f"{corpus.seed}:fresh-fakes:{epoch}"),
        taken=corpus.all_entities(),
        avoid_parts={f.entity for f in corpus.heldout_fakes},
    )
    return [
        FakeEntity(relation, names.make(relation.domain, relation.entity_kind), index)
        for relation in RELATIONS
        for index in range(FRESH_FAKES_PER_RELATION)
    ]
