"""OpenAI request schemas, their translation to ``SamplingParams``, and the
OpenAI error body. Unknown fields are ignored (clients send many); fields we
cannot honour (beam search, best_of, suffix, ...) are rejected with a 400
rather than silently ignored. An explicit JSON null means "the default", as
in OpenAI's API and vLLM. Tools live in tools.py, grammars in guided.py."""

from __future__ import annotations

import json
from typing import Any, Callable, ClassVar, Literal, Union

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from .guided import Spec
from .structured import ConstraintError, ResponseFormat, StructuredOutputs, constraint_of
from .sampling import MIN_TOP_P, SamplingParams
from .tools import Tool, ToolChoice, tool_message_fields


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
    "best_of": lambda v: v in (None, 1),
    "use_beam_search": _off,
    "include_stop_str_in_output": _off,
}
_CHAT_UNSUPPORTED: dict[str, Callable[[Any], bool]] = {
    **_COMMON_UNSUPPORTED,
    "functions": _off,
    "function_call": lambda v: v in (None, "none", "auto"),
    "add_generation_prompt": lambda v: v in (None, True),
    "continue_final_message": _off,
}
_COMPLETION_UNSUPPORTED: dict[str, Callable[[Any], bool]] = {**_COMMON_UNSUPPORTED, "suffix": _off}

MAX_N = 16  # choices per request (prompts x n for completions): each is a sequence in the engine
MAX_LOGPROBS = 20  # alternatives per token, as OpenAI's top_logprobs and vLLM's default cap
MAX_STOPS = 16
MAX_STOP_CHARS = 1024  # per stop string: the detokenizer keeps an automaton of each for the request's life
_FINITE = dict(allow_inf_nan=False)


class _Common(BaseModel):
    model_config = ConfigDict(extra="allow")
    unsupported: ClassVar[dict[str, Callable[[Any], bool]]] = _COMMON_UNSUPPORTED

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, ge=MIN_TOP_P, le=1)  # smaller values round to 0 in the fp32 sampler
    top_k: int = Field(-1, ge=-1)
    min_p: float = Field(0.0, ge=0, le=1)
    seed: int | None = Field(None, ge=-(2**63), le=2**64 - 1)  # what torch.Generator takes
    stop: Union[str, list[str], None] = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False  # vLLM extension: generate past eos (benchmarks)
    min_tokens: int = Field(0, ge=0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=MAX_N)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    repetition_penalty: float = Field(1.0, gt=0, le=100, **_FINITE)
    logit_bias: dict[str, float] | None = Field(None, max_length=1024)
    response_format: ResponseFormat | None = None
    guided_json: Union[dict, str, None] = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = Field(None, min_length=1, max_length=256)
    guided_grammar: str | None = None
    structured_outputs: StructuredOutputs | None = None
    user: str | None = None
    _constraint: Any = PrivateAttr(None)  # (guided.Spec, the field it came from), set by the preparer
    _guide: Any = PrivateAttr(None)  # the compiled grammar, set by the preparer

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
        if isinstance(v, list) and len(v) > MAX_STOPS:
            raise ValueError(f"at most {MAX_STOPS} stop strings")
        longest = max(map(len, [v] if isinstance(v, str) else v or ()), default=0)
        if longest > MAX_STOP_CHARS:
            raise ValueError(f"a stop string has at most {MAX_STOP_CHARS} characters (one has {longest})")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, v):
        for k, b in (v or {}).items():
            # ASCII digits only: str.isdigit() also passes "²", which int() refuses (a 500 later).
            if not (k.isascii() and k.isdigit()) or len(k) > 9:
                raise ValueError(f"key {k[:20]!r} is not a token id")
            if not -100 <= b <= 100:
                raise ValueError(f"bias {b} of token {k} is outside [-100, 100]")
        return v

    def constraint(self) -> Spec | None:
        """The grammar the output must follow, if any (one at most)."""
        try:
            return constraint_of(self)
        except ConstraintError as e:
            raise APIError(400, str(e), e.param) from None

    def logit_bias_pairs(self) -> tuple[tuple[int, float], ...]:
        return tuple((int(k), float(b)) for k, b in (self.logit_bias or {}).items() if b)

    def _params(self, max_tokens: int, **kw) -> SamplingParams:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return SamplingParams(
            max_tokens=max_tokens, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
            min_p=self.min_p, seed=self.seed, stop=stop, stop_token_ids=tuple(self.stop_token_ids or ()),
            ignore_eos=self.ignore_eos, min_tokens=min(self.min_tokens, max_tokens),
            presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty,
            repetition_penalty=self.repetition_penalty, logit_bias=self.logit_bias_pairs(), guide=self._guide, **kw,
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
    tool_calls: list[dict] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts_only(cls, v):
        # Say which part is refused, not pydantic's "should be a valid string".
        for part in v if isinstance(v, list) else ():
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            if kind != "text":
                raise ValueError(f"content part of type {kind!r} is not supported: this model takes text only")
        return v

    @field_validator("tool_calls")
    @classmethod
    def _calls(cls, v):
        for call in v or ():
            tool_message_fields(call)  # raises ValueError naming what is wrong
        return v

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content)  # as vLLM joins text parts
        return self.content or ""


