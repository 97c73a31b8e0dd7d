"""Tool calling: the request's tool models, the prompt (through the model's
chat template, or a Hermes-style system block when the template ignores
tools), the grammar that holds a named or required ``tool_choice``, and the
parsers that turn generated text into OpenAI ``tool_calls`` (Hermes
``<tool_call>{json}</tool_call>`` and Llama-3 JSON ``{"name", "parameters"}``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from .guided import Spec

_NAME = r"^[A-Za-z0-9_.:-]{1,64}$"


class Function(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=_NAME)
    description: str | None = None
    parameters: dict | None = None
    strict: bool | None = None


class Tool(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["function"] = "function"
    function: Function


class _Named(BaseModel):
    name: str


class NamedChoice(BaseModel):
    type: Literal["function"] = "function"
    function: _Named


ToolChoice = Union[Literal["none", "auto", "required"], NamedChoice]


def tool_message_fields(call: Any) -> tuple[str, Any]:
    """(name, arguments) of an assistant message's tool call; ValueError if malformed."""
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise ValueError("a tool call needs function.name")
    args = fn.get("arguments", "{}")
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            raise ValueError(f"tool call {fn['name']!r}: arguments are not valid JSON") from None
    return fn["name"], args


# -- the prompt ---------------------------------------------------------------
_SYSTEM = (
    "You are a function calling AI model. You are provided with function signatures within <tools></tools> "
    "XML tags. You may call one or more functions to assist with the user query. Don't make assumptions "
    "about what values to plug into functions. Here are the available tools: <tools>\n{tools}\n</tools>\n"
    "For each function call return a json object with function name and arguments within <tool_call></tool_call> "
    'XML tags as follows:\n<tool_call>\n{{"name": <function-name>, "arguments": <args-dict>}}\n</tool_call>'
)


def template_knows_tools(template: str | None) -> bool:
    return bool(template) and "tools" in template  # type: ignore[operator]


def render_messages(messages: list[Any], tools: list[Tool] | None, native: bool) -> list[dict]:
    """Messages as the chat template takes them. ``native``: the template
    renders tools and tool calls itself (they are passed as-is); otherwise
    calls become Hermes text and the tool list a system block."""
    out: list[dict] = []
    for m in messages:
        d: dict[str, Any] = {"role": m.role, "content": m.text()}
        if m.tool_calls:
            calls = [tool_message_fields(c) for c in m.tool_calls]
            if native:
                d["tool_calls"] = [{"type": "function", "id": c.get("id"),
                                    "function": {"name": n, "arguments": a}} for c, (n, a) in zip(m.tool_calls, calls)]
            else:
                text = "\n".join(f"<tool_call>\n{json.dumps({'name': n, 'arguments': a})}\n</tool_call>" for n, a in calls)
                d["content"] = (d["content"] + "\n" + text).strip()
        if m.role == "tool":
            if native:
                d["tool_call_id"] = m.tool_call_id
            else:
                d["content"] = f"<tool_response>\n{d['content']}\n</tool_response>"
        out.append(d)
    if tools and not native:
        block = _SYSTEM.format(tools="\n".join(json.dumps(t.model_dump(exclude_none=True)) for t in tools))
        if out and out[0]["role"] in ("system", "developer"):
            out[0] = {**out[0], "content": out[0]["content"] + "\n\n" + block}
        else:
            out.insert(0, {"role": "system", "content": block})
    return out


# -- the grammar of a forced tool_choice ------------------------------------
def forced_spec(tools: list[Tool], choice: Any, parallel: bool) -> Spec:
    """Named: the output is that function's arguments (JSON of its schema).
    Required: a JSON array of {"name", "parameters"} items, one of the tools
    each (vLLM's form); one item only without parallel tool calls."""
    if not isinstance(choice, str):
        fn = next(t.function for t in tools if t.function.name == choice.function.name)
        return Spec("json", fn.parameters or {"type": "object"})
    items = [{"type": "object", "properties": {"name": {"const": t.function.name},
                                               "parameters": t.function.parameters or {"type": "object"}},
              "required": ["name", "parameters"]} for t in tools]
    schema: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"anyOf": items}}
    if not parallel:
        schema["maxItems"] = 1
    return Spec("json", schema)


# -- parsing the output --------------------------------------------------------
def new_call(name: str, arguments: Any) -> dict:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": "call_" + uuid.uuid4().hex[:24], "type": "function", "function": {"name": name, "arguments": args}}


def parse_forced(text: str, choice: Any) -> list[dict]:
    """The calls of a grammar-held output (named or required)."""
    if not isinstance(choice, str):
        return [new_call(choice.function.name, text.strip() or "{}")]
    try:
        items = json.loads(text)
    except ValueError:  # cut by max_tokens: no complete call
        return []
    return [new_call(i["name"], i.get("parameters", {})) for i in items if isinstance(i, dict) and "name" in i]


TAG, END_TAG = "<tool_call>", "</tool_call>"


def hermes_bodies(text: str) -> list[str]:
    """What each ``<tool_call>`` holds, up to its ``</tool_call>`` (the last may be cut off),
    stripped. Linear in the text: a regex (``<tool_call>\\s*(.*?)\\s*(?:</tool_call>|$)``)
    backtracked over a long whitespace run, ~n^2 (16k spaces then a letter: 2.8 s)."""
    bodies = []
    start = text.find(TAG)
    while start >= 0:
        start += len(TAG)
        end = text.find(END_TAG, start)
        bodies.append(text[start: end if end >= 0 else len(text)].strip())
        start = text.find(TAG, end + len(END_TAG)) if end >= 0 else -1
    return bodies


def parse_auto(text: str, names: set[str]) -> tuple[str | None, list[dict]]:
    """(content, calls) of free output: Hermes tags, or Llama-3 JSON (the
    whole output one object, or several joined by ';'). Anything that does
    not parse as a call of a known tool stays content."""
    calls: list[dict] = []
    if TAG in text:
        for body in hermes_bodies(text):
            call = _call(body, names)
            if call is None:
                return text, []
            calls.append(call)
        content = text[: text.index(TAG)].strip()
        return content or None, calls
    stripped = text.strip().removeprefix("<|python_tag|>").strip()
    if stripped.startswith("{"):
        for body in stripped.split(";"):
            call = _call(body, names)
            if call is None:
                return text, []
            calls.append(call)
        return None, calls
    return text, []


def _call(body: str, names: set[str]) -> dict | None:
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("name") not in names:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    return new_call(obj["name"], args)

