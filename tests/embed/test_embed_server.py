"""The embedding server, through the real openai client and LangChain, and under bad input."""

from __future__ import annotations

import httpx
import pytest

from .conftest import EMBED_NAME, TEXTS

pytestmark = [pytest.mark.slow, pytest.mark.model_output]
KEY = "sk-embed-test"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _cos(a, b) -> float:
    import torch

    return torch.nn.functional.cosine_similarity(torch.tensor(a), b, dim=0).item()


@pytest.mark.parametrize("fmt", ["float", "base64"])
def test_openai_client_matches_the_reference(embed_server, ref_vectors, fmt):
    client = embed_server.openai(api_key=KEY)
    got = client.embeddings.create(model=EMBED_NAME, input=TEXTS, encoding_format=fmt)
    assert [d.index for d in got.data] == list(range(len(TEXTS)))
    for d, ref in zip(got.data, ref_vectors):
        vec = d.embedding
        if fmt == "base64":  # asked for by name, the SDK hands the string back as sent: little-endian float32
            import base64

            import numpy as np

            vec = np.frombuffer(base64.b64decode(vec), dtype="<f4").tolist()
        assert len(vec) == 384 and _cos(vec, ref) >= 0.999
    assert got.usage.prompt_tokens == got.usage.total_tokens > len(TEXTS) * 3
    assert got.model == EMBED_NAME


def test_openai_default_and_token_ids(embed_server, ref_vectors):
    client = embed_server.openai(api_key=KEY)
    one = client.embeddings.create(model=EMBED_NAME, input=TEXTS[0])  # the SDK asks for base64 itself
    assert _cos(one.data[0].embedding, ref_vectors[0]) >= 0.999
    from tokenizers import Tokenizer

    from runtimes.model_archive import unpacked
    from .conftest import model_zip

    tok = Tokenizer.from_file(str(unpacked(model_zip()) / "tokenizer.json"))
    tok.no_padding()  # the file pads to 128, which the server does not do (it packs)
    ids = [tok.encode(t).ids for t in TEXTS[:2]]
    by_ids = client.embeddings.create(model=EMBED_NAME, input=ids)
    assert all(_cos(d.embedding, r) >= 0.999 for d, r in zip(by_ids.data, ref_vectors[:2]))
    single = client.embeddings.create(model=EMBED_NAME, input=ids[1], encoding_format="float")
    assert _cos(single.data[0].embedding, ref_vectors[1]) >= 0.999


def test_langchain_openai_embeddings(embed_server, ref_vectors):
    from langchain_openai import OpenAIEmbeddings

    # A non-OpenAI server: send text, not tiktoken ids (check_embedding_ctx_length=False).
    emb = OpenAIEmbeddings(model=EMBED_NAME, base_url=embed_server.base + "/v1", api_key=KEY,
                           check_embedding_ctx_length=False, max_retries=0, chunk_size=4)
    docs = emb.embed_documents(TEXTS)  # chunk_size 4: two requests
    assert len(docs) == len(TEXTS) and all(_cos(d, r) >= 0.999 for d, r in zip(docs, ref_vectors))
    assert _cos(emb.embed_query(TEXTS[2]), ref_vectors[2]) >= 0.999


