"""Thinking control: what a run tells a reasoning model's chat template, and the answer split from its reasoning.

Models that think by default (Qwen3, Nemotron-3-Nano, gpt-oss) spend a short
answer budget thinking and come back unparsed unless the request says
otherwise. Two request fields control it, sent with every chat request of a
task (generations and scoring alike, so both render the same prompt):
- `chat_template_kwargs` (vLLM): keyword arguments of the chat template, e.g.
  `{"enable_thinking": false}` for Qwen3 / Nemotron templates;
- `reasoning_effort` (the OpenAI field; gpt-oss reads it, and vLLM maps
  `"none"` to `enable_thinking: false` for templates that branch on that).
A task's own values override the run's, key by key; the card records what was
sent. Completion prompts have no chat template, so nothing is added to them.

Before an answer is parsed, its reasoning is removed: the engine's separate
`reasoning` / `reasoning_content` field when its reasoning parser filled it,
else the family's markers in the text (`<think>...</think>`, also with the
opening tag already in the prompt, and gpt-oss' harmony channels). An answer
cut off while still thinking has no answer at all (unparsed, never a guess at
the reasoning's letters).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from moeprune.errors import UserError

# The values OpenAI's API and vLLM accept for reasoning_effort.
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")

THINK_CLOSE = "</think>"
# gpt-oss harmony: `<|channel|>analysis<|message|>...<|end|>` then `<|channel|>final<|message|>ANSWER`.
HARMONY_FINAL = re.compile(r"<\|channel\|>\s*final\s*<\|message\|>(.*?)(?:<\|return\|>|<\|end\|>|$)", re.DOTALL)
HARMONY_CHANNEL = "<|channel|>"


def parse_chat_template_kwargs(text: str | None, where: str = "--chat-template-kwargs") -> dict | None:
    """A JSON object (`'{"enable_thinking": false}'`) -> dict; a clear UserError otherwise."""
    if text is None or text == "":
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{where}: not valid JSON ({exc.msg} at character {exc.pos}); "
            "pass an object such as '{\"enable_thinking\": false}'"
        ) from None
    return check_chat_template_kwargs(value, where)


def check_chat_template_kwargs(value, where: str) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UserError(
            f"{where}: expected a JSON object of template arguments, got {type(value).__name__}; "
            "e.g. '{\"enable_thinking\": false}'"
        )
    return dict(value)


def check_reasoning_effort(value: str | None, where: str = "--reasoning-effort") -> str | None:
    if value is None:
        return None
    if value not in REASONING_EFFORTS:
        raise UserError(f"{where}: {value!r} is not a reasoning effort; valid: {', '.join(REASONING_EFFORTS)}")
    return value


@dataclass(frozen=True)
class ThinkingControl:
    """The thinking fields a chat request carries (None: not sent, the template's default applies)."""

    chat_template_kwargs: dict | None = None
    reasoning_effort: str | None = None

    def __post_init__(self):
        check_chat_template_kwargs(self.chat_template_kwargs, "chat_template_kwargs")
        check_reasoning_effort(self.reasoning_effort, "reasoning_effort")

    def overridden_by(
        self, chat_template_kwargs: dict | None = None, reasoning_effort: str | None = None
    ) -> ThinkingControl:
        """A task's settings over the run's: template arguments merged key by key, the effort replaced."""
        kwargs = self.chat_template_kwargs
        if chat_template_kwargs is not None:
            kwargs = {**(kwargs or {}), **chat_template_kwargs}
        return ThinkingControl(kwargs, reasoning_effort if reasoning_effort is not None else self.reasoning_effort)

    def request_fields(self, is_chat: bool) -> dict:
        """The fields to add to a request body (completion prompts render no template: none)."""
        if not is_chat:
            return {}
        fields = {}
        if self.chat_template_kwargs is not None:
            fields["chat_template_kwargs"] = dict(self.chat_template_kwargs)
        if self.reasoning_effort is not None:
            fields["reasoning_effort"] = self.reasoning_effort
        return fields

    def as_card(self) -> dict:
        """What the card records as sent with the task's chat requests."""
        return {"chat_template_kwargs": self.chat_template_kwargs, "reasoning_effort": self.reasoning_effort}


def task_thinking(run: ThinkingControl, task) -> ThinkingControl:
    """The run's control overridden by the task file's `chat_template_kwargs` / `reasoning_effort`."""
    return run.overridden_by(task.chat_template_kwargs, task.reasoning_effort)


@dataclass(frozen=True)
class SplitAnswer:
    answer: str  # what gets parsed
    reasoning: str | None  # None: the response carried no reasoning


def split_reasoning(text: str | None, reasoning_field: str | None = None) -> SplitAnswer:
    """The answer without its reasoning: the engine's reasoning field, else the family's markers in the text."""
    text = text or ""
    if reasoning_field:
        # The engine's reasoning parser already separated them; the content may still hold a
        # stray closing tag when the template opened the block in the prompt.
        return SplitAnswer(text.split(THINK_CLOSE)[-1], reasoning_field)
    if HARMONY_CHANNEL in text:
        finals = HARMONY_FINAL.findall(text)
        head = text.split("<|channel|>final", 1)[0]
        return SplitAnswer(finals[-1] if finals else "", head)
    if THINK_CLOSE in text:
        # Either a whole <think>...</think> block, or the template put `<think>` in the prompt
        # and the generation holds only the rest of it: everything up to the last `</think>`.
        reasoning, _, answer = text.rpartition(THINK_CLOSE)
        return SplitAnswer(answer, reasoning.replace("<think>", "", 1))
    if "<think>" in text:
        before, _, reasoning = text.partition("<think>")
        return SplitAnswer(before, reasoning)  # cut off while thinking: no answer after it
    return SplitAnswer(text, None)


def add_thinking_arguments(parser) -> None:
    """`moeprune eval`'s thinking flags (a task file's own fields override them per task)."""
    parser.add_argument(
        "--chat-template-kwargs",
        metavar="JSON",
        help="JSON object passed to the chat template with every chat request, e.g. "
        "'{\"enable_thinking\": false}' (Qwen3, Nemotron); a task's own values override",
    )
    parser.add_argument(
        "--reasoning-effort",
        choices=REASONING_EFFORTS,
        help="reasoning_effort sent with every chat request (gpt-oss; vLLM maps 'none' to "
        "enable_thinking false); a task's own value overrides",
    )


def thinking_from_args(args) -> ThinkingControl:
    return ThinkingControl(
        parse_chat_template_kwargs(args.chat_template_kwargs), check_reasoning_effort(args.reasoning_effort)
    )
