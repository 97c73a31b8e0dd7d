"""Our model file against transformers' reference implementation, and the
loaders (safetensors, digests), with tiny random-weight models."""

from __future__ import annotations

import json

import pytest
import torch

from runtimes.fallback.batch import ForwardBatch, PrefillSegment
from runtimes.fallback.config import ModelConfig
from runtimes.fallback.kernels import select_ops
from runtimes.fallback.kv_cache import KVCache
from runtimes.digests import sha256_file, verify_digests
from runtimes.fallback.loader import load, parse_sha256_args
from runtimes.fallback.model import build_model

pytestmark = pytest.mark.model_output  # logits and greedy tokens: CI reruns these under other CPU kernels

VOCAB = 512


def tiny_hf(arch: str, **extra):
    import transformers

    common = dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-5, tie_word_embeddings=False,
    )
    common.update(extra)
    cls = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
           "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
           "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM)}[arch]
    torch.manual_seed(0)
    cfg = cls[0](**common)
    model = cls[1](cfg).eval()
    # Random biases so Qwen2's q/k/v bias path is exercised (init is zero).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0, 0.5)
    return cfg, model


def prefill_logits(model, cfg: ModelConfig, ids: list[int], chunk: int | None = None) -> torch.Tensor:
    """Logits at every prompt position from our model, optionally prefilling
    in chunks (exercises the masked chunk path)."""
    kv = KVCache(cfg, 16, 16, torch.float32)
    ops = select_ops("cpu", "torch")
    chunk = chunk or len(ids)
    out = []
    table = list(range(15, -1, -1))  # blocks out of order, as a shared cache hands them out
    slot = lambda p: table[p // 16] * 16 + p % 16  # noqa: E731
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        n = len(part)
        ctx = torch.tensor([slot(p) for p in range(start + n)]) if start else None
        batch = ForwardBatch(
            input_ids=torch.tensor(part),
            positions=torch.tensor(list(range(start, start + n))),
            num_tokens=n,
            slot_mapping=torch.tensor([slot(p) for p in range(start, start + n)]),
            decode_block_tables=torch.zeros(0, 0, dtype=torch.long),
            decode_seq_lens=torch.zeros(0, dtype=torch.long),
            decode_len_list=(),
            prefill=(PrefillSegment(start, n, 0, ctx),),
            logits_rows=torch.arange(n),
        )
        with torch.inference_mode():
            out.append(model(batch, kv, ops))
    return torch.cat(out)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
def test_matches_transformers(arch):
    hf_cfg, hf = tiny_hf(arch)
    cfg = ModelConfig.from_hf(hf_cfg)
    assert cfg.attention_bias == (arch == "qwen2")
    ours = build_model(cfg, dict(hf.state_dict()), 256)
    ids = torch.randint(0, VOCAB, (37,), generator=torch.Generator().manual_seed(1)).tolist()
    with torch.no_grad():
        ref = hf(torch.tensor([ids])).logits[0]
    got = prefill_logits(ours, cfg, ids)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    # Chunked prefill attends to the cached prefix correctly.
    torch.testing.assert_close(prefill_logits(ours, cfg, ids, chunk=8), ref, atol=1e-4, rtol=1e-4)


def test_llama3_rope_scaling_and_tied_embeddings_match():
    hf_cfg, hf = tiny_hf(
        "llama", tie_word_embeddings=True,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
    )
    cfg = ModelConfig.from_hf(hf_cfg)
    assert cfg.rope_scaling and cfg.tie_word_embeddings
    sd = {k: v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    ours = build_model(cfg, sd, 256)
    ids = list(range(3, 200, 2))
    with torch.no_grad():
        ref = hf(torch.tensor([ids])).logits[0]
    torch.testing.assert_close(prefill_logits(ours, cfg, ids), ref, atol=1e-4, rtol=1e-4)


def test_unsupported_architecture_is_named():
    class Cfg:
        architectures = ["GPT2LMHeadModel"]
        model_type = "gpt2"

    with pytest.raises(ValueError, match="GPT2LMHeadModel"):
        ModelConfig.from_hf(Cfg())


def test_safetensors_dir_loads_and_digests_are_checked(tmp_path, smol_gguf):
    hf_cfg, hf = tiny_hf("qwen2")
    hf.save_pretrained(tmp_path, safe_serialization=True)
    loaded = load(str(tmp_path), tokenizer=str(smol_gguf))
    assert loaded.config.architecture == "Qwen2ForCausalLM"
    assert loaded.tokenizer.chat_template
    ours = build_model(loaded.config, loaded.weights, 256)
    ids = [5, 9, 100, 3]
    with torch.no_grad():
        ref = hf(torch.tensor([ids])).logits[0]
    torch.testing.assert_close(prefill_logits(ours, loaded.config, ids), ref, atol=1e-4, rtol=1e-4)

    st = next(tmp_path.glob("*.safetensors")).name
    good = sha256_file(tmp_path / st)
    verify_digests(tmp_path, parse_sha256_args([f"{st}={good}"]))
    sums = tmp_path / "sums.json"
    sums.write_text(json.dumps({st: "0" * 64}))
    with pytest.raises(ValueError, match="do not match"):
        verify_digests(tmp_path, parse_sha256_args([str(sums)]))
    with pytest.raises(ValueError, match="not found"):
        verify_digests(tmp_path, {"missing.bin": good})
    with pytest.raises(ValueError, match="hex"):
        parse_sha256_args([f"{st}=xyz"])