class ChatRequest(_Common):
    unsupported: ClassVar[dict[str, Callable[[Any], bool]]] = _CHAT_UNSUPPORTED
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int = Field(0, ge=0, le=MAX_LOGPROBS)
    tools: list[Tool] | None = Field(None, max_length=128)
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True

    @model_validator(mode="after")
    def _tools(self):
        names = [t.function.name for t in self.tools or ()]
        if len(set(names)) != len(names):
            raise ValueError("tools: function names must be unique")
        choice = self.tool_choice
        if not isinstance(choice, str) and choice.function.name not in names:
            raise ValueError(f"tool_choice: no tool named {choice.function.name!r} in tools")
        if choice == "required" and not names:
            raise ValueError("tool_choice: 'required' needs tools")
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs: needs logprobs=true")
        return self

    @property
    def uses_tools(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"

    @property
    def forced_tools(self) -> bool:
        """A named or required tool_choice: the grammar holds the output to tool calls."""
        return self.uses_tools and self.tool_choice != "auto"

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

    def sampling_params(self, max_tokens: int) -> SamplingParams:
        return self._params(max_tokens, logprobs=self.top_logprobs if self.logprobs else None)


Prompt = Union[str, list[int]]


class CompletionRequest(_Common):
    unsupported: ClassVar[dict[str, Callable[[Any], bool]]] = _COMPLETION_UNSUPPORTED
    prompt: Union[str, list[int], list[str], list[list[int]]]
    max_tokens: int | None = Field(None, ge=0)  # 0: nothing generated (echo with logprobs scores the prompt)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompts(cls, v):
        """A string, token ids, or a list of either (the openai client's types)."""
        many = isinstance(v, list) and bool(v) and all(isinstance(x, (str, list)) for x in v)
        items = v if many else [v]
        if len(items) > MAX_N:
            raise ValueError(f"at most {MAX_N} prompts per request")
        for p in items:
            if isinstance(p, list) and any(isinstance(x, (str, list)) for x in p):
                raise ValueError("a prompt is a string or a list of token ids")
            if isinstance(p, (str, list)) and not p:
                raise ValueError("prompt must not be empty")
            if isinstance(p, list) and not all(type(t) is int for t in p):  # bools and floats are not token ids
                raise ValueError("token ids must be integers")
        return v

    @model_validator(mode="after")
    def _total(self):
        if len(self.prompts) * self.n > MAX_N:
            raise ValueError(f"n: {len(self.prompts)} prompts x n={self.n} is over {MAX_N} choices")
        return self

    @property
    def prompts(self) -> list[Prompt]:
        p = self.prompt
        return list(p) if isinstance(p, list) and p and isinstance(p[0], (str, list)) else [p]  # type: ignore[list-item]

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_tokens

    @property
    def max_tokens_param(self) -> str:
        return "max_tokens"

    def default_max_tokens(self, room: int) -> int:
        """Unset max_tokens: 16, OpenAI's default for completions, within the room left."""
        return min(16, room)

    def sampling_params(self, max_tokens: int) -> SamplingParams:
        # max_tokens 0 still runs one step (the prompt's logits); its token is dropped.
        return self._params(max(max_tokens, 1), logprobs=self.logprobs,
                            prompt_logprobs=self.logprobs if self.echo and self.logprobs is not None else None)


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
