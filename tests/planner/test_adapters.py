"""LoRA adapters at package time (issue 22, items 1-2): the manifest's ``adapters:`` list
completed from the adapter's own files, errors naming file, line and field (exit 2), the
planner's adapter memory, and the LoRA flags of both engines (vLLM's through its real parser)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from tests.conftest import MODELS
from tests.lora_adapters import SMOL, tensors, write_adapter
from tests.vllm_real import real_check

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"


def manifest(tmp_path: Path, adapters: list, base: str = "smollm2-135m-instruct.yaml") -> Path:
    doc = yaml.safe_load((MODELS / base).read_text())
    doc["adapters"] = adapters
    if doc["source"].get("path"):
        doc["source"]["path"] = str((MODELS / doc["source"]["path"]).resolve())
    out = tmp_path / "model.yaml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


@pytest.fixture
def adapters_dir(tmp_path):
    write_adapter(tmp_path / "sql", SMOL, 1, rank=8)
    write_adapter(tmp_path / "chat", SMOL, 2, rank=24, targets=("q_proj", "v_proj"))
    return tmp_path


def plan_json(run_cli, *args) -> dict:
    code, out, err = run_cli("profiles", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_local_adapters_are_completed_from_their_files(run_cli, adapters_dir):
    m = manifest(adapters_dir, [{"name": "sql", "source": {"path": "sql"}}, {"name": "chat", "source": {"path": "chat"}}])
    plan = plan_json(run_cli, str(m), "--hardware", "cpu")
    got = {a["name"]: (a["rank"], a["target_modules"]) for a in plan["model"]["adapters"]}
    assert got == {"sql": (8, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
                   "chat": (24, ["q_proj", "v_proj"])}
    argv = plan["candidates"][0]["engine_argv"]
    i = argv.index("--lora-modules")
    assert argv[argv.index("--max-loras") + 1] == "2" and argv[argv.index("--max-lora-rank") + 1] == "24"
    assert argv[i + 1:i + 3] == [f"sql={adapters_dir / 'sql'}", f"chat={adapters_dir / 'chat'}"]


def test_adapter_memory_is_counted_per_device(run_cli, adapters_dir):
    """max_loras slots of the largest rank (vLLM's 32 covers 24) over the targeted modules,
    in the compute dtype, split under tp as vLLM shards them; the KV cache gets that much less."""
    m = manifest(adapters_dir, [{"name": "sql", "source": {"path": "sql"}}, {"name": "chat", "source": {"path": "chat"}}])
    h, i, q, kv, layers = 576, 1536, 9 * 64, 3 * 64, 30

    def expected(tp: int) -> int:
        col = lambda d_in, d_out: d_in + math.ceil(d_out / tp)  # noqa: E731  q/k/v/gate/up
        row = lambda d_in, d_out: math.ceil(d_in / tp) + d_out  # noqa: E731  o/down
        per_layer = col(h, q) + 2 * col(h, kv) + row(q, h) + 2 * col(h, i) + row(i, h)
        return 2 * 32 * per_layer * layers * 2  # 2 slots, rank 32, bf16

    for hw, tp in (("nvidia-l4:1", 1), ("nvidia-l4:3", 3)):
        plan = plan_json(run_cli, str(m), "--hardware", hw)
        prof = next(p for p in plan["candidates"] if p["engine"].startswith("vllm") and p["tensor_parallel_size"] == tp
                    and p["precision"] == "bf16")
        assert prof["estimates"]["lora_bytes_per_device"] == expected(tp)
    code, out, _ = run_cli("profiles", str(m), "--hardware", "nvidia-l4:1")
    assert "LoRA adapters: sql (r8), chat (r24); slots" in out


def test_a_profile_that_cannot_hold_the_adapters_says_so(run_cli, tmp_path):
    many = [{"name": f"a{k}", "source": {"repo": "org/lora", "revision": "abc"}, "rank": 512,
             "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
            for k in range(48)]
    m = manifest(tmp_path, many, "llama-3.1-8b-instruct.yaml")
    code, out, err = run_cli("profiles", str(m), "--hardware", "nvidia-l4:1")
    assert "LoRA adapter slots" in out


BAD = [  # (adapters list, field the error names, words in it)
    ([{"name": "x", "source": {"path": "sql"}, "rank": 4}], "adapters[0].rank", "r=8"),
    ([{"name": "x", "source": {"path": "sql"}, "target_modules": ["q_proj"]}], "adapters[0].target_modules", "adapt"),
    ([{"name": "x", "source": {"path": "nowhere"}}], "adapters[0].source.path", "not found"),
    ([{"name": "x", "source": {"path": "sql"}}, {"name": "x", "source": {"path": "chat"}}], "adapters[1].name", "twice"),
    ([{"name": BASE, "source": {"path": "sql"}}], "adapters[0].name", "twice"),
    ([{"name": "x", "source": {"repo": "org/l", "revision": "r"}}], "adapters[0].rank", "not on this machine"),
    ([{"name": "x", "source": {"repo": "org/l", "revision": "r"}, "rank": 8, "target_modules": ["lm_head"]}],
     "adapters[0].target_modules", "lm_head"),
    ([{"name": "x", "source": {"repo": "org/l"}}], "adapters[0].source", "revision"),
    ([{"name": "x", "source": {"oci": "reg/lora:latest"}, "rank": 8, "target_modules": ["q_proj"]}],
     "adapters[0].source", "digest"),
    ([{"name": "x", "source": {"path": "other_base"}}], "adapters[0].source", "trained on"),
    ([{"name": "x", "source": {"path": "wrong_shape"}}], "wrong_shape", "shape"),
    ([{"name": "x", "source": {"path": "sql", "sha256": {"adapter_config.json": "0" * 64}}}],
     "adapters[0].source.sha256.adapter_config.json", "sha256"),
]


@pytest.mark.parametrize("adapters,field,words", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_adapters_exit_2_naming_file_line_and_field(run_cli, adapters_dir, adapters, field, words):
    write_adapter(adapters_dir / "other_base", SMOL, 3, rank=8, base="meta-llama/Llama-3.1-8B")
    w = tensors(SMOL, 4, 8, ("q_proj",))
    key = next(k for k in w if "lora_B" in k)
    w[key] = w[key][:100]  # out 100, q_proj's is 576
    write_adapter(adapters_dir / "wrong_shape", SMOL, 4, rank=8, targets=("q_proj",), weights=w)
    if field == "wrong_shape":
        field = key
    m = manifest(adapters_dir, adapters)
    code, out, err = run_cli("profiles", str(m), "--hardware", "cpu")
    assert code == 2, (out, err)
    assert field in err and words in err, err
    assert "Traceback" not in err
    if field.startswith("adapters["):
        assert f"{m}:" in err  # file:line


def test_vllm_lora_argv_passes_vllms_real_parser(run_cli, adapters_dir, tmp_path):
    """--enable-lora, --max-loras, --max-lora-rank (from vLLM's allowed set), --max-cpu-loras and the JSON
    --lora-modules with base_model_name, through vLLM 0.33.0's own parser and validation."""
    from packager.vllm.contract import check_argv

    m = manifest(adapters_dir, [{"name": "sql", "source": {"path": "sql"}}, {"name": "chat", "source": {"path": "chat"}}])
    plan = plan_json(run_cli, str(m), "--hardware", "nvidia-h100-sxm-80gb:2")
    argvs = [p["engine_argv"] for p in plan["candidates"] if p["engine"].startswith("vllm")]
    assert argvs and all("--enable-lora" in a for a in argvs)
    first = argvs[0]
    mods = [json.loads(x) for x in first[first.index("--lora-modules") + 1:] if x.startswith("{")]
    assert mods == [{"name": "sql", "path": str(adapters_dir / "sql"), "base_model_name": BASE},
                    {"name": "chat", "path": str(adapters_dir / "chat"), "base_model_name": BASE}]
    assert first[first.index("--max-lora-rank") + 1] == "32"
    assert all(check_argv(a) == [] for a in argvs)
    bad = [*first[:first.index("--max-lora-rank") + 1], "24", *first[first.index("--max-lora-rank") + 2:]]
    r = real_check([{"name": f"plan-{i}", "argv": a} for i, a in enumerate(argvs)]
                   + [{"name": "rank-24", "argv": bad, "expect_valid": False}], tmp_path)
    real = [ln for ln in r.stdout.splitlines() if "[vllm]" in ln]
    assert real and all(ln.startswith("ok") for ln in real), r.stdout + r.stderr


def test_build_refuses_an_adapter_it_cannot_put_in_the_image(run_cli, tmp_path):
    """Adapters are packaged (tests/image/test_image_lora.py); an OCI adapter artifact is not pulled at
    build time: exit 2 naming its field, nothing written."""
    m = manifest(tmp_path, [{"name": "sql", "source": {"oci": "127.0.0.1:5000/lora/sql@sha256:" + "a" * 64},
                             "rank": 8, "target_modules": ["q_proj", "v_proj"]}])
    out = tmp_path / "out"
    code, _, err = run_cli("build", str(m), "--hardware", "cpu", "--no-image", "--out", str(out))
    assert code == 2 and "adapters[0].source.oci" in err and "oras pull" in err and "Traceback" not in err, err
    assert not out.exists() or not any(out.iterdir())


def test_adapter_flag_adds_to_the_manifest_and_bad_ones_exit_2(run_cli, adapters_dir):
    plan = plan_json(run_cli, "smollm2-135m-instruct", "--hardware", "cpu", "--adapter", f"sql={adapters_dir / 'sql'}")
    assert [a["name"] for a in plan["model"]["adapters"]] == ["sql"]
    assert f"sql={adapters_dir / 'sql'}" in plan["candidates"][0]["engine_argv"]
    code, _, err = run_cli("profiles", "smollm2-135m-instruct", "--hardware", "cpu", "--adapter", "sql")
    assert code == 2 and "--adapter" in err and "NAME=SOURCE" in err and "Traceback" not in err
    code, _, err = run_cli("profiles", "smollm2-135m-instruct", "--hardware", "cpu", "--adapter", "x=org/lora")
    assert code == 2 and "REPO@REVISION" in err


def test_an_embedding_model_refuses_adapters(run_cli, adapters_dir):
    code, _, err = run_cli("profiles", "all-minilm-l6-v2", "--hardware", "cpu", "--adapter", f"sql={adapters_dir / 'sql'}")
    assert code == 2 and "adapters" in err and "embed" in err and "Traceback" not in err, err
