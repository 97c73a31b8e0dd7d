"""langchain-openai against the real server: ChatOpenAI invoke, stream,
batch, bind_tools, with_structured_output (function_calling, json_mode,
json_schema), and the completions LLM's batch (a list of prompts)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from answers import CAPITAL_Q, JAPAN_Q

from .conftest import MODEL_NAME

pytestmark = [pytest.mark.slow, pytest.mark.model_output]


@pytest.fixture(scope="module")
def llm(server, base_url):
    import httpx
    from langchain_openai import ChatOpenAI

    from runtime.conftest import SlowRequestWatch

    return ChatOpenAI(model=MODEL_NAME, base_url=base_url, api_key="none", temperature=0, max_tokens=60,
                      max_retries=0, timeout=180, http_client=httpx.Client(transport=SlowRequestWatch(server)))


Q = CAPITAL_Q  # facts on any CPU (tests/answers.py)


def test_invoke_stream_batch(llm):
    answer = llm.invoke(Q).content
    assert "Paris" in answer
    assert "".join(chunk.content for chunk in llm.stream(Q)) == answer
    # Batched rows are not bit-identical to a request alone (only --batch-invariant promises that): each
    # answer keeps its own fact, in order.
    got = llm.batch([Q, JAPAN_Q, "What is the capital of Germany?"])
    assert "Paris" in got[0].content and "Tokyo" in got[1].content and got[2].content


def get_weather(city: str) -> str:
    """The current weather in a city."""
    return "sunny"


# The same tool as a schema whose string the grammar holds short: an unbounded greedy string can run past
# max_tokens on some CPUs, and a cut call is no call.
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}}, "required": ["city"]}}}


class Capital(BaseModel):
    """A country's capital city."""

    country: str = Field(description="the country", max_length=40)
    capital: str = Field(description="its capital city", max_length=40)


def test_bind_tools_calls_the_tool(llm):
    msg = llm.bind_tools([WEATHER], tool_choice="get_weather").invoke("What's the weather in Paris?")
    assert msg.tool_calls and msg.tool_calls[0]["name"] == "get_weather"
    assert isinstance(msg.tool_calls[0]["args"].get("city"), str)
    anyone = llm.bind_tools([WEATHER, Capital], tool_choice="any").invoke("What's the weather in Paris?")
    assert anyone.tool_calls and anyone.tool_calls[0]["name"] in ("get_weather", "Capital")
    chunks = list(llm.bind_tools([WEATHER], tool_choice="get_weather").stream("Weather in Rome?"))
    whole = chunks[0]
    for c in chunks[1:]:
        whole = whole + c
    assert whole.tool_calls and whole.tool_calls[0]["name"] == "get_weather"


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_with_structured_output_to_a_pydantic_model(llm, method):
    got = llm.with_structured_output(Capital, method=method).invoke(Q)
    assert isinstance(got, Capital) and got.capital


def test_with_structured_output_json_mode(llm):
    schema = {"title": "capital", "description": "a country's capital", "type": "object",
              "properties": {"capital": {"type": "string"}}}
    # json_mode holds the answer to JSON but not its length: parsed when the model stopped, else cut.
    got = llm.bind(max_tokens=200).with_structured_output(schema, method="json_mode", include_raw=True).invoke(
        "Answer in JSON with a key 'capital'. What is the capital of France?")
    if got["raw"].response_metadata["finish_reason"] == "stop":
        assert isinstance(got["parsed"], dict) and got["parsing_error"] is None
    else:
        assert got["raw"].response_metadata["finish_reason"] == "length"


def test_completions_llm_batch_sends_a_list_of_prompts(base_url):
    from langchain_openai import OpenAI

    llm = OpenAI(model=MODEL_NAME, base_url=base_url, api_key="none", temperature=0, max_tokens=8, max_retries=0,
                 batch_size=4)
    prompts = ["The capital of France is", "The capital of Spain is", "The capital of Japan is"]
    got = llm.batch(prompts)
    # One request of three prompts: each answer starts as its prompt asked alone, with the first word each
    # fact names (tests/answers.py; batched rows may drift apart later, within the default mode's tolerance).
    assert [g.split()[0] for g in got] == [llm.invoke(p).split()[0] for p in prompts] == ["Paris.", "Madrid.", "Tokyo."]
