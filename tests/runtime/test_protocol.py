"""Request parsing (protocol.py) as the openai client and curl users send it:
nulls, unsupported options, content parts, prompt shapes. No server needed."""

from __future__ import annotations

import pytest

from runtimes.fallback.protocol import APIError, ChatRequest, CompletionRequest, parse

USER = [{"role": "user", "content": "hi"}]


def chat(**kw):
    return parse(ChatRequest, {"messages": USER, **kw})


def completion(**kw):
    return parse(CompletionRequest, {"prompt": "hi", **kw})


def refused(cls, body) -> APIError:
    with pytest.raises(APIError) as e:
        parse(cls, body)
    assert e.value.status == 400
    return e.value


def test_null_means_the_default():
    # openai's client sends null for an explicit None argument.
    nulls = dict(temperature=None, top_p=None, n=None, stream=None, stop=None, presence_penalty=None,
                 frequency_penalty=None, max_tokens=None, max_completion_tokens=None, seed=None, logprobs=None)
    r = chat(**nulls)
    assert (r.temperature, r.top_p, r.n, r.stream, r.requested_max_tokens) == (1.0, 1.0, 1, False, None)
    assert r.sampling_params(8).temperature == 1.0


def test_completions_default_to_16_tokens_within_the_room_left():
    assert completion().default_max_tokens(100) == 16 and completion(max_tokens=None).default_max_tokens(100) == 16
    assert completion().default_max_tokens(5) == 5  # a default never makes a prompt too long
    assert completion(max_tokens=3).requested_max_tokens == 3
    assert chat().default_max_tokens(100) == 100


UNSUPPORTED_CHAT = [
    ("best_of", 2),
    ("use_beam_search", True),
    ("functions", [{"name": "f", "parameters": {}}]),
    ("function_call", {"name": "f"}),
    ("include_stop_str_in_output", True),
    ("continue_final_message", True),
    ("add_generation_prompt", False),
]


@pytest.mark.parametrize("name,value", UNSUPPORTED_CHAT, ids=[f"{n}={v}" for n, v in UNSUPPORTED_CHAT])
def test_options_we_cannot_honour_are_refused_by_name(name, value):
    err = refused(ChatRequest, {"messages": USER, name: value})
    assert err.param == name and "not supported" in err.message


def test_completion_suffix_is_refused():
    assert refused(CompletionRequest, {"prompt": "x", "suffix": "y"}).param == "suffix"


def test_no_op_values_of_unsupported_options_are_accepted():
    chat(response_format={"type": "text"}, tools=[], tool_choice="none", logit_bias={}, top_logprobs=0, best_of=1,
         repetition_penalty=1.0, user="u", frequency_penalty=0, presence_penalty=0, logprobs=False)
    completion(suffix="", best_of=1, logit_bias={})


def test_the_sampling_options_reach_the_sampler():
    p = chat(presence_penalty=0.5, frequency_penalty=-0.5, repetition_penalty=1.3, min_p=0.1, min_tokens=3,
             logit_bias={"7": -100, "9": 2.5}, logprobs=True, top_logprobs=3, n=4).sampling_params(10)
    assert (p.presence_penalty, p.frequency_penalty, p.repetition_penalty, p.min_p, p.min_tokens) == (0.5, -0.5, 1.3, 0.1, 3)
    assert p.logit_bias == ((7, -100.0), (9, 2.5)) and p.logprobs == 3 and p.prompt_logprobs is None and p.processed
    c = completion(logprobs=2, echo=True, max_tokens=0).sampling_params(0)
    assert (c.logprobs, c.prompt_logprobs, c.max_tokens) == (2, 2, 1)  # max_tokens 0: one step, its token dropped
    assert not chat().sampling_params(5).processed  # a plain request takes the plain path


