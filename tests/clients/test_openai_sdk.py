"""Every OpenAI feature the fallback runtime serves, through the real openai
SDK against the real server and model: n, logprobs (chat, completions, echo),
penalties, min_p, min_tokens, logit_bias, structured outputs, tools, lists of
prompts, /v1/models/{id}; a bad grammar fails its own request only."""

from __future__ import annotations

import json
import math
import re
import threading

import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from answers import CAPITAL_Q, SUM_Q

from .conftest import MAX_LEN, MODEL_NAME

pytestmark = [pytest.mark.slow, pytest.mark.model_output]

Q = [{"role": "user", "content": CAPITAL_Q}]  # a fact on any CPU (tests/answers.py)
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city.",
    # maxLength: the grammar holds the argument short, so max_tokens never cuts the JSON (on some CPUs the
    # greedy string ran on past 60 tokens).
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The local time in a timezone.",
    "parameters": {"type": "object", "properties": {"tz": {"type": "string", "maxLength": 40}}, "required": ["tz"]}}}


def chat(client, messages=Q, **kw):
    kw.setdefault("temperature", 0)
    kw.setdefault("max_tokens", 24)
    return client.chat.completions.create(model=MODEL_NAME, messages=messages, **kw)


def test_models_retrieve_and_unknown_is_a_404(client):
    assert client.models.retrieve(MODEL_NAME).id == MODEL_NAME
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_n_choices_seeded_sampling_differs_greedy_agrees(client):
    r = chat(client, n=3, temperature=1.0, seed=7, max_tokens=16)
    assert [c.index for c in r.choices] == [0, 1, 2] and len({c.message.content for c in r.choices}) > 1
    again = chat(client, n=3, temperature=1.0, seed=7, max_tokens=16)
    assert [c.message.content for c in again.choices] == [c.message.content for c in r.choices]  # seeded
    # Greedy rows agree where the fact's margins hold (CAPITAL_Q: 6 tokens, none a near-tie), whatever the CPU.
    g = chat(client, n=2, max_tokens=6)
    assert g.choices[0].message.content == g.choices[1].message.content == chat(client, max_tokens=6).choices[0].message.content
    assert [c.finish_reason for c in g.choices] == ["length", "length"] and g.usage.completion_tokens == 12


def test_chat_logprobs_are_the_greedy_tokens_own(client):
    r = chat(client, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert "".join(t.token for t in content).startswith(r.choices[0].message.content)
    for t in content:
        assert len(t.top_logprobs) == 3 and t.logprob <= 0
        assert t.logprob == pytest.approx(max(a.logprob for a in t.top_logprobs))  # greedy picks the top one
        assert bytes(t.bytes).decode() == t.token
    assert chat(client).choices[0].logprobs is None


def test_completion_echo_logprobs_score_the_prompt_as_decoding_does(client):
    # Decoding " Paris" after the prompt, and scoring it as the prompt's last token (prefill rows).
    prompt = "The capital of France is"
    gen = client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=1, temperature=0, logprobs=2)
    tok, lp = gen.choices[0].logprobs.tokens[0], gen.choices[0].logprobs.token_logprobs[0]
    assert len(gen.choices[0].logprobs.top_logprobs[0]) >= 2
    scored = client.completions.create(model=MODEL_NAME, prompt=prompt + tok, max_tokens=0, echo=True, logprobs=1)
    c = scored.choices[0]
    assert c.text == prompt + tok and scored.usage.completion_tokens == 0
    assert c.logprobs.token_logprobs[0] is None and c.logprobs.top_logprobs[0] is None
    assert "".join(c.logprobs.tokens) == prompt + tok and c.logprobs.tokens[-1] == tok
    assert c.logprobs.token_logprobs[-1] == pytest.approx(lp, abs=0.05)
    assert all(x <= 0 for x in c.logprobs.token_logprobs[1:])
    assert c.logprobs.text_offset[-1] == len(prompt)
    # lm-eval's own request: token ids, echo, one generated token.
    ids = [504, 3575, 282, 4649, 314]
    lm = client.completions.create(model=MODEL_NAME, prompt=[ids, ids[:3]], max_tokens=1, echo=True, logprobs=1,
                                   temperature=0)
    assert [len(ch.logprobs.tokens) for ch in lm.choices] == [6, 4]
    assert lm.choices[0].logprobs.token_logprobs[1:3] == pytest.approx(lm.choices[1].logprobs.token_logprobs[1:3], abs=1e-3)


