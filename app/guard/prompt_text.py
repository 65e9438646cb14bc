"""The text a domain gate scores: what the user wrote (chat user turns, or a completion's string prompt)."""

from __future__ import annotations


def _content_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only the text ones
        return "\n".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        )
    return ""


def prompt_text(body: dict, chat: bool) -> str:
    """ "" when there is no text to judge (token-id prompts): the gate then lets the request pass."""
    if chat:
        return "\n".join(
            _content_text(m.get("content"))
            for m in body.get("messages") or []
            if isinstance(m, dict) and m.get("role") == "user"
        )
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return "\n".join(prompt)
    return ""