def test_score_and_rerank(embed_server):
    post = lambda path, body: httpx.post(embed_server.base + path, json=body, headers=AUTH, timeout=60)
    r = post("/score", {"model": EMBED_NAME, "text_1": TEXTS[0], "text_2": TEXTS[1:3]})
    assert r.status_code == 200, r.text
    s = [d["score"] for d in r.json()["data"]]
    assert abs(s[0] - 0.665) < 0.01 and abs(s[1] - 0.103) < 0.01 and r.json()["usage"]["prompt_tokens"] > 0
    same = post("/v1/score", {"queries": [TEXTS[0], TEXTS[1]], "documents": [TEXTS[1], TEXTS[0]]}).json()
    assert [round(d["score"], 4) for d in same["data"]] == [round(s[0], 4)] * 2  # N:N pairs
    bad = post("/score", {"text_1": TEXTS[:2], "text_2": TEXTS[:3]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "text_2"
    rr = post("/rerank", {"model": EMBED_NAME, "query": TEXTS[0], "documents": [TEXTS[2], TEXTS[1], TEXTS[3]]})
    assert rr.status_code == 200, rr.text
    results = rr.json()["results"]
    assert results[0]["index"] == 1 and results[0]["document"]["text"] == TEXTS[1]
    assert [x["relevance_score"] for x in results] == sorted((x["relevance_score"] for x in results), reverse=True)
    top = post("/v2/rerank", {"query": TEXTS[0], "documents": [TEXTS[2], TEXTS[1]], "top_n": 1}).json()["results"]
    assert [x["index"] for x in top] == [1]


BAD = [
    ({"input": ["x"] * 65}, "input", "--max-embed-inputs"),
    ({"input": "word " * 300}, "input", "maximum context length is 256"),
    ({"input": ["word " * 200] * 30}, "input", "--max-embed-tokens"),
    ({"input": "x", "dimensions": 64}, "dimensions", "dimensions"),
    ({"input": "x", "encoding_format": "bytes"}, "encoding_format", "encoding_format"),
    ({"input": []}, "input", "empty"),
    ({"input": [""]}, "input", "empty"),
    ({"input": [[101, 999999]]}, "input", "vocabulary"),
    ({"input": [1.5]}, "input", "string"),
    ({}, "input", "required"),
]


@pytest.mark.parametrize("body,param,words", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_requests_are_named_400s(embed_server, body, param, words):
    r = httpx.post(embed_server.base + "/v1/embeddings", json={"model": EMBED_NAME, **body}, headers=AUTH, timeout=60)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and words in err["message"]


def test_contract_key_probes_wrong_task_and_metrics(embed_server):
    base = embed_server.base
    assert httpx.post(base + "/v1/embeddings", json={"input": "x"}, timeout=30).status_code == 401
    assert httpx.post(base + "/rerank", json={"query": "x", "documents": ["y"]}, timeout=30).status_code == 401
    assert httpx.get(base + "/v1/health/live", timeout=10).status_code == 200
    assert httpx.get(base + "/v1/health/ready", timeout=10).status_code == 200
    for path in ("/v1/chat/completions", "/v1/completions"):
        r = httpx.post(base + path, json={"model": EMBED_NAME, "messages": [{"role": "user", "content": "hi"}],
                                          "prompt": "hi"}, headers=AUTH, timeout=30)
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_supported", r.text
    r = httpx.post(base + "/v1/embeddings", json={"model": "nope", "input": "x"}, headers=AUTH, timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    models = httpx.get(base + "/v1/models", headers=AUTH, timeout=10).json()["data"]
    assert [m["id"] for m in models] == [EMBED_NAME] and models[0]["max_model_len"] == 256
    before = embed_server.metric("vllm:prompt_tokens_total")
    ok = httpx.post(base + "/v1/embeddings", json={"input": TEXTS[0]}, headers=AUTH, timeout=30)
    assert ok.status_code == 200
    assert embed_server.metric("vllm:prompt_tokens_total") == before + ok.json()["usage"]["prompt_tokens"]
    assert embed_server.metric('vllm:request_success_total{finished_reason="stop",model_name="%s"}' % EMBED_NAME) > 0


def test_huge_inputs_get_named_400s_and_never_stall_the_probes(embed_server):
    """4 clients each send a 3 MB text (about a million tokens): each is refused by name, and the live probe
    answers within the kubelet's 1 s throughout (tokenizing runs off the event loop)."""
    import threading

    body = {"model": EMBED_NAME, "input": "word " * 600_000}
    answers: list[httpx.Response] = []

    def send():
        answers.append(httpx.post(embed_server.base + "/v1/embeddings", json=body, headers=AUTH, timeout=120))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    probes = 0
    while any(t.is_alive() for t in threads):
        assert httpx.get(embed_server.base + "/v1/health/live", timeout=1.0).status_code == 200
        probes += 1
    for t in threads:
        t.join()
    assert probes >= 1 and len(answers) == 4
    for r in answers:
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded", r.text[:300]
    ok = httpx.post(embed_server.base + "/v1/embeddings", json={"input": "still serving"}, headers=AUTH, timeout=30)
    assert ok.status_code == 200