def test_a_list_of_prompts_with_n(client):
    # Facts with no near-tie in their first 2 tokens (tests/answers.py): batched and alone agree on any CPU.
    prompts = ["The capital of France is", "The capital of Japan is"]
    r = client.completions.create(model=MODEL_NAME, prompt=prompts, n=2, max_tokens=2, temperature=0)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    alone = [client.completions.create(model=MODEL_NAME, prompt=p, max_tokens=2, temperature=0).choices[0].text
             for p in prompts]
    assert alone == [" Paris.", " Tokyo."]
    assert [c.text for c in r.choices] == [alone[0], alone[0], alone[1], alone[1]]
    streamed = {}
    for ch in client.completions.create(model=MODEL_NAME, prompt=prompts, max_tokens=2, temperature=0, stream=True):
        for c in ch.choices:
            streamed[c.index] = streamed.get(c.index, "") + c.text
    assert streamed == {0: alone[0], 1: alone[1]}


def distinct(text: str) -> int:
    return len(set(text.split()))


def test_penalties_cut_repetition(client):
    m = [{"role": "user", "content": "Write the word 'cat' twenty times, separated by spaces."}]
    plain = chat(client, m, max_tokens=40).choices[0].message.content
    for kw in ({"extra_body": {"repetition_penalty": 2.0}}, {"frequency_penalty": 2.0}, {"presence_penalty": 2.0}):
        got = chat(client, m, max_tokens=40, **kw).choices[0].message.content
        assert distinct(got) > distinct(plain), (kw, plain, got)


def test_logit_bias_bans_and_forces_tokens(client):
    from runtime.conftest import gguf_path
    from runtimes.fallback.loader import load_tokenizer

    (paris,) = load_tokenizer(str(gguf_path())).encode(" Paris", add_special_tokens=False)
    prompt = "The capital of France is"
    plain = client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=1, temperature=0)
    assert plain.choices[0].text == " Paris"
    banned = chat(client, logit_bias={str(paris): -100}).choices[0].message.content
    forced = client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=3, temperature=0,
                                       logit_bias={str(paris): 100}).choices[0].text
    assert "Paris" not in banned and forced == " Paris Paris Paris"


def test_min_tokens_and_min_p(client):
    m = [{"role": "user", "content": SUM_Q}]  # ends within 12 tokens on every near-tie path (tests/answers.py)
    short = chat(client, m, max_tokens=60)
    assert short.choices[0].finish_reason == "stop" and short.usage.completion_tokens <= 12
    long = chat(client, m, max_tokens=60, extra_body={"min_tokens": 30})
    assert long.usage.completion_tokens >= 30
    # min_p 1 keeps only the most likely token: sampling turns greedy.
    assert chat(client, temperature=1.0, seed=3, extra_body={"min_p": 1.0}).choices[0].message.content == \
        chat(client).choices[0].message.content


class City(BaseModel):
    name: str = Field(max_length=30)  # a tiny model may never close a string: the grammar bounds it
    country: str = Field(max_length=30)
    is_capital: bool


def test_structured_outputs(client):
    # json_object holds the form, not the length: an answer that stopped parses, one cut says "length".
    r = chat(client, response_format={"type": "json_object"}, max_tokens=200)
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content), dict)
    else:
        assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 200
    schema = City.model_json_schema()
    r = chat(client, response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
             max_tokens=120)
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)
    parsed = client.beta.chat.completions.parse(model=MODEL_NAME, messages=[{"role": "user", "content": "Describe Paris."}],
                                                response_format=City, temperature=0, max_tokens=120)
    assert isinstance(parsed.choices[0].message.parsed, City)
    assert isinstance(client.chat.completions.parse(model=MODEL_NAME, messages=Q, response_format=City, temperature=0,
                                                    max_tokens=120).choices[0].message.parsed, City)
    r = chat(client, extra_body={"guided_regex": r"[0-9]{3}-[a-z]{2}"})
    assert re.fullmatch(r"[0-9]{3}-[a-z]{2}", r.choices[0].message.content)
    r = chat(client, extra_body={"guided_choice": ["Berlin", "Paris", "Rome"]})
    assert r.choices[0].message.content in ("Berlin", "Paris", "Rome")
    r = chat(client, extra_body={"structured_outputs": {"grammar": 'root ::= "yes" | "no"'}})
    assert r.choices[0].message.content in ("yes", "no")
    r = client.completions.create(model=MODEL_NAME, prompt="A number:", max_tokens=10, temperature=0,
                                  extra_body={"guided_json": {"type": "integer"}})
    assert isinstance(json.loads(r.choices[0].text), int)


