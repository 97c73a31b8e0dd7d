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
    ("response_format", {"type": "json_object"}),
    ("response_format", {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}),
    ("tools", [{"type": "function", "function": {"name": "f", "parameters": {}}}]),
    ("tool_choice", "required"),
    ("top_logprobs", 2),
    ("logit_bias", {"50256": -100}),
    ("best_of", 2),
    ("min_tokens", 4),
    ("repetition_penalty", 1.2),
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


def test_seed_outside_the_generator_range_is_a_400_naming_seed():
    assert chat(seed=2**64 - 1).seed == 2**64 - 1 and chat(seed=-(2**63)).seed == -(2**63)
    assert refused(ChatRequest, {"messages": USER, "seed": 2**64}).param == "seed"


def test_text_parts_join_with_newlines_and_other_parts_are_named():
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert chat(messages=[{"role": "user", "content": parts}]).messages[0].text() == "a\nb"
    image = {"type": "image_url", "image_url": {"url": "http://x/y.png"}}
    err = refused(ChatRequest, {"messages": [{"role": "user", "content": [image]}]})
    assert err.param == "messages.0.content" and "image_url" in err.message


@pytest.mark.parametrize("prompt,want", [("hi", "hi"), (["hi"], "hi"), ([1, 2], [1, 2]), ([[1, 2]], [1, 2])])
def test_one_prompt_in_any_of_the_client_shapes(prompt, want):
    assert completion(prompt=prompt).prompt == want


@pytest.mark.parametrize("prompt", ["", [], [""], [[]], ["a", "b"], [[1], [2]], [True, 5], [1.5]])
def test_bad_prompts_are_a_400_naming_prompt(prompt):
    assert refused(CompletionRequest, {"prompt": prompt}).param == "prompt"
