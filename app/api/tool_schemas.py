"""Function calling in a chat request: `tools`, `tool_choice`, assistant `tool_calls` and `tool` messages.

OpenAI's shapes, closed and bounded like the rest of the schema: at most 128
tools (OpenAI's own limit), each `parameters` a JSON schema bounded like
`response_format`'s, and all of them together at most MAX_TOOLS_SCHEMA_CHARS
(under `tool_choice: required` vLLM compiles one grammar over every tool). What
the schema cannot say field by field is checked on the whole request with an
error naming the exact field: which role may carry which field, and a
`tool_choice` that names a tool the request does not define. Whether the variant
takes tools at all is decided once it is known (app/serving/tools.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from app.api.closed import MAX_SCHEMA_CHARS, Closed, bounded_schema, schema_chars

MAX_TOOLS = 128
MAX_TOOL_CALLS = 128  # in one assistant message
MAX_TOOL_CALL_ID_CHARS = 256
MAX_TOOL_DESCRIPTION_CHARS = 4096
MAX_ARGUMENT_CHARS = 65_536  # an assistant tool call's `arguments`, a JSON text the client sends back
MAX_TOOLS_SCHEMA_CHARS = 4 * MAX_SCHEMA_CHARS

# Error types app/api/errors.py turns into 400s naming `param`.
FIELD_NOT_FOR_ROLE = "field_not_for_role"
TOOL_FIELD_INVALID = "tool_field_invalid"

# OpenAI's rule for function names (letters, digits, `_`, `-`; at most 64).
FunctionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class FunctionDefinition(Closed):
    name: FunctionName
    description: str | None = Field(None, max_length=MAX_TOOL_DESCRIPTION_CHARS)
    parameters: dict | None = Field(None, description="a JSON schema of the arguments")
    strict: bool | None = None

    @field_validator("parameters")
    @classmethod
    def bounded(cls, schema: dict | None) -> dict | None:
        return schema if schema is None else bounded_schema(schema)


class Tool(Closed):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(Closed):
    name: FunctionName


class NamedToolChoice(Closed):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class CalledFunction(Closed):
    name: FunctionName
    arguments: str = Field(max_length=MAX_ARGUMENT_CHARS, description="JSON text, as the model wrote it")


class AssistantToolCall(Closed):
    id: str = Field(min_length=1, max_length=MAX_TOOL_CALL_ID_CHARS)
    type: Literal["function"]
    function: CalledFunction


def _refuse(kind: str, param: str, why: str) -> PydanticCustomError:
    return PydanticCustomError(kind, "{param}: {why}", {"param": param, "why": why})


def check_message_roles(messages: list) -> None:
    """Only assistant messages carry `tool_calls`; only (and every) `tool` message carries `tool_call_id`
    and text content. The messages are ChatMessage objects (app/api/schemas.py)."""
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if message.tool_calls is not None and message.role != "assistant":
            raise _refuse(FIELD_NOT_FOR_ROLE, f"{where}.tool_calls", "only an assistant message carries tool_calls")
        if message.role != "tool":
            if message.tool_call_id is not None:
                raise _refuse(FIELD_NOT_FOR_ROLE, f"{where}.tool_call_id", "only a `tool` message carries tool_call_id")
            continue
        if message.tool_call_id is None:
            raise _refuse(
                TOOL_FIELD_INVALID,
                f"{where}.tool_call_id",
                "a `tool` message needs the tool_call_id of the call it answers",
            )
        content = message.content
        if content is None or (isinstance(content, list) and any(part.type != "text" for part in content)):
            raise _refuse(
                TOOL_FIELD_INVALID,
                f"{where}.content",
                "a `tool` message carries the tool's result as text (a string or text parts)",
            )


def check_tool_choice(
    tools: list[Tool] | None, tool_choice: ToolChoice | None, parallel_tool_calls: bool | None
) -> None:
    if tools is None:
        for field, value in (("tool_choice", tool_choice), ("parallel_tool_calls", parallel_tool_calls)):
            if value is not None:
                raise _refuse(TOOL_FIELD_INVALID, field, "is only allowed when `tools` are given")
        return
    names: set[str] = set()
    for i, tool in enumerate(tools):
        if tool.function.name in names:
            raise _refuse(
                TOOL_FIELD_INVALID,
                f"tools.{i}.function.name",
                f"a second tool named {tool.function.name!r}; tool names must be unique",
            )
        names.add(tool.function.name)
    total = sum(schema_chars(tool.function.parameters or {}) for tool in tools)
    if total > MAX_TOOLS_SCHEMA_CHARS:
        raise _refuse(
            TOOL_FIELD_INVALID,
            "tools",
            f"the tools' parameter schemas hold {total} characters of JSON "
            f"together; this gateway accepts at most {MAX_TOOLS_SCHEMA_CHARS}",
        )
    if isinstance(tool_choice, NamedToolChoice) and tool_choice.function.name not in names:
        raise _refuse(
            TOOL_FIELD_INVALID,
            "tool_choice.function.name",
            f"names {tool_choice.function.name!r}, which is not in `tools` (defined: {', '.join(sorted(names))})",
        )
