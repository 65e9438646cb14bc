"""The study's metrics for free-generation tasks (MedINST32, Med-HALT's JSON answers), as pure functions.

Per item: ROUGE-L with Porter stemming (the `rouge-score` package, what the study's HF `evaluate` rouge
runs), word F1 and exact match over SQuAD-normalised text, entity F1 over `[bracketed]` spans, multi-label
F1 over comma-separated labels. Over a corpus: macro-F1 of the normalised answers (classification), BIO
F1 (macro-F1 over the `[B]`/`[I]`/`[O]` tags, aligned to the reference's length) and BIOSSES' MSE.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from functools import cache

from moeprune.errors import UserError

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, punctuation and the articles a/an/the removed, whitespace collapsed."""
    return " ".join(_ARTICLES.sub(" ", str(text).lower().translate(_PUNCTUATION)).split())


def exact_match(prediction: str, reference: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(reference)


def word_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    overlap = sum((Counter(pred) & Counter(ref)).values())
    if overlap == 0:
        return float(not pred and not ref)
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


@cache
def _rouge_scorer():
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise UserError(
            "ROUGE-L with stemming needs the rouge-score package: pip install 'moe-prune-serve[eval]'"
        ) from None
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_stemmed(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure over lower-cased alphanumeric tokens, tokens longer than 3 Porter-stemmed."""
    return _rouge_scorer().score(reference, prediction)["rougeL"].fmeasure


def bracketed_entities(text: str) -> list[str]:
    """The normalised text of every top-level `[...]` span; brackets nested inside stay in the entity."""
    entities, depth, current = [], 0, []
    for char in str(text):
        if char == "[":
            if depth:
                current.append(char)
            depth += 1
        elif char == "]":
            if not depth:
                continue  # a stray closing bracket opens nothing
            depth -= 1
            if depth:
                current.append(char)
            else:
                entities.append(normalize_answer("".join(current)))
                current = []
        elif depth:
            current.append(char)
    return entities


def set_f1(reference: Sequence[str], prediction: Sequence[str]) -> float:
    """F1 of two multisets; two empty ones agree (1.0)."""
    if not reference and not prediction:
        return 1.0
    true, pred = Counter(reference), Counter(prediction)
    tp = sum((true & pred).values())
    if tp == 0:
        return 0.0
    precision, recall = tp / sum(pred.values()), tp / sum(true.values())
    return 2 * precision * recall / (precision + recall)


def entity_f1(prediction: str, reference: str) -> float:
    return set_f1(bracketed_entities(reference), bracketed_entities(prediction))


def labels(text: str) -> list[str]:
    return [label.strip().lower() for label in str(text).split(",") if label.strip()]


def multilabel_f1(prediction: str, reference: str) -> float:
    return set_f1(labels(reference), labels(prediction))


def macro_f1(references: Sequence[str], predictions: Sequence[str]) -> float | None:
    """Mean over the reference labels of each label's F1 (a label never predicted right scores 0)."""
    if not references:
        return None
    scores = []
    for label in sorted(set(references)):
        tp = sum(r == label and p == label for r, p in zip(references, predictions))
        fp = sum(r != label and p == label for r, p in zip(references, predictions))
        fn = sum(r == label and p != label for r, p in zip(references, predictions))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def classification_macro_f1(predictions: Sequence[str], references: Sequence[str]) -> float | None:
    return macro_f1([normalize_answer(r) for r in references], [normalize_answer(p) for p in predictions])


BIO_TAG = re.compile(r"\[B\]|\[I\]|\[O\]")
MISSING_TAG = "N"  # stands in for a tag the prediction lacks: wrong against every reference tag


def bio_f1(predictions: Sequence[str], references: Sequence[str]) -> float | None:
    """Macro-F1 over the reference's BIO tags, each prediction padded or cut to its reference's length."""
    gold, pred = [], []
    for prediction, reference in zip(predictions, references):
        tags, guess = BIO_TAG.findall(reference), BIO_TAG.findall(prediction)
        guess = (guess + [MISSING_TAG] * len(tags))[: len(tags)]
        gold += tags
        pred += guess
    return macro_f1(gold, pred)


SIMILARITY_RANGE = range(0, 6)  # BIOSSES scores 0-5
UNREADABLE_PENALTY = (0, 5)  # the study's worst case: an unreadable score counts as 0 vs 5


def similarity_score(text: str) -> int | None:
    """The one integer 0-5 a BIOSSES answer (or reference) holds, else None."""
    numbers = {int(n) for n in re.findall(r"\d+", str(text))}
    if len(numbers) != 1:
        return None
    (number,) = numbers
    return number if number in SIMILARITY_RANGE else None


def mse(predictions: Sequence[str], references: Sequence[str]) -> float | None:
    """Mean squared error of the 0-5 scores; a pair either side of which is unreadable costs 25."""
    if not references:
        return None
    total = 0
    for prediction, reference in zip(predictions, references):
        gold, guess = similarity_score(reference), similarity_score(prediction)
        if gold is None or guess is None:
            gold, guess = UNREADABLE_PENALTY
        total += (gold - guess) ** 2
    return total / len(references)
