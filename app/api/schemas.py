"""Request bodies of the OpenAI endpoints: an explicit allowlist of fields, each with its bounds.

Every field the gateway forwards is declared here; any other field is refused
with a 400 naming it (`extra="forbid"`, mapped in app/api/errors.py), because
vLLM accepts many fields that are unsafe to expose (request ids, priorities,
KV-transfer parameters, logits processors, grammars). The declared set is
OpenAI's sampling fields plus a vetted list of vLLM extras (docs/gateway.md,
"Security"). What depends on the variant or the key (`n` and batch caps, echo
and prompt logprobs, media content parts, `max_tokens` filling, tools) is checked
in app/serving/ once the variant is known. Function calling (`tools`, tool
messages) lives in app/api/tool_schemas.py.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from app.api.closed import MAX_NAME_CHARS, Closed, bounded_schema
from app.api.tool_schemas import (
    MAX_TOOL_CALL_ID_CHARS,
    MAX_TOOL_CALLS,
    MAX_TOOLS,
    AssistantToolCall,
    Tool,
    ToolChoice,
    check_message_roles,
    check_tool_choice,
)
from app.api.unsafe_values import reject_unsafe_values

MAX_STOP = 4
MAX_STOP_CHARS = 256
MAX_LOGIT_BIAS = 300
MAX_STOP_TOKEN_IDS = 16
MAX_URL_CHARS = 8192
MAX_TOKEN_ID = 2**31 - 1
INT64 = 2**63 - 1


StopString = Annotated[str, Field(max_length=MAX_STOP_CHARS)]
TokenIdKey = Annotated[str, Field(pattern=r"^\d{1,10}$")]


class StreamOptions(Closed):
    include_usage: bool | None = None


class JsonSchemaFormat(Closed):
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    description: str | None = Field(None, max_length=1024)
    schema_: dict | None = Field(None, alias="schema")
    strict: bool | None = None

    @field_validator("schema_")
    @classmethod
    def bounded(cls, schema: dict | None) -> dict | None:
        return schema if schema is None else bounded_schema(schema)


class ResponseFormat(Closed):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class SamplingRequest(Closed):
    """Fields both endpoints accept."""

    model: str = Field(min_length=1, max_length=256, description="a variant or an experiment name (GET /v1/models)")
    max_tokens: int | None = Field(None, ge=1, description="default and cap: MOEPRUNE_MAX_TOKENS_LIMIT")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, le=16, description="also capped by MOEPRUNE_MAX_N")
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: StopString | Annotated[list[StopString], Field(max_length=MAX_STOP)] | None = None
    seed: int | None = Field(None, ge=-INT64 - 1, le=INT64)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: (
        Annotated[dict[TokenIdKey, Annotated[float, Field(ge=-100, le=100)]], Field(max_length=MAX_LOGIT_BIAS)] | None
    ) = None
    response_format: ResponseFormat | None = None
    user: str | None = Field(
        None, max_length=256, description="also the sticky key of experiments without a sticky header"
    )
    # vLLM extras (vetted: they change sampling only, never scheduling, caching or the server).
    top_k: int | None = Field(None, ge=-1, le=100_000)
    min_p: float | None = Field(None, ge=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0, le=10)
    ignore_eos: bool | None = None
    min_tokens: int | None = Field(None, ge=0, description="at most the max_tokens limit")
    stop_token_ids: list[Annotated[int, Field(ge=0, le=MAX_TOKEN_ID)]] | None = Field(
        None, max_length=MAX_STOP_TOKEN_IDS
    )
    include_stop_str_in_output: bool | None = None
    skip_special_tokens: bool | None = None
    spaces_between_special_tokens: bool | None = None
    prompt_logprobs: int | None = Field(
        None, ge=0, le=5, description="evaluation variants or keys only; bounded prompt"
    )
    cache_salt: str | None = Field(
        None, max_length=1024, description="ignored: the gateway sets its own salt per API key"
    )

    @model_validator(mode="before")
    @classmethod
    def safe_values(cls, data: object) -> object:
        reject_unsafe_values(data)
        return data


class TextPart(Closed):
    type: Literal["text"]
    text: str


class ImageUrl(Closed):
    url: str = Field(max_length=MAX_URL_CHARS)
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(Closed):
    type: Literal["image_url"]
    image_url: ImageUrl


class InputAudio(Closed):
    data: str
    format: Literal["wav", "mp3"]


class AudioPart(Closed):
    type: Literal["input_audio"]
    input_audio: InputAudio


# Media parts pass the schema but only reach variants declared `multimodal: true` (app/serving/bounds.py).
ContentPart = Annotated[TextPart | ImagePart | AudioPart, Field(discriminator="type")]


class ChatMessage(Closed):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(None, max_length=MAX_NAME_CHARS)
    # Function calling: which fields each role may carry is checked on the request (check_message_roles),
    # where the message's index is known for the error's `param`.
    tool_calls: list[AssistantToolCall] | None = Field(
        None, min_length=1, max_length=MAX_TOOL_CALLS, description="assistant messages only"
    )
    tool_call_id: str | None = Field(
        None, min_length=1, max_length=MAX_TOOL_CALL_ID_CHARS, description="tool messages only (required there)"
    )


class ChatTemplateKwargs(Closed):
    """Only the documented switches of the chat templates; a template can read any variable it is given."""

    enable_thinking: bool | None = None
    thinking: bool | None = None
    reasoning_effort: Literal["low", "medium", "high"] | None = None


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    max_completion_tokens: int | None = Field(None, ge=1, description="default and cap: the max_tokens limit")
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    chat_template_kwargs: ChatTemplateKwargs | None = None
    add_generation_prompt: bool | None = None
    continue_final_message: bool | None = None
    # Function calling: only variants with `tools: true` take these (app/serving/tools.py).
    tools: list[Tool] | None = Field(None, min_length=1, max_length=MAX_TOOLS)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None

    @model_validator(mode="after")
    def coherent_tools(self) -> ChatCompletionRequest:
        check_message_roles(self.messages)
        check_tool_choice(self.tools, self.tool_choice, self.parallel_tool_calls)
        return self


TokenIds = list[Annotated[int, Field(ge=0, le=MAX_TOKEN_ID)]]


class CompletionRequest(SamplingRequest):
    prompt: str | list[str] | TokenIds | list[TokenIds] = Field(
        description="a prompt, a batch of prompts (at most MOEPRUNE_MAX_PROMPTS_PER_REQUEST), or token ids"
    )
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool | None = Field(None, description="evaluation variants or keys only; bounded prompt")

    @field_validator("prompt")
    @classmethod
    def not_empty(cls, prompt):
        if isinstance(prompt, list) and (not prompt or any(isinstance(p, list) and not p for p in prompt)):
            raise ValueError("a prompt list must not be empty, nor hold an empty token list")
        return prompt
