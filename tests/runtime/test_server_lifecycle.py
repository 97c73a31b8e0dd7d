"""Lifecycle of the real server: readiness while loading, the bounded queue,
client disconnects, and draining on SIGTERM. Tests run in file order; the
last one stops the server."""

from __future__ import annotations

import signal
import time

import httpx
import openai
import pytest

from .conftest import MODEL_NAME

pytestmark = pytest.mark.slow

DRAIN_TIMEOUT = 15


@pytest.fixture(scope="module")
def server(server_factory):
    s = server_factory("--max-num-seqs", "2", "--max-queue-len", "1", "--max-model-len", "1024",
                       "--drain-timeout", str(DRAIN_TIMEOUT))
    live, ready = [], []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert s.proc.poll() is None, s.read_log()
        try:
            live.append(httpx.get(s.base + "/v1/health/live", timeout=5).status_code)
            ready.append(httpx.get(s.base + "/v1/health/ready", timeout=5).status_code)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        if ready[-1] == 200:
            break
        time.sleep(0.2)
    s.seen = (live, ready)
    return s


@pytest.fixture(scope="module")
def client(server):
    return server.openai()


def long_stream(client, max_tokens=800, content="Tell me a very long story about a dragon."):
    return client.chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": content}], temperature=0,
        max_tokens=max_tokens, stream=True, extra_body={"ignore_eos": True},
    )


def wait_metric(server, name, value, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.metric(name) == value:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} != {value} after {timeout} s (now {server.metric(name)})")


def test_ready_is_503_while_loading_and_live_answers(server):
    live, ready = server.seen
    assert ready[0] == 503 and ready[-1] == 200
    assert set(live) == {200}


def test_first_request_after_ready_is_answered(client):
    r = client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert r.choices[0].message.content is not None


def test_wrong_digest_refuses_to_serve(server_factory):
    bad = server_factory("--sha256", "SmolLM2-135M-Instruct.Q4_1.gguf=" + "0" * 64, "--max-model-len", "64")
    assert bad.proc.wait(timeout=120) == 1
    assert "digests do not match" in bad.read_log()


def test_client_disconnect_frees_the_slot(client, server):
    s = long_stream(client)
    got = [next(iter(s)) for _ in range(3)]
    assert got
    assert server.metric("vllm:num_requests_running") == 1
    # Blocks in use, as vLLM counts: a few 16-token blocks of the sequence's
    # share, which is half the cache (2 sequences' worth).
    assert 0 < server.metric("vllm:kv_cache_usage_perc") < 0.5
    s.close()  # 800 tokens would take far longer than the wait below
    wait_metric(server, "vllm:num_requests_running", 0, timeout=10)
    assert server.metric("vllm:kv_cache_usage_perc") == 0.0


def test_non_streaming_client_that_gives_up_frees_the_slot(server):
    body = {"model": MODEL_NAME, "prompt": "Once upon a time", "max_tokens": 800, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.base + "/v1/completions", json=body, timeout=httpx.Timeout(60, read=1.5))
    wait_metric(server, "vllm:num_requests_running", 0, timeout=10)
    assert server.metric("vllm:kv_cache_usage_perc") == 0.0


def test_full_queue_gets_429_with_retry_after(client, server):
    a, b = long_stream(client), long_stream(client)
    next(iter(a)), next(iter(b))
    wait_metric(server, "vllm:num_requests_running", 2)
    # Third request has no slot and waits: it fills the one-place queue. Its
    # response has not started, so it is sent from a raw connection.
    with httpx.Client(base_url=server.base, timeout=60) as h:
        body = {"model": MODEL_NAME, "prompt": "Once upon a time", "max_tokens": 5, "stream": True}
        with h.stream("POST", "/v1/completions", json=body) as waiting:
            wait_metric(server, "vllm:num_requests_waiting", 1)
            r = httpx.post(server.base + "/v1/completions", json=body, timeout=30)
            assert r.status_code == 429
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["error"]["type"] == "RateLimitError"
            a.close()  # frees a slot: the waiting request runs and completes
            lines = [line for line in waiting.iter_lines() if line]
            assert lines[-1] == "data: [DONE]"
    b.close()
    wait_metric(server, "vllm:num_requests_running", 0)
    r = client.completions.create(model=MODEL_NAME, prompt="Paris is the capital of", max_tokens=3, temperature=0)
    assert r.choices[0].text


def test_sigterm_finishes_in_flight_requests_then_exits_0(client, server):
    short = long_stream(client, max_tokens=16, content="Count from one to twenty.")
    endless = long_stream(client, max_tokens=900)
    it_short, it_endless = iter(short), iter(endless)
    next(it_short), next(it_endless)
    t0 = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while httpx.get(server.base + "/v1/health/ready", timeout=5).status_code != 503:
        assert time.monotonic() < deadline, "readiness still 200 after SIGTERM"
        time.sleep(0.05)
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert e.value.status_code == 503
    assert httpx.get(server.base + "/v1/health/live", timeout=5).status_code == 200
    # The short stream finishes normally.
    rest = list(it_short)
    assert rest[-1].choices[0].finish_reason == "length"
    # The one that cannot finish is cut at the drain timeout, and the process exits 0.
    finish = [c.choices[0].finish_reason for c in it_endless if c.choices]
    assert finish[-1] == "abort"
    code = server.proc.wait(timeout=DRAIN_TIMEOUT + 20)
    assert code == 0, server.read_log()
    elapsed = time.monotonic() - t0
    assert DRAIN_TIMEOUT - 1 <= elapsed <= DRAIN_TIMEOUT + 15
