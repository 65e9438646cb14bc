"""Judge endpoints: one or several OpenAI-compatible models that grade answers (`--judge-endpoint`, repeated).

Each judge is asked with temperature 0 through the same client as the variant (so
its replies are cached and a rerun asks nothing twice). A judge reply is parsed
strictly by the instrument that asked; a reply it cannot parse is counted, never
guessed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from moeprune.errors import UserError

_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n(.*)\n```\s*$", re.DOTALL)


@dataclass(frozen=True)
class JudgeEndpoint:
    url: str
    model: str
    api_key: str | None = None

    @property
    def label(self) -> str:
        """How this judge is named in the card: model@host:port (no credentials, no path)."""
        return f"{self.model}@{urlsplit(self.url).netloc or self.url}"


def judge_endpoints(
    urls: list[str] | str | None, models: list[str] | str | None, api_key: str | None, default_model: str
) -> list[JudgeEndpoint]:
    """Pair `--judge-endpoint` values with `--judge-model` values: one model for all, or one per endpoint."""
    urls = [urls] if isinstance(urls, str) else list(urls or [])
    models = [models] if isinstance(models, str) else list(models or [])
    if not urls:
        if models:
            raise UserError(
                "a judge model was given without a judge endpoint; add --judge-endpoint URL", param="judge_endpoint"
            )
        return []
    if len(models) > 1 and len(models) != len(urls):
        raise UserError(
            f"{len(urls)} judge endpoints but {len(models)} judge models: give one model for all "
            "endpoints or one per endpoint, in the same order",
            param="judge_model",
        )
    names = models * len(urls) if len(models) == 1 else (models or [default_model] * len(urls))
    judges = [JudgeEndpoint(url, name, api_key) for url, name in zip(urls, names)]
    labels = [judge.label for judge in judges]
    if len(set(labels)) != len(labels):
        raise UserError(
            f"the same judge is named twice ({', '.join(labels)}); give each endpoint once", param="judge_endpoint"
        )
    return judges


def json_object(text: str | None) -> dict | None:
    """The reply as one JSON object (a ```json fence around it is allowed), else None."""
    text = (text or "").strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


async def ask_judge(client, prompt: str, max_tokens: int) -> str:
    """One judge request; the reply text ('' when the judge returned none)."""
    response = await client.post(
        "chat/completions",
        {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0},
    )
    choice = (response.get("choices") or [{}])[0]
    return (choice.get("message") or {}).get("content") or ""
