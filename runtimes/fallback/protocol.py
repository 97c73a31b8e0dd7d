"""OpenAI request schemas, their translation to ``SamplingParams``, and the
OpenAI error body. Unknown fields are ignored (clients send many); fields we
cannot honour (n > 1, logprobs, penalties, tools, response_format, ...) are
rejected with a 400 rather than silently ignored. An explicit JSON null means
"the default", as in OpenAI's API and vLLM."""

from __future__ import annotations

import json
from typing import Any, Callable, ClassVar, Literal, Union

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .sampling import MIN_TOP_P, SamplingParams


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, headers: dict[str, str] | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.headers = headers or {}
        self.code = code if code is not None else _CODES.get(status)


_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    408: "RequestTimeoutError",
    413: "RequestTooLargeError",
    415: "UnsupportedMediaTypeError",
    429: "RateLimitError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}
# OpenAI's ``error.code`` is a string naming the cause, or null; clients
# that switch on it break on vLLM's integer status.
_CODES = {
    401: "invalid_api_key",
    408: "request_timeout",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "rate_limit_exceeded",
    503: "service_unavailable",
}


def error_body(err: APIError) -> dict:
    return {"error": {"message": err.message, "type": _TYPES.get(err.status, "APIError"), "param": err.param, "code": err.code}}


def error_response(err: APIError) -> JSONResponse:
    return JSONResponse(error_body(err), status_code=err.status, headers=err.headers)


class StreamOptions(BaseModel):
    include_usage: bool = False


def _off(v: Any) -> bool:
    return not v  # None, false, 0, "", [], {}


# Fields we cannot honour, by the values that ask for nothing (clients often
# send defaults); any other value is a 400 naming the field.
_COMMON_UNSUPPORTED: dict[str, Callable[[Any], bool]] = {
    "logit_bias": _off,
    "best_of": lambda v: v in (None, 1),
    "use_beam_search": _off,
    "min_tokens": _off,
    "min_p": _off,
    "repetition_penalty": lambda v: v in (None, 1),
    "include_stop_str_in_output": _off,
    "guided_json": _off,
    "guided_regex": _off,
    "guided_choice": _off,
    "guided_grammar": _off,
    "structured_outputs": _off,
}
_CHAT_UNSUPPORTED: dict[str, Callable[[Any], bool]] = {
    **_COMMON_UNSUPPORTED,
    "response_format": lambda v: _off(v) or (isinstance(v, dict) and v.get("type") == "text"),
    "tools": _off,
    "functions": _off,
    "tool_choice": lambda v: v in (None, "none", "auto"),
    "function_call": lambda v: v in (None, "none", "auto"),
    "top_logprobs": _off,
    "add_generation_prompt": lambda v: v in (None, True),
    "continue_final_message": _off,
}
_COMPLETION_UNSUPPORTED: dict[str, Callable[[Any], bool]] = {**_COMMON_UNSUPPORTED, "suffix": _off}


class _Common(BaseModel):
    model_config = ConfigDict(extra="allow")
    unsupported: ClassVar[dict[str, Callable[[Any], bool]]] = _COMMON_UNSUPPORTED

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, ge=MIN_TOP_P, le=1)  # smaller values round to 0 in the fp32 sampler
    top_k: int = Field(-1, ge=-1)
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)  # what torch.Generator takes
    stop: Union[str, list[str], None] = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False  # vLLM extension: generate past eos (benchmarks)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1)
    presence_penalty: float = Field(0.0, ge=0, le=0)
    frequency_penalty: float = Field(0.0, ge=0, le=0)
    logprobs: Any = None
    user: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data):
        # Clients send null for "not set" (openai's Python client does for a
        # None argument); the field's default applies.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v):
        if isinstance(v, list) and len(v) > 16:
            raise ValueError("at most 16 stop strings")
        return v

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, v):
        if v not in (None, False, 0):
            raise ValueError("logprobs are not supported by this runtime")
        return v

    def sampling_params(self, max_tokens: int) -> SamplingParams:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            seed=self.seed,
            stop=stop,
            stop_token_ids=tuple(self.stop_token_ids or ()),
            ignore_eos=self.ignore_eos,
        )

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[TextPart], None] = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts_only(cls, v):
        # Say which part is refused, not pydantic's "should be a valid string".
        for part in v if isinstance(v, list) else ():
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            if kind != "text":
                raise ValueError(f"content part of type {kind!r} is not supported: this model takes text only")
        return v

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content)  # as vLLM joins text parts
        return self.content or ""


class ChatRequest(_Common):
    unsupported: ClassVar[dict[str, Callable[[Any], bool]]] = _CHAT_UNSUPPORTED
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def max_tokens_param(self) -> str:
        """The field the limit came from, for errors (newer clients send max_completion_tokens)."""
        return "max_completion_tokens" if self.max_completion_tokens else "max_tokens"

    def default_max_tokens(self, room: int) -> int:
        """Unset max_tokens: all the room the context leaves, as vLLM."""
        return room


class CompletionRequest(_Common):
    unsupported: ClassVar[dict[str, Callable[[Any], bool]]] = _COMPLETION_UNSUPPORTED
    prompt: Union[str, list[int]]
    echo: bool = Field(False)

    @field_validator("prompt", mode="before")
    @classmethod
    def _one_prompt(cls, v):
        """A string or token ids, alone or as the only item of a list (the
        openai client types allow ["text"] and [[ids]])."""
        if isinstance(v, list) and len(v) == 1 and isinstance(v[0], (str, list)):
            v = v[0]
        if isinstance(v, list) and any(isinstance(x, (str, list)) for x in v):
            raise ValueError("only one prompt per request is supported")
        if isinstance(v, (str, list)) and not v:
            raise ValueError("prompt must not be empty")
        if isinstance(v, list) and not all(type(t) is int for t in v):  # bools and floats are not token ids
            raise ValueError("token ids must be integers")
        return v

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, v):
        if v:
            raise ValueError("echo is not supported by this runtime")
        return v

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_tokens

    @property
    def max_tokens_param(self) -> str:
        return "max_tokens"

    def default_max_tokens(self, room: int) -> int:
        """Unset max_tokens: 16, OpenAI's default for completions, within the room left."""
        return min(16, room)


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def parse(model_cls: type[BaseModel], body: Any):
    """Validate a decoded JSON body; a 400 naming the first bad field."""
    if not isinstance(body, dict):
        raise APIError(400, "request body must be a JSON object")
    _refuse_unsupported(model_cls, body)
    try:
        return model_cls.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        # Drop pydantic's union-member tags ("str", "list[int]") from the path.
        loc = [x for x in first.get("loc", ()) if isinstance(x, int) or (x.isidentifier() and x not in _TYPE_TAGS)]
        param = ".".join(str(x) for x in loc) or None
        raise APIError(400, f"{param}: {first.get('msg')}" if param else str(first.get("msg")), param) from None


def _refuse_unsupported(model_cls: type[BaseModel], body: dict) -> None:
    for name, is_noop in getattr(model_cls, "unsupported", {}).items():
        if name in body and not is_noop(body[name]):
            raise APIError(400, f"{name}: {json.dumps(body[name])[:80]} is not supported by this runtime", name)
