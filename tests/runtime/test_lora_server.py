"""The fallback server with LoRA adapters, over real HTTP and the real openai client:
adapters as models (``parent`` = base), a request's ``model`` picking its adapter, unknown
models 404, vLLM's runtime load/unload behind the API key, a watched drop-in directory,
bad adapters as 400s naming the field, and ``vllm:lora_requests_info``."""

from __future__ import annotations

import concurrent.futures as cf
import shutil
import time

import httpx
import pytest

from tests.lora_adapters import SMOL, tensors, write_adapter
from tests.runtime.conftest import MODEL_NAME, ServerProcess

KEY = "test-lora-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROMPT = "Complete the sentence: The capital of France is"


@pytest.fixture(scope="module")
def lora_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    made = root / "made"
    for name, seed, rank in (("a1", 1, 8), ("a2", 2, 4), ("a3", 3, 16)):
        write_adapter(made / name, SMOL, seed, rank=rank, alpha=2 * rank)
    drop = root / "drop"
    # Runtime loads must lie inside --lora-dir; "store" has no adapter_config.json, so the watch skips it.
    write_adapter(drop / "store" / "zero", SMOL, 4, rank=8, zero_b=True)
    shutil.copytree(made / "a3", drop / "a3")
    srv = ServerProcess(["--batch-invariant", "--max-loras", "3", "--max-cpu-loras", "4", "--max-lora-rank", "16",
                         "--lora-modules", f"a1={made / 'a1'}", '{"name": "a2", "path": "%s", "base_model_name": "%s"}'
                         % (made / "a2", MODEL_NAME), "--lora-dir", str(drop), "--lora-refresh-interval", "0.3"],
                        root / "server.log", env={"PACKAGER_API_KEY": KEY, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"})
    try:
        srv.wait_ready()
        srv.made, srv.drop = made, drop
        yield srv
    finally:
        srv.stop()


def post(srv, path, body, headers=AUTH):
    return httpx.post(srv.base + path, json=body, headers=headers, timeout=60)


def models(srv) -> dict[str, dict]:
    r = httpx.get(srv.base + "/v1/models", headers=AUTH, timeout=10)
    assert r.status_code == 200
    return {m["id"]: m for m in r.json()["data"]}


def complete(srv, model: str) -> str:
    client = srv.openai(api_key=KEY)
    r = client.completions.create(model=model, prompt=PROMPT, max_tokens=10, temperature=0)
    assert r.model == model
    return r.choices[0].text


def wait_for(check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_adapters_are_models_with_the_base_as_parent(lora_server):
    got = models(lora_server)
    assert {"a1", "a2", "a3"} <= set(got) and MODEL_NAME in got
    assert all(got[n]["parent"] == MODEL_NAME for n in ("a1", "a2", "a3"))
    assert "parent" not in got[MODEL_NAME]
    one = httpx.get(lora_server.base + "/v1/models/a1", headers=AUTH, timeout=10).json()
    assert one["parent"] == MODEL_NAME


def test_unknown_model_is_a_404_with_openai_body(lora_server):
    r = post(lora_server, "/v1/completions", {"model": "nope", "prompt": "hi", "max_tokens": 2})
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["code"] == "model_not_found" and err["param"] == "model" and "nope" in err["message"]


@pytest.mark.model_output
def test_three_adapters_and_the_base_in_one_batch_answer_as_alone(lora_server):
    """Batch-invariant server: the same words concurrently as one by one; the adapters change
    the answer's log-probabilities (so the comparison means something). Not its words: whether
    a random adapter flips a greedy token is a near-tie that the CPU's kernels decide."""
    names = [MODEL_NAME, "a1", "a2", "a3"]
    alone = {n: complete(lora_server, n) for n in names}
    with cf.ThreadPoolExecutor(8) as pool:
        together = dict(zip(names * 2, pool.map(lambda n: complete(lora_server, n), names * 2)))
    assert together == alone
    client = lora_server.openai(api_key=KEY)
    first = {n: client.completions.create(model=n, prompt=PROMPT, max_tokens=1, temperature=0, logprobs=1)
             .choices[0].logprobs.token_logprobs[0] for n in names}
    assert len({round(lp, 3) for lp in first.values()}) == 4, first


@pytest.mark.model_output
def test_runtime_load_and_unload_and_a_zero_adapter(lora_server):
    srv = lora_server
    r = post(srv, "/v1/load_lora_adapter", {"lora_name": "zero", "lora_path": "store/zero"})
    assert r.status_code == 200, r.text
    assert models(srv)["zero"]["parent"] == MODEL_NAME
    assert complete(srv, "zero") == complete(srv, MODEL_NAME)  # B = 0: the base's answer exactly
    again = post(srv, "/v1/load_lora_adapter", {"lora_name": "zero", "lora_path": "store/zero"})
    assert again.status_code == 400 and again.json()["error"]["param"] == "lora_name"
    assert post(srv, "/v1/unload_lora_adapter", {"lora_name": "zero"}).status_code == 200
    assert "zero" not in models(srv)
    r = post(srv, "/v1/completions", {"model": "zero", "prompt": "hi", "max_tokens": 2})
    assert r.status_code == 404
    r = post(srv, "/v1/unload_lora_adapter", {"lora_name": "zero"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "lora_name"


def test_runtime_updates_need_the_api_key(lora_server):
    r = post(lora_server, "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": str(lora_server.made / "a1")},
             headers={})
    assert r.status_code == 401
    assert "x" not in models(lora_server)


def bad_adapters(made, store):
    """(body, field the 400 must name) for adapters the server must refuse."""
    wrong = tensors(SMOL, 5, 8, ("q_proj",))
    key = next(k for k in wrong if k.endswith("q_proj.lora_A.weight"))
    wrong[key] = wrong[key][:, :100]  # in-features 100, the model's are 576
    write_adapter(store / "bad_shape", SMOL, 5, rank=8, targets=("q_proj",), weights=wrong)
    write_adapter(store / "big_rank", SMOL, 6, rank=32, targets=("q_proj",))
    write_adapter(store / "lm_head", SMOL, 7, rank=8, targets=("q_proj",), extra_config={"target_modules": ["lm_head"]})
    write_adapter(store / "dora", SMOL, 8, rank=8, targets=("q_proj",), extra_config={"use_dora": True})
    (store / "empty").mkdir(exist_ok=True)
    return [
        ({"lora_name": "b", "lora_path": str(store / "bad_shape")}, key),
        ({"lora_name": "b", "lora_path": str(store / "big_rank")}, "r"),
        ({"lora_name": "b", "lora_path": str(store / "lm_head")}, "target_modules"),
        ({"lora_name": "b", "lora_path": str(store / "dora")}, "use_dora"),
        ({"lora_name": "b", "lora_path": str(store / "empty")}, "lora_path"),
        ({"lora_name": "b", "lora_path": "../made/a1"}, "lora_path"),  # escapes --lora-dir
        ({"lora_name": "b", "lora_path": str(made / "a1")}, "lora_path"),  # absolute, outside --lora-dir
        ({"lora_name": "rel", "lora_path": "a3"}, None),  # relative to --lora-dir: loads
        ({"lora_name": "", "lora_path": "a3"}, "lora_name"),
        ({"lora_name": MODEL_NAME, "lora_path": "a3"}, "lora_name"),
        ({"lora_name": "b"}, "lora_path"),
    ]


def test_bad_adapters_are_400s_naming_the_field_and_the_server_goes_on(lora_server):
    srv = lora_server
    for body, field in bad_adapters(srv.made, srv.drop / "store"):
        r = post(srv, "/v1/load_lora_adapter", body)
        if field is None:
            assert r.status_code == 200, r.text
            assert post(srv, "/v1/unload_lora_adapter", {"lora_name": body["lora_name"]}).status_code == 200
            continue
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["param"] == field, (body, r.json())
    assert "b" not in models(srv)
    assert httpx.get(srv.base + "/v1/health/ready", timeout=5).status_code == 200
    assert complete(srv, "a1")


@pytest.mark.model_output
def test_drop_in_directory_is_watched(lora_server):
    srv = lora_server
    assert "a3" in models(srv)  # there at start
    shutil.copytree(srv.made / "a1", srv.drop / "late")
    assert wait_for(lambda: "late" in models(srv))
    assert complete(srv, "late") == complete(srv, "a1")  # same files, same adapter
    shutil.rmtree(srv.drop / "late")
    assert wait_for(lambda: "late" not in models(srv))


def test_lora_requests_info_is_exported(lora_server):
    text = httpx.get(lora_server.base + "/metrics", timeout=10).text
    line = next(x for x in text.splitlines() if x.startswith("vllm:lora_requests_info{"))
    assert 'max_lora="3"' in line and "running_lora_adapters=" in line and "waiting_lora_adapters=" in line


@pytest.mark.slow
def test_packager_serve_with_an_adapter(tmp_path):
    """`packager serve MODEL --adapter NAME=DIR`, as the README shows it: the plan's argv carries the
    adapter to the fallback runtime, which serves it as a model whose parent is the base."""
    import signal
    import subprocess
    import sys

    from tests.runtime.conftest import free_port

    write_adapter(tmp_path / "sql", SMOL, 1, rank=8)
    port = free_port()
    log = tmp_path / "serve.err"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "packager.cli", "serve", "smollm2-135m-instruct", "--port", str(port),
                                 "--adapter", f"sql={tmp_path / 'sql'}"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=fh)
    base = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                return httpx.get(base + "/v1/health/ready", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        assert wait_for(ready, 180), log.read_text()[-3000:]
        got = {m["id"]: m for m in httpx.get(base + "/v1/models", timeout=10).json()["data"]}
        assert got["sql"]["parent"] == MODEL_NAME
        r = httpx.post(base + "/v1/completions", json={"model": "sql", "prompt": "Hi", "max_tokens": 3}, timeout=60)
        assert r.status_code == 200 and r.json()["model"] == "sql"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
