"""The contract prompts of the task kinds, used where a task file brings no templates of its own.

A multiple-choice item is asked as the contract's question-and-options text (evaluators/prompts.py); a
summary as an instruction followed by the source. Few-shot examples come first, answered.
"""

from __future__ import annotations

from evaluators.items import MCItem, SummaryItem
from evaluators.prompts import render_completion_prompt, render_mc_prompt
from evaluators.requests import Prompt

SUMMARY_INSTRUCTION = "Summarise the following text in one or two sentences.\n\n"


def mc_prompt(task, item: MCItem, shots: list[MCItem]) -> Prompt:
    if task.template == "completion":
        parts = [render_completion_prompt(s.question, s.options) + f" {s.answer}\n\n" for s in shots]
        return Prompt(text="".join(parts) + render_completion_prompt(item.question, item.options))
    messages = []
    for shot in shots:
        messages += [
            {"role": "user", "content": render_mc_prompt(shot.question, shot.options)},
            {"role": "assistant", "content": shot.answer},
        ]
    messages.append({"role": "user", "content": render_mc_prompt(item.question, item.options)})
    return Prompt(messages=tuple(messages))


def summary_prompt(task, item: SummaryItem, shots: list[SummaryItem]) -> Prompt:
    if task.template == "completion":
        parts = [f"{SUMMARY_INSTRUCTION}{s.source}\nSummary: {s.reference}\n\n" for s in shots]
        return Prompt(text="".join(parts) + f"{SUMMARY_INSTRUCTION}{item.source}\nSummary:")
    messages = []
    for shot in shots:
        messages += [
            {"role": "user", "content": SUMMARY_INSTRUCTION + shot.source},
            {"role": "assistant", "content": shot.reference},
        ]
    messages.append({"role": "user", "content": SUMMARY_INSTRUCTION + item.source})
    return Prompt(messages=tuple(messages))