BAD_VALUES = [
    ("n", 17), ("top_logprobs", 21), ("logit_bias", {"x": 1}), ("logit_bias", {"5": 101}),
    ("repetition_penalty", 0), ("presence_penalty", 2.5), ("min_p", 1.5), ("min_tokens", -1),
    ("tool_choice", {"type": "function", "function": {"name": "nope"}}), ("tool_choice", "required"),
    ("tools", [{"type": "function", "function": {"name": "bad name!"}}]),
    ("response_format", {"type": "xml"}),
]


@pytest.mark.parametrize("name,value", BAD_VALUES, ids=[f"{n}={v}" for n, v in BAD_VALUES])
def test_bad_values_are_a_400(name, value):
    refused(ChatRequest, {"messages": USER, name: value})


@pytest.mark.parametrize("key", ["\u00b2", "\u0663", "\uff15", " 5", "-1", "1e3", "1234567890"])
def test_logit_bias_keys_are_ascii_token_ids(key):
    # "²".isdigit() is True but int("²") raises: it used to pass here and fail as a 500 in the preparer.
    err = refused(ChatRequest, {"messages": USER, "logit_bias": {key: 1}})
    assert err.param == "logit_bias" and err.message.startswith("logit_bias:"), err.message


def test_top_logprobs_need_logprobs():
    refused(ChatRequest, {"messages": USER, "top_logprobs": 2})


def test_constraints_are_read_from_every_spelling_and_one_at_most():
    assert chat(response_format={"type": "json_object"}).constraint().kind == "json_object"
    spec = chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}).constraint()
    assert (spec.kind, spec.value) == ("json", {"type": "object"})
    assert chat(guided_json='{"type": "integer"}').constraint().value == {"type": "integer"}
    assert chat(guided_regex="a+").constraint().kind == "regex"
    assert chat(guided_choice=["yes", "no"]).constraint().value == ["yes", "no"]
    assert chat(structured_outputs={"choice": ["a"]}).constraint().kind == "choice"
    assert chat().constraint() is None and chat(response_format={"type": "text"}).constraint() is None
    with pytest.raises(APIError) as e:
        chat(guided_regex="a", response_format={"type": "json_object"}).constraint()
    assert e.value.status == 400


def test_tool_messages_are_accepted_and_malformed_calls_named():
    msgs = [{"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "w", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
    assert chat(messages=msgs).messages[1].tool_calls[0]["id"] == "c1"
    bad = [msgs[0], {"role": "assistant", "tool_calls": [{"function": {"name": "w", "arguments": "{not json"}}]}]
    assert refused(ChatRequest, {"messages": bad}).param.startswith("messages")


def test_seed_outside_the_generator_range_is_a_400_naming_seed():
    assert chat(seed=2**64 - 1).seed == 2**64 - 1 and chat(seed=-(2**63)).seed == -(2**63)
    assert refused(ChatRequest, {"messages": USER, "seed": 2**64}).param == "seed"


def test_text_parts_join_with_newlines_and_other_parts_are_named():
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert chat(messages=[{"role": "user", "content": parts}]).messages[0].text() == "a\nb"
    image = {"type": "image_url", "image_url": {"url": "http://x/y.png"}}
    err = refused(ChatRequest, {"messages": [{"role": "user", "content": [image]}]})
    assert err.param == "messages.0.content" and "image_url" in err.message


@pytest.mark.parametrize("prompt,want", [("hi", ["hi"]), (["hi"], ["hi"]), ([1, 2], [[1, 2]]), ([[1, 2]], [[1, 2]]),
                                         (["a", "b"], ["a", "b"]), ([[1], [2, 3]], [[1], [2, 3]])])
def test_prompts_in_any_of_the_client_shapes(prompt, want):
    assert completion(prompt=prompt).prompts == want


def test_prompts_times_n_is_capped():
    refused(CompletionRequest, {"prompt": ["a"] * 5, "n": 4})


@pytest.mark.parametrize("prompt", ["", [], [""], [[]], [["a"]], [[1, "b"]], [True, 5], [1.5], ["a"] * 17])
def test_bad_prompts_are_a_400_naming_prompt(prompt):
    assert refused(CompletionRequest, {"prompt": prompt}).param == "prompt"
