"""check_argv against the snapshot of vLLM 0.33.0's parser: it must catch what vLLM rejects."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from packager.vllm import VLLM_VERSION
from packager.vllm.contract import SNAPSHOT, check_argv, load_snapshot, read_cases

HERE = Path(__file__).parent
GOOD = ["vllm", "serve", "m", "--tensor-parallel-size", "2"]


def test_misspelt_flag_is_caught_with_did_you_mean():
    probs = check_argv(["vllm", "serve", "m", "--tensor-paralel-size", "2"])
    assert len(probs) == 1, probs  # one typo, one problem (its value is not a second one)
    assert "--tensor-paralel-size" in probs[0] and "did you mean --tensor-parallel-size" in probs[0]


@pytest.mark.parametrize("flag, suggestion", [
    ("--max-num-seq", None),           # abbreviation of --max-num-seqs: accepted by argparse only
    ("--gpu-memory-utilisation", "--gpu-memory-utilization"),
    ("--kv-cache-type", "--kv-cache-dtype"),
])
def test_near_misses(flag, suggestion):
    probs = check_argv(["vllm", "serve", "m", flag, "8"])
    assert probs
    if suggestion:
        assert f"did you mean {suggestion}" in probs[0]


@pytest.mark.parametrize("argv", [
    ["--swap-space", "4"], ["--use-v2-block-manager"], ["--task", "generate"],
])
def test_removed_flags_are_caught(argv):
    probs = check_argv(["vllm", "serve", "m", *argv])
    assert probs and "not a vLLM 0.33.0 serve option" in probs[0]


def test_removed_flag_that_is_now_a_prefix():
    # --device was removed; argparse would now see a prefix of two flags.
    probs = check_argv(["vllm", "serve", "m", "--device", "cuda"])
    assert probs and "ambiguous abbreviation" in probs[0] and "--device-ids" in probs[0]


def test_bad_choice_is_caught_with_suggestion():
    probs = check_argv(["vllm", "serve", "m", "--dtype", "bf16"])
    assert len(probs) == 1 and "invalid choice 'bf16'" in probs[0] and "'bfloat16'" in probs[0]


@pytest.mark.parametrize("args, words", [
    (["--max-num-seqs", "many"], "not an int"),
    (["--gpu-memory-utilization", "high"], "not a float"),
    (["--max-model-len", "8.5K"], "decimals"),
    (["--max-num-seqs"], "expected a value"),
    (["--max-num-seqs", "--port", "1"], "expected a value"),
    (["--enable-prefix-caching=yes"], "takes no value"),
    (["--port", "1", "--port", "2"], "more than once"),
    (["--kv-cache-dtype", "fp9"], "cache dtype"),
    (["--quantization", "fbgemm_fp8"], "deprecated"),
    (["--distributed-executor-backend", "slurm"], "not one of"),
    (["--gpu-memory-utilization", "1.2"], "outside (0, 1]"),
    (["--enable-auto-tool-choice"], "requires --tool-call-parser"),
    (["extra-positional"], "unexpected positional"),
])
def test_value_problems(args, words):
    probs = check_argv(["vllm", "serve", "m", *args])
    assert any(words in p for p in probs), probs


def test_model_is_required_and_first():
    assert any("no model" in p for p in check_argv(["vllm", "serve", "--port", "8000"]))
    assert any("first argument" in p for p in check_argv(["vllm", "serve", "--port", "8000", "m"]))
    assert check_argv(["vllm", "run", "m"]) and check_argv(["serve", "m"])


@pytest.mark.parametrize("args", [
    ["-tp", "2", "--max-model-len", "8k", "--max-model-len=auto"][:4],
    ["--tensor_parallel_size=2"],
    ["--compilation-config", '{"mode": 3}'],
    ["--compilation-config.mode", "3"],
    ["-O3"],
    ["--served-model-name", "a", "b", "--port", "8001"],
    ["--no-enable-prefix-caching", "--disable-chunked-prefill"],
    ["--quantization", "None"],
    ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"],
])
def test_valid_spellings_pass(args):
    assert check_argv(["vllm", "serve", "m", *args]) == []


def test_recorded_cases_agree_with_check_argv():
    """argv_cases.json is also run through vLLM's real parser in CI (.ci/vllm_contract.sh)."""
    cases = read_cases(HERE / "argv_cases.json")
    assert any(c["expect_valid"] for c in cases) and any(not c["expect_valid"] for c in cases)
    for c in cases:
        assert (check_argv(c["argv"]) == []) == c["expect_valid"], (c["name"], check_argv(c["argv"]))


def test_snapshot_sanity():
    raw = json.loads(SNAPSHOT.read_text())
    snap = load_snapshot()
    assert snap.vllm_version == VLLM_VERSION == raw["vllm_version"]
    assert raw["generated"] and raw["generator"] == "tools/snapshot_vllm_args.py"
    assert raw["option_count"] == len(raw["options"]) > 200
    for flag in ["--tensor-parallel-size", "--pipeline-parallel-size", "--dtype", "--kv-cache-dtype",
                 "--max-model-len", "--gpu-memory-utilization", "--max-num-seqs", "--quantization",
                 "--enable-prefix-caching", "--disable-prefix-caching", "--enable-chunked-prefill",
                 "--distributed-executor-backend", "--served-model-name", "--host", "--port",
                 "--max-num-batched-tokens"]:
        assert flag in snap.by_string, flag
    assert [o.dest for o in snap.positionals] == ["model_tag"]
    assert snap.by_string["--tensor-parallel-size"].value_type == "int"
    assert snap.by_string["--gpu-memory-utilization"].value_type == "float"
    assert "bfloat16" in snap.by_string["--dtype"].choices


def test_snapshot_tool_has_the_same_version_file_name():
    assert SNAPSHOT.name == f"serve_args-{VLLM_VERSION}.json"


def test_cli_reports_failures(tmp_path):
    f = tmp_path / "cases.json"
    f.write_text(json.dumps([GOOD, {"name": "typo", "argv": ["vllm", "serve", "m", "--tp", "2"]}]))
    r = subprocess.run([sys.executable, "-m", "packager.vllm.contract", str(f)],
                       capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert r.returncode == 1 and "FAIL typo" in r.stdout and "1 failures" in r.stdout


def test_no_vllm_or_torch_import():
    code = ("import sys, packager.vllm, packager.vllm.contract, packager.vllm.defaults;"
            "from packager.vllm.contract import check_argv; check_argv(['vllm','serve','m']);"
            "from packager.vllm.defaults import vllm_defaults; vllm_defaults();"
            "bad = [m for m in ('vllm', 'torch') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=Path(__file__).parents[2])
    assert r.returncode == 0, r.stdout + r.stderr
