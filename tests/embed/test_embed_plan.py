"""An embedding model's manifest (task, pooling, encoder facts from its files) and its plan: the encoder
stage sizes it without a KV cache, and the vLLM pooling argv passes vLLM 0.33.0's real parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


from tests.vllm_real import real_check

from .conftest import model_zip

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "manifests" / "models" / "all-minilm-l6-v2.yaml"


def _manifest(tmp_path: Path, body: str) -> str:
    p = tmp_path / "m.yaml"
    p.write_text(body)
    return str(p)


def _bare(zip_path: Path) -> str:
    return f"name: mini\nsource:\n  path: {zip_path}\n"


def test_known_by_name_with_its_facts():
    from packager.manifests import load_model

    m = load_model("all-minilm-l6-v2")
    assert (m.task, m.pooling, m.normalize, m.context_length, m.family) == ("embed", "mean", True, 256, "bert")
    assert m.local_path == str(model_zip().resolve())


def test_facts_come_from_the_zip_when_the_manifest_is_bare(tmp_path):
    from packager.manifests import load_model

    m = load_model(_manifest(tmp_path, _bare(model_zip())))
    # task from config.json, pooling from 1_Pooling + modules.json, context from sentence_bert_config.json,
    # parameters counted as the safetensors hold them
    assert (m.task, m.pooling, m.normalize, m.context_length) == ("embed", "mean", True, 256)
    assert (m.layers, m.hidden_size, m.attention_heads, m.parameters) == (6, 384, 12, 22713216)


BAD = [
    ("task: generate\n", "task", 2, "encoder"),
    ("task: embedding\n", "task", 2, "generate"),
    ("pooling: {mode: max}\n", "pooling.mode", 2, "mean"),
]


@pytest.mark.parametrize("extra,field,line,words", BAD, ids=["wrong-task", "unknown-task", "unknown-pooling"])
def test_bad_manifests_name_file_line_and_field(tmp_path, run_cli, extra, field, line, words):
    path = tmp_path / "m.yaml"
    path.write_text(f"name: mini\n{extra}source:\n  path: {model_zip()}\n")
    code, out, err = run_cli("profiles", str(path), "--hardware", "cpu")
    assert code == 2 and "Traceback" not in err
    assert f"{path}:{line}" in err and field in err and words in err, err


def test_pooling_on_a_generate_model_is_refused(tmp_path, run_cli):
    from runtime.conftest import gguf_path

    path = tmp_path / "m.yaml"
    path.write_text(f"name: smol\npooling: {{mode: cls}}\nsource: {{path: {gguf_path()}, format: gguf}}\n")
    code, _, err = run_cli("profiles", str(path), "--hardware", "cpu")
    assert code == 2 and f"{path}:2" in err and "pooling" in err and "embedding models" in err, err


def test_encoder_plan_has_no_kv_cache_and_pooling_argv(run_cli):
    code, out, err = run_cli("profiles", "all-minilm-l6-v2", "--hardware", "nvidia-l4:1", "--json")
    assert code == 0, err
    plan = json.loads(out)
    sel = plan["selected"]
    assert sel["runtime"] == "vllm" and sel["tensor_parallel_size"] == 1
    e = sel["estimates"]
    assert e["kv_cache_tokens"] == 0 and e["kv_cache_bytes_per_token"] == 0 and e["sequences_per_s"] > 0
    assert e["activation_bytes_per_device"] > 0 and e["weights_bytes_per_device"] == 22713216 * 2
    argv = sel["engine_argv"]
    i = argv.index("--runner")
    assert argv[i:i + 4] == ["--runner", "pooling", "--convert", "embed"]
    assert json.loads(argv[argv.index("--pooler-config") + 1]) == {"seq_pooling_type": "MEAN", "use_activation": True}
    assert "--enable-auto-tool-choice" not in argv and "--disable-prefix-caching" in argv
    reasons = {r["name"]: r["reasons"] for r in plan["rejected"]}
    assert any("no KV cache" in x for x in reasons["vllm-fp16-kvfp8-tp1-pp1-throughput"])
    assert any("CPU only" in x for x in reasons["triton-fp16-tp1-pp1-throughput"])
    assert plan["model"]["task"] == "embed" and plan["model"]["pooling"] == {"mode": "mean", "normalize": True}


def test_cpu_plan_serves_the_zip_with_the_fallback(run_cli):
    code, out, err = run_cli("profiles", "all-minilm-l6-v2", "--hardware", "cpu", "--json")
    assert code == 0, err
    sel = json.loads(out)["selected"]
    assert sel["runtime"] == "cpu" and sel["engine_argv"][sel["engine_argv"].index("--model") + 1].endswith("model.zip")
    assert sel["engine_argv"][sel["engine_argv"].index("--max-num-batched-tokens") + 1] == "4096"


def test_cpu_bf16_is_planned_only_where_the_hardware_says_the_cpu_has_it(run_cli, tmp_path):
    """bf16 matmuls (the faster, slightly less exact mode) come from the manifests, never by surprise: the
    generic `cpu` keeps fp32 and says why; a CPU declared with bf16_tflops gets --dtype bfloat16 and a note
    with its measured cosine."""
    code, out, err = run_cli("profiles", "all-minilm-l6-v2", "--hardware", "cpu", "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["selected"]["precision"] == "fp32"
    why = {r["name"]: " ".join(r["reasons"]) for r in plan["rejected"]}
    assert "bf16_tflops" in why["cpu-bf16-tp1-pp1-throughput"] and "fp32 or bf16" in why["cpu-fp16-tp1-pp1-throughput"]
    hw = tmp_path / "cpu-bf16.yaml"
    hw.write_text("name: cpu-bf16\npools:\n  - name: cpu\n    accelerator:\n      name: AMD EPYC (AVX512-BF16)\n"
                  "      vendor: cpu\n      memory_gib: 24\n      bandwidth_gbs: 40\n      bf16_tflops: 0.38\n"
                  "      runtimes: [cpu]\n    cpu_cores: 2\n")
    code, out, err = run_cli("profiles", "all-minilm-l6-v2", "--hardware", str(hw), "--json")
    assert code == 0, err
    sel = json.loads(out)["selected"]
    argv = sel["engine_argv"]
    assert sel["precision"] == "bf16" and argv[argv.index("--dtype") + 1] == "bfloat16"
    assert any("min cosine 0.99997" in n for n in sel["notes"]), sel["notes"]


def test_vllm_real_parser_accepts_the_pooling_argv(run_cli, tmp_path):
    """vLLM's own parser and validate (PoolerConfig included: a pooling type it lacks is refused)."""
    code, out, err = run_cli("profiles", "all-minilm-l6-v2", "--hardware", "nvidia-l4:1", "--json")
    cases = [{"name": p["name"], "argv": p["engine_argv"]} for p in json.loads(out)["candidates"]]
    bad = [a.replace("MEAN", "AVERAGE") for a in cases[0]["argv"]]
    cases.append({"name": "unknown-pooling", "argv": bad, "expect_valid": True, "expect_valid_real": False})
    r = real_check(cases, tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "ok   unknown-pooling [vllm]: " in r.stdout and "PoolerConfig" in r.stdout
    assert r.stdout.count("[vllm]") == len(cases)


def test_init_on_a_sentence_transformers_directory(embed_dir, tmp_path, run_cli):
    import yaml

    out = tmp_path / "mini.yaml"
    code, _, err = run_cli("init", str(embed_dir), "--out", str(out))
    assert code == 0, err
    doc = yaml.safe_load(out.read_text())
    assert doc["task"] == "embed" and doc["pooling"] == {"mode": "mean", "normalize": True}
    assert doc["serving"]["context_length"] == 256 and doc["architecture"]["parameters"] == 22713216
    code, out_text, err = run_cli("profiles", str(out), "--hardware", "nvidia-l4:1", "--json")
    assert code == 0 and "--runner" in json.loads(out_text)["selected"]["engine_argv"], err
