"""A task file's prompt, rendered for one item: chat messages (or a completion text) with worked examples.

Templates name item fields in braces, `{question}`; any other brace (a JSON example such as
`{'cop': ...}`) is left as written, so task files need no escaping. Fields, by item type:
- multiple choice: `question`, `options` ("A. text" lines), `letters` ("A, B, C, or D"), plus the
  loader's extra fields (PubMedQA: `context`, `question_text`);
- generation: the loader's fields (MedINST32: `instruction`, `input`; Med-HALT: `input`, ...);
- summarisation: `source`.
A worked example's answer is `{answer}` in the assistant template: the option letter (or, for a task
whose answer is a word, the option text), a generation item's target, a summary's reference.
The contract style (evaluators/prompts.py's fixed MC prompt) is not rendered here: `render` returns None.
"""

from __future__ import annotations

import re

from evaluators.items import GenItem, MCItem, SummaryItem
from evaluators.requests import Prompt
from moeprune.errors import UserError

PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def _letters(options: dict[str, str]) -> str:
    letters = list(options)
    return letters[0] if len(letters) == 1 else f"{', '.join(letters[:-1])}, or {letters[-1]}"


def item_fields(item) -> dict[str, str]:
    if isinstance(item, MCItem):
        return {
            "question": item.question,
            "options": "\n".join(f"{k}. {v}" for k, v in item.options.items()),
            "letters": _letters(item.options),
            **item.fields,
        }
    if isinstance(item, GenItem):
        return dict(item.fields)
    if isinstance(item, SummaryItem):
        return {"source": item.source}
    raise TypeError(f"not an evaluation item: {type(item).__name__}")


def shot_answer(task, item) -> str:
    if isinstance(item, MCItem):
        return item.answer_text if task.answer.extract == "word" else item.answer
    if isinstance(item, GenItem):
        return item.target
    return item.reference


def fill(template: str, fields: dict[str, str], task_name: str) -> str:
    def value(match):
        name = match.group(1)
        if name not in fields:
            raise UserError(
                f"task {task_name}: the prompt names {{{name}}}, which its items lack; "
                f"fields: {', '.join(sorted(fields))}"
            )
        return str(fields[name])

    return PLACEHOLDER.sub(value, template)


def _turns(task, fields: dict[str, str], answer: str | None) -> list[dict]:
    turns = [{"role": "user", "content": fill(task.prompt.user, fields, task.name)}]
    if answer is not None:
        turns.append(
            {"role": "assistant", "content": fill(task.prompt.assistant, {**fields, "answer": answer}, task.name)}
        )
    return turns


def render(task, item, shots: list) -> Prompt | None:
    """The prompt of `item` under the task's `messages` style (None for the contract style)."""
    if task.prompt.style != "messages":
        return None
    fields = item_fields(item)
    messages: list[dict] = []
    if task.prompt.system:
        system = fill(task.prompt.system, fields, task.name).strip()
        if system:  # MedINST's instruction is the system message; an item without one sends none
            messages.append({"role": "system", "content": system})
    for example in task.prompt.few_shot.examples:
        messages += _turns(task, {k: v for k, v in example.items() if k != "answer"}, example["answer"])
    for shot in shots:
        messages += _turns(task, item_fields(shot), shot_answer(task, shot))
    for user, assistant in getattr(item, "history", ()):
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    messages += _turns(task, fields, None)
    if task.prompt.template == "completion":
        return Prompt(text="\n\n".join(m["content"] for m in messages))
    return Prompt(messages=tuple(messages))


def check_templates(task, item) -> None:
    """Fail before any request when a template names a field the task's items lack."""
    render(task, item, [])
