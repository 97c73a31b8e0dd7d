"""lm-eval (0.4.x, its own venv from .ci/clients.sh) against the real server
with a task kept in this repo (a local jsonl, no dataset hub): generate_until
and loglikelihood through local-completions with --batch_size 4 (lists of
token-id prompts, echo + logprobs), and generate_until through
local-chat-completions with --apply_chat_template."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import MAX_LEN, MODEL_NAME

pytestmark = [pytest.mark.slow, pytest.mark.model_output]

TASKS = Path(__file__).parent / "lm_eval_tasks"
LM_EVAL = Path(os.environ.get("PACKAGER_LM_EVAL") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
               / "packager" / "lm-eval" / "bin" / "lm_eval")


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from runtime.conftest import gguf_path
    from runtimes.fallback.loader import load_tokenizer

    d = tmp_path_factory.mktemp("tokenizer")
    load_tokenizer(str(gguf_path())).save_pretrained(d)
    return d


def lm_eval(tmp_path: Path, model: str, model_args: str, tasks: str, *extra: str) -> dict:
    if not LM_EVAL.is_file():
        pytest.fail(f"lm-eval is not installed at {LM_EVAL}: run .ci/clients.sh")
    out = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               HF_DATASETS_CACHE=str(tmp_path / "datasets"))
    argv = [str(LM_EVAL), "--model", model, "--model_args", model_args, "--tasks", tasks,
            "--include_path", str(TASKS), "--output_path", str(out), "--log_samples", *extra]
    proc = subprocess.run(argv, cwd=TASKS, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (result,) = out.rglob("results_*.json")
    return json.loads(result.read_text())["results"]


def test_completions_generate_and_loglikelihood_batched(server, tokenizer_dir, tmp_path):
    args = (f"model={MODEL_NAME},base_url={server.base}/v1/completions,tokenizer={tokenizer_dir},"
            f"tokenizer_backend=huggingface,max_length={MAX_LEN},num_concurrent=1,max_retries=1")
    res = lm_eval(tmp_path, "local-completions", args, "capitals_gen,capitals_ll", "--batch_size", "4")
    gen, ll = res["capitals_gen"], res["capitals_ll"]
    assert gen["exact_match,last_word"] >= 0.5, gen
    assert ll["acc,none"] >= 0.5, ll  # chance is 0.25


def test_chat_completions_generate(server, tmp_path):
    args = f"model={MODEL_NAME},base_url={server.base}/v1/chat/completions,num_concurrent=1,max_retries=1"
    res = lm_eval(tmp_path, "local-chat-completions", args, "capitals_gen", "--apply_chat_template")
    assert res["capitals_gen"]["exact_match,last_word"] >= 0.5, res