def test_tools_required_named_parallel_and_streamed(client):
    ask = [{"role": "user", "content": "What's the weather in Paris?"}]
    r = chat(client, ask, tools=[WEATHER, TIME], tool_choice="required", max_tokens=60)
    calls = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls" and calls and calls[0].function.name in ("get_weather", "get_time")
    assert isinstance(json.loads(calls[0].function.arguments), dict)
    one = chat(client, ask, tools=[WEATHER, TIME], tool_choice="required", parallel_tool_calls=False, max_tokens=120)
    assert len(one.choices[0].message.tool_calls) == 1
    named = chat(client, ask, tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_time"}},
                 max_tokens=60)
    call = named.choices[0].message.tool_calls[0]
    assert call.function.name == "get_time" and set(json.loads(call.function.arguments)) == {"tz"}
    assert call.id.startswith("call_") and named.choices[0].message.content is None
    # Streamed: the SDK's accumulator rebuilds the same call.
    with client.beta.chat.completions.stream(model=MODEL_NAME, messages=ask, tools=[WEATHER], temperature=0,
                                             tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                             max_tokens=60) as stream:
        final = stream.get_final_completion()
    got = final.choices[0].message.tool_calls[0].function
    assert got.name == "get_weather" and json.loads(got.arguments) == json.loads(
        chat(client, ask, tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}},
             max_tokens=60).choices[0].message.tool_calls[0].function.arguments)
    # The tool's answer goes back in; the model answers in text (tool_choice auto).
    follow = ask + [{"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls[:1]]},
                    {"role": "tool", "tool_call_id": calls[0].id, "content": "Sunny, 21 C"}]
    r = chat(client, follow, tools=[WEATHER, TIME], max_tokens=40)
    assert r.choices[0].message.content or r.choices[0].message.tool_calls


def test_auto_tool_choice_answers_in_text_or_calls(client):
    r = chat(client, [{"role": "user", "content": "Hi! How are you?"}], tools=[WEATHER], max_tokens=30)
    m = r.choices[0].message
    assert (m.content and not m.tool_calls) or (m.tool_calls and r.choices[0].finish_reason == "tool_calls")
    chunks = list(chat(client, [{"role": "user", "content": "Hi! How are you?"}], tools=[WEATHER], max_tokens=30,
                       stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == (m.content or "")


def test_a_bad_grammar_is_its_own_400_while_another_request_streams(client):
    done = {}

    def long_stream():
        text = "".join(c.choices[0].delta.content or "" for c in chat(
            client, [{"role": "user", "content": "Write a story about the sea."}], max_tokens=80, stream=True,
            extra_body={"ignore_eos": True})  # 80 tokens whatever the CPU's greedy path
            if c.choices)
        done["text"] = text

    t = threading.Thread(target=long_stream)
    t.start()
    for kw in ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}},
               {"extra_body": {"guided_regex": "(a"}},
               {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "nope"}}}],
                "tool_choice": "required"},
               {"extra_body": {"guided_grammar": "root ::= undefined_rule"}}):
        with pytest.raises(openai.BadRequestError):
            chat(client, **kw)
    t.join(180)
    assert len(done.get("text", "")) > 100
    assert "Paris" in chat(client).choices[0].message.content


def test_chat_without_max_tokens_may_use_the_rest_of_the_context(client):
    r = client.chat.completions.create(model=MODEL_NAME, messages=Q, temperature=0)
    assert "Paris" in r.choices[0].message.content and not math.isnan(r.usage.total_tokens)
    if r.choices[0].finish_reason != "stop":  # where a CPU's greedy path never ends, it ends at the context
        assert r.choices[0].finish_reason == "length" and r.usage.total_tokens == MAX_LEN


def test_the_server_started_without_library_warnings(server, client):
    client.models.list()
    log = server.read_log()
    assert "ready: serving" in log and "Warning" not in log, log
