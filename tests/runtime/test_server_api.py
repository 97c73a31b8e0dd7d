"""The real server (SmolLM2, subprocess) through the real openai client:
answers, streaming, batch invariance, metrics and bad requests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from answers import CAPITAL_Q, JAPAN_Q, TERSE

from .conftest import MODEL_NAME

pytestmark = pytest.mark.slow

MAX_LEN = 512


@pytest.fixture(scope="module")
def server(server_factory):
    s = server_factory("--max-num-seqs", "8", "--max-model-len", str(MAX_LEN), "--max-queue-len", "32")
    s.wait_ready()
    return s


@pytest.fixture(scope="module")
def client(server):
    return server.openai()


def ask(client, content, max_tokens=48, **kw):
    r = client.chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": content}], temperature=0, max_tokens=max_tokens, **kw
    )
    return r


def assert_still_serving(client):
    # Whatever the words (they are the model's, and the CPU's: tests/answers.py), a whole answer comes back.
    r = ask(client, CAPITAL_Q, max_tokens=4)
    assert r.choices[0].finish_reason in ("stop", "length") and r.usage.completion_tokens >= 1


def test_models_lists_the_served_name(client):
    assert [m.id for m in client.models.list().data] == [MODEL_NAME]


@pytest.mark.model_output
def test_capital_of_france(client):
    r = ask(client, CAPITAL_Q)
    assert "Paris" in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 10 and 0 < r.usage.completion_tokens <= 48
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


@pytest.mark.model_output
def test_stream_yields_exactly_the_non_streamed_text(client, server):
    q = "Write two sentences about the sea."
    whole = ask(client, q).choices[0].message.content
    chunks = list(ask(client, q, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole and len(whole) > 20
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    kw = dict(model=MODEL_NAME, prompt="The three primary colors are", max_tokens=20, temperature=0)
    plain = client.completions.create(**kw).choices[0].text
    streamed = "".join(c.choices[0].text for c in client.completions.create(stream=True, **kw))
    assert streamed == plain and plain

    # Raw SSE: OpenAI's framing, ending with [DONE].
    with httpx.stream("POST", server.base + "/v1/completions", json={**kw, "stream": True}, timeout=60) as r:
        lines = [line for line in r.iter_lines() if line]
    assert r.headers["content-type"].startswith("text/event-stream")
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"


PROMPTS = [
    CAPITAL_Q,
    "Write a haiku about autumn.",
    "What is 12 times 12?",
    "Name three animals that live in the ocean.",
    "Explain what a CPU does in one sentence.",
    "Translate 'good morning' into Spanish.",
    "Give me a tip for learning to cook.",
    "What color is the sky on a clear day?",
]


@pytest.mark.model_output
def test_batch_invariant_server_answers_concurrent_greedy_requests_as_it_answers_them_alone(server_factory):
    # The default path batches rows and promises answers to a tolerance only
    # (tests/runtime/test_engine.py); --batch-invariant promises the bits.
    s = server_factory("--max-num-seqs", "8", "--max-model-len", str(MAX_LEN), "--batch-invariant")
    s.wait_ready()
    bi = s.openai()
    alone = [ask(bi, p, max_tokens=24).choices[0].message.content for p in PROMPTS]
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        together = list(pool.map(lambda p: ask(bi, p, max_tokens=24).choices[0].message.content, PROMPTS))
    for p, a, t in zip(PROMPTS, alone, together):
        assert t == a, f"batched answer differs for {p!r}"
    assert "Paris" in alone[0]
    s.stop()


def test_metrics_move(client, server):
    names = ["vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:time_to_first_token_seconds_count",
             "vllm:e2e_request_latency_seconds_count", "vllm:inter_token_latency_seconds_count"]
    before = {n: server.metric(n) for n in names}
    r = ask(client, "Say hello.", max_tokens=8)
    after = {n: server.metric(n) for n in names}
    assert after["vllm:prompt_tokens_total"] - before["vllm:prompt_tokens_total"] == r.usage.prompt_tokens
    assert after["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"] == r.usage.completion_tokens
    assert after["vllm:time_to_first_token_seconds_count"] == before["vllm:time_to_first_token_seconds_count"] + 1
    assert after["vllm:e2e_request_latency_seconds_count"] == before["vllm:e2e_request_latency_seconds_count"] + 1
    assert after["vllm:inter_token_latency_seconds_count"] - before["vllm:inter_token_latency_seconds_count"] == r.usage.completion_tokens - 1
    text = httpx.get(server.base + "/metrics").text
    for gauge in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"):
        assert f'{gauge}{{model_name="{MODEL_NAME}"}} 0.0' in text



def test_cache_config_info_as_the_endpoint_picker_reads_it(server):
    """vLLM's info gauge: value 1, the KV cache's shape in labels. The EPP sizes its
    KV-cache scorer from block_size x num_gpu_blocks; 8 slots x 512 tokens / 16 = 256."""
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(httpx.get(server.base + "/metrics").text)}
    (sample,) = families["vllm:cache_config_info"].samples
    assert sample.value == 1.0
    assert sample.labels["block_size"] == "16"
    assert sample.labels["num_gpu_blocks"] == str(8 * (MAX_LEN // 16))
    assert sample.labels["enable_prefix_caching"] == "True"

def post(server, path, **kw):
    return httpx.post(server.base + path, timeout=60, **kw)


CHAT = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "hi"}]}
JSON = {"content-type": "application/json"}
LONG = "hello " * (MAX_LEN + 10)
BAD = [
    ("malformed json", "/v1/chat/completions", {"content": b'{"model": "x", "messages": [', "headers": JSON}, 400, None),
    ("json array body", "/v1/chat/completions", {"json": [1, 2]}, 400, None),
    ("no messages", "/v1/chat/completions", {"json": {"model": MODEL_NAME}}, 400, "messages"),
    ("empty messages", "/v1/chat/completions", {"json": {**CHAT, "messages": []}}, 400, "messages"),
    ("bad role", "/v1/chat/completions", {"json": {**CHAT, "messages": [{"role": "wizard", "content": "x"}]}}, 400, "messages.0.role"),
    ("temperature type", "/v1/chat/completions", {"json": {**CHAT, "temperature": "hot"}}, 400, "temperature"),
    ("negative temperature", "/v1/chat/completions", {"json": {**CHAT, "temperature": -1}}, 400, "temperature"),
    ("top_p zero", "/v1/chat/completions", {"json": {**CHAT, "top_p": 0}}, 400, "top_p"),
    ("max_tokens zero", "/v1/chat/completions", {"json": {**CHAT, "max_tokens": 0}}, 400, "max_tokens"),
    ("n=17", "/v1/chat/completions", {"json": {**CHAT, "n": 17}}, 400, "n"),
    ("stop type", "/v1/chat/completions", {"json": {**CHAT, "stop": 5}}, 400, "stop"),
    ("unknown model", "/v1/chat/completions", {"json": {**CHAT, "model": "no-such-model"}}, 404, "model"),
    ("unknown model (completions)", "/v1/completions", {"json": {"model": "gpt-4", "prompt": "x"}}, 404, "model"),
    ("prompt too long", "/v1/completions", {"json": {"model": MODEL_NAME, "prompt": LONG}}, 400, "prompt"),
    ("chat too long", "/v1/chat/completions", {"json": {**CHAT, "messages": [{"role": "user", "content": LONG}]}}, 400, "messages"),
    ("max_tokens past context", "/v1/completions", {"json": {"model": MODEL_NAME, "prompt": "hi", "max_tokens": MAX_LEN}}, 400, "max_tokens"),
    ("token id out of range", "/v1/completions", {"json": {"model": MODEL_NAME, "prompt": [1, 10**9]}}, 400, "prompt"),
    ("empty prompt", "/v1/completions", {"json": {"model": MODEL_NAME, "prompt": ""}}, 400, "prompt"),
    ("max_completion_tokens past context", "/v1/chat/completions",
     {"json": {**CHAT, "max_completion_tokens": MAX_LEN}}, 400, "max_completion_tokens"),
    ("bad json schema", "/v1/chat/completions",
     {"json": {**CHAT, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}}},
     400, "response_format"),
    ("bad regex", "/v1/chat/completions", {"json": {**CHAT, "guided_regex": "(unclosed"}}, 400, "guided_regex"),
    ("bad tool schema", "/v1/chat/completions",
     {"json": {**CHAT, "tool_choice": "required",
               "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "nope"}}}]}}, 400, "tools"),
    ("logit_bias past the vocabulary", "/v1/chat/completions", {"json": {**CHAT, "logit_bias": {"999999": 5}}}, 400,
     "logit_bias"),
    ("logit_bias key not a token id", "/v1/chat/completions", {"json": {**CHAT, "logit_bias": {"\u00b2": 5}}}, 400,
     "logit_bias"),
    ("best_of", "/v1/completions", {"json": {"model": MODEL_NAME, "prompt": "x", "best_of": 2}}, 400, "best_of"),
    ("image part", "/v1/chat/completions",
     {"json": {**CHAT, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}},
     400, "messages.0.content"),
    ("seed too big", "/v1/chat/completions", {"json": {**CHAT, "seed": 2**64}}, 400, "seed"),
    ("suffix", "/v1/completions", {"json": {"model": MODEL_NAME, "prompt": "x", "suffix": "y"}}, 400, "suffix"),
    ("17 prompts", "/v1/completions", {"json": {"model": MODEL_NAME, "prompt": ["a"] * 17}}, 400, "prompt"),
    ("unknown route", "/v1/no-such-route", {"json": {}}, 404, None),
]


@pytest.mark.parametrize("name,path,kw,status,param", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(server, client, name, path, kw, status, param):
    r = post(server, path, **kw)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["type"] == ("NotFoundError" if status == 404 else "BadRequestError")
    # OpenAI's code is a string naming the cause, or null (never vLLM's integer status).
    want_code = {404: "model_not_found" if param == "model" else None}.get(status)
    if name.endswith("too long") or "past context" in name:
        want_code = "context_length_exceeded"
    assert err["code"] == want_code
    if param:
        assert err["param"] == param
    assert_still_serving(client)


def test_openai_client_sees_typed_errors(client, server):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert f"`{MODEL_NAME}`" in str(e.value)  # the 404 names the id this server serves (issue 25)
    assert f"`{MODEL_NAME}`" in httpx.get(server.base + "/v1/models/nope").json()["error"]["message"]
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL_NAME, prompt=LONG)
    assert_still_serving(client)


def test_response_fields_are_typed_as_openai_s(client, server):
    r = ask(client, "Say hi.", max_tokens=4)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == MODEL_NAME
    assert isinstance(r.created, int) and r.system_fingerprint.startswith("fp_")
    chunks = list(ask(client, "Say hi.", max_tokens=4, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {(c.id, c.object, c.created, c.system_fingerprint) for c in chunks} == {
        (chunks[0].id, "chat.completion.chunk", chunks[0].created, r.system_fingerprint)}
    c = client.completions.create(model=MODEL_NAME, prompt="Hi", max_tokens=2, temperature=0)
    assert c.id.startswith("cmpl-") and c.object == "text_completion" and c.system_fingerprint == r.system_fingerprint


@pytest.mark.model_output
def test_none_arguments_from_the_client_mean_defaults(client):
    # openai's client sends JSON null for an explicit None.
    r = client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": CAPITAL_Q}],
                                       max_tokens=12, temperature=0, top_p=None, n=None, stop=None, seed=None,
                                       presence_penalty=None, frequency_penalty=None)
    assert "Paris" in r.choices[0].message.content


@pytest.mark.model_output
def test_completions_default_to_16_tokens_and_take_nested_token_ids(client, smol_tokenizer):
    r = client.completions.create(model=MODEL_NAME, prompt="Once upon a time", temperature=0, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 16 and r.choices[0].finish_reason == "length"
    near_limit = client.completions.create(model=MODEL_NAME, prompt=[504] * (MAX_LEN - 5), extra_body={"ignore_eos": True})
    assert near_limit.usage.completion_tokens == 5 and near_limit.choices[0].finish_reason == "length"
    ids = smol_tokenizer.encode("The capital of France is")
    flat = client.completions.create(model=MODEL_NAME, prompt=ids, max_tokens=4, temperature=0)
    nested = client.completions.create(model=MODEL_NAME, prompt=[ids], max_tokens=4, temperature=0)
    assert nested.choices[0].text == flat.choices[0].text and nested.usage == flat.usage


def test_text_parts_are_joined_by_newlines_as_vllm_does(client):
    parts = [{"type": "text", "text": "What is the capital"}, {"type": "text", "text": "of France?"}]
    kw = dict(model=MODEL_NAME, max_tokens=1, temperature=0)
    by_parts = client.chat.completions.create(messages=[{"role": "user", "content": parts}], **kw)
    joined = client.chat.completions.create(messages=[{"role": "user", "content": "What is the capital\nof France?"}], **kw)
    assert by_parts.usage.prompt_tokens == joined.usage.prompt_tokens


@pytest.mark.model_output
def test_seeded_sampling_repeats(client):
    def story(seed):
        return client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "Tell me a story."}],
                                              temperature=1.0, seed=seed, max_tokens=12).choices[0].message.content
    assert story(1234) == story(1234) != story(4321)


@pytest.mark.model_output
def test_a_repeated_system_prompt_hits_the_prefix_cache(client, server):
    system = TERSE  # well over one 16-token block
    before = {n: server.metric(n) for n in ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total")}
    answers = []
    for q in (CAPITAL_Q, JAPAN_Q):
        r = client.chat.completions.create(model=MODEL_NAME, temperature=0, max_tokens=8, messages=[
            {"role": "system", "content": system}, {"role": "user", "content": q}])
        answers.append(r)
    queries = server.metric("vllm:prefix_cache_queries_total") - before["vllm:prefix_cache_queries_total"]
    hits = server.metric("vllm:prefix_cache_hits_total") - before["vllm:prefix_cache_hits_total"]
    assert queries == sum(a.usage.prompt_tokens for a in answers)
    assert hits >= 64 and hits % 16 == 0, "the second request found the system prompt's blocks"
    assert "Paris" in answers[0].choices[0].message.content and "Tokyo" in answers[1].choices[0].message.content
