"""langchain-openai against the real server: ChatOpenAI invoke, stream,
batch, bind_tools, with_structured_output (function_calling, json_mode,
json_schema), and the completions LLM's batch (a list of prompts)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from .conftest import MODEL_NAME

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llm(base_url):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=MODEL_NAME, base_url=base_url, api_key="none", temperature=0, max_tokens=60,
                      max_retries=0, timeout=180)


Q = "What is the capital of France?"


def test_invoke_stream_batch(llm):
    answer = llm.invoke(Q).content
    assert "Paris" in answer
    assert "".join(chunk.content for chunk in llm.stream(Q)) == answer
    got = llm.batch([Q, "What is the capital of Italy?", "What is the capital of Germany?"])
    assert got[0].content == answer and all(m.content for m in got[1:])


def get_weather(city: str) -> str:
    """The current weather in a city."""
    return "sunny"


class Capital(BaseModel):
    """A country's capital city."""

    country: str = Field(description="the country")
    capital: str = Field(description="its capital city")


def test_bind_tools_calls_the_tool(llm):
    msg = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("What's the weather in Paris?")
    assert msg.tool_calls and msg.tool_calls[0]["name"] == "get_weather"
    assert isinstance(msg.tool_calls[0]["args"].get("city"), str)
    anyone = llm.bind_tools([get_weather, Capital], tool_choice="any").invoke("What's the weather in Paris?")
    assert anyone.tool_calls and anyone.tool_calls[0]["name"] in ("get_weather", "Capital")
    chunks = list(llm.bind_tools([get_weather], tool_choice="get_weather").stream("Weather in Rome?"))
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
    got = llm.with_structured_output(schema, method="json_mode").invoke(
        "Answer in JSON with a key 'capital'. What is the capital of France?")
    assert isinstance(got, dict)


def test_completions_llm_batch_sends_a_list_of_prompts(base_url):
    from langchain_openai import OpenAI

    llm = OpenAI(model=MODEL_NAME, base_url=base_url, api_key="none", temperature=0, max_tokens=8, max_retries=0,
                 batch_size=4)
    prompts = ["The capital of France is", "The capital of Italy is", "The capital of Spain is"]
    got = llm.batch(prompts)
    # One request of three prompts: each answer starts as its prompt asked alone (batched rows may
    # drift apart a few greedy tokens later, within the default mode's tolerance).
    assert [g.split()[0] for g in got] == [llm.invoke(p).split()[0] for p in prompts] == ["Paris.", "Rome.", "Madrid."]
