"""Tool calling without a server: the Hermes and Llama-3 parsers, the
grammar a forced tool_choice compiles to, and the prompt a template without
tool support gets."""

from __future__ import annotations

import json

from runtimes.fallback.protocol import ChatRequest, parse
from runtimes.fallback.tools import forced_spec, parse_auto, parse_forced, render_messages

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]


def req(**kw) -> ChatRequest:
    return parse(ChatRequest, {"messages": [{"role": "user", "content": "hi"}], "tools": TOOLS, **kw})


def args(call) -> dict:
    return json.loads(call["function"]["arguments"])


def test_hermes_calls_with_content_before_them():
    text = 'Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n' \
           '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>'
    content, calls = parse_auto(text, {"get_weather", "get_time"})
    assert content == "Let me look." and [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert args(calls[0]) == {"city": "Paris"} and calls[0]["id"].startswith("call_") and calls[0]["type"] == "function"


def test_llama3_json_calls_and_python_tag():
    content, calls = parse_auto('{"name": "get_weather", "parameters": {"city": "Oslo"}}', {"get_weather"})
    assert content is None and args(calls[0]) == {"city": "Oslo"}
    _, calls = parse_auto('<|python_tag|>{"name": "get_time", "parameters": {}}; {"name": "get_weather", '
                          '"parameters": {"city": "Rome"}}', {"get_weather", "get_time"})
    assert [c["function"]["name"] for c in calls] == ["get_time", "get_weather"]


def test_text_that_is_not_a_known_call_stays_content():
    for text in ("Hello there", '{"name": "unknown_tool", "parameters": {}}', '<tool_call>{broken json</tool_call>',
                 '{"not": "a call"}'):
        assert parse_auto(text, {"get_weather"}) == (text, [])


def test_forced_choices_compile_to_json_grammars_and_parse_back():
    named = req(tool_choice={"type": "function", "function": {"name": "get_weather"}})
    spec = forced_spec(named.tools, named.tool_choice, True)
    assert spec.kind == "json" and spec.value["required"] == ["city"]
    (call,) = parse_forced('{"city": "Paris"}', named.tool_choice)
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    required = req(tool_choice="required", parallel_tool_calls=False)
    spec = forced_spec(required.tools, "required", False)
    assert spec.value["maxItems"] == 1 and len(spec.value["items"]["anyOf"]) == 2
    calls = parse_forced('[{"name": "get_time", "parameters": {}}]', "required")
    assert calls[0]["function"] == {"name": "get_time", "arguments": "{}"}
    assert parse_forced('[{"name": "get_ti', "required") == []  # cut by max_tokens: no call


def test_a_template_without_tools_gets_a_system_block_and_hermes_history():
    r = parse(ChatRequest, {"tools": TOOLS, "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                              "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]})
    msgs = render_messages(r.messages, r.tools, native=False)
    assert msgs[0]["role"] == "system" and "<tools>" in msgs[0]["content"] and "get_time" in msgs[0]["content"]
    assert "<tool_call>" in msgs[2]["content"] and '"city": "Paris"' in msgs[2]["content"]
    assert msgs[3]["content"] == "<tool_response>\nsunny\n</tool_response>"
    native = render_messages(r.messages, r.tools, native=True)
    assert native[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"} and native[2]["tool_call_id"] == "c1"


def test_hermes_bodies_match_the_old_regex_on_ordinary_output():
    import re

    old = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)  # the parser before issue 20
    from runtimes.fallback.tools import hermes_bodies

    for text in ('<tool_call>\n{"a": 1}\n</tool_call>', 'x <tool_call>{"a": 1}</tool_call> y <tool_call> {"b": 2} ',
                 "<tool_call></tool_call><tool_call>", "<tool_call>a</tool_call>junk</tool_call><tool_call>b\n",
                 "<tool_call> <tool_call>c</tool_call>", "no call", "<tool_call>\n\n"):
        start = text.find("<tool_call>")
        assert hermes_bodies(text) == (old.findall(text[start:]) if start >= 0 else []), text


def test_a_long_whitespace_run_parses_in_linear_time():
    # Issue 20: "<tool_call>x" + 16k spaces + a letter took the old regex 2.8 s here, on the event loop.
    import time

    names = {"get_weather"}
    for text in ("<tool_call>x" + " " * 64_000 + "y", "<tool_call>" + "x " * 32_000 + "<",
                 "<tool_call>x" + "\n\t " * 20_000 + "</tool_call" + " " * 20_000 + "z"):
        t0 = time.perf_counter()
        assert parse_auto(text, names) == (text, [])
        assert time.perf_counter() - t0 < 0.2
    many = "".join(f'<tool_call>{{"name": "get_weather", "arguments": {{"city": "c{i}"}}}}</tool_call>' for i in range(5000))
    t0 = time.perf_counter()
    _, calls = parse_auto(many, names)
    assert len(calls) == 5000 and time.perf_counter() - t0 < 1.0
