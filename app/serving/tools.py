"""Which variants may serve a function-calling request.

A request uses tools when it defines `tools` or carries a conversation with tool
calls in it (an assistant's `tool_calls`, a `tool` message): a variant whose
engine has no tool parser or whose chat template cannot render tools would fail
or answer nonsense, so such a request only reaches variants declared `tools: true`.

- Named variant without tools: 400 naming it and the fix, before anything is forwarded.
- Experiment: 400 unless every arm takes tools, checked before an arm is drawn. Refusing only the
  users whose sticky hash lands on a tool-less arm would split the same app's traffic by user and
  skew the arms' statistics; an experiment either serves function calling or it does not.
- A guard's fallback (domain gate, cascade) without tools is skipped for such a request (app/guard/run.py):
  the assigned variant answers, as when the fallback is down, and the answer says so.
"""

from __future__ import annotations

from app.config.variants import GatewayConfig
from app.errors import OpenAIError


def tool_use(body: dict) -> str | None:
    """The field that makes `body` a function-calling request (the error's `param`), or None."""
    if body.get("tools"):
        return "tools"
    for i, message in enumerate(body.get("messages") or ()):
        if message.get("tool_calls"):
            return f"messages.{i}.tool_calls"
        if message.get("role") == "tool":
            return f"messages.{i}.role"
    return None


def takes_tools(config: GatewayConfig, variant: str) -> bool:
    return config.variants[variant].tools


def require_tools(config: GatewayConfig, body: dict) -> None:
    """Refuse a function-calling request for a `model` that cannot serve it (unknown names are left to routing)."""
    param = tool_use(body)
    if param is None:
        return
    model = str(body.get("model") or "")
    experiment = config.experiments.get(model)
    variants = [model] if model in config.variants else list(experiment.arms) if experiment else []
    without = [name for name in variants if not takes_tools(config, name)]
    if not without:
        return
    where = f"experiment {model!r} has arm(s) without function calling: " if experiment else "variant "
    names = ", ".join(repr(name) for name in without)
    raise OpenAIError(
        400,
        f"{where}{names} does not accept tools or tool messages; set `tools: true` on the "
        "variant in variants.yaml (its engine needs a tool parser and a chat template that "
        "renders tools; docs/gateway.md, Function calling)",
        param=param,
        code="tools_not_supported",
    )
