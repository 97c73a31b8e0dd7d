"""vLLM 0.33.0 facts as data: the KV formula and the defaults the planner relies on."""
import pytest

from packager.vllm.defaults import (
    batch_tier, default_max_num_batched_tokens, default_max_num_seqs, fp8_kv_backends,
    kv_bytes_per_token, kv_heads_per_gpu, min_capability, vllm_defaults,
)
from packager.vllm.serve_argv import _load


def vllm_attention_spec_bytes_per_token(layers, kv_heads, head_size, dtype_bytes, head_size_v=None):
    """vLLM's own arithmetic (AttentionSpec.page_size_bytes / block_size, summed over layers)."""
    head_size_v = head_size if head_size_v is None else head_size_v
    block_size = 16
    page = kv_heads * block_size * (head_size + head_size_v) * dtype_bytes
    return layers * page // block_size


@pytest.mark.parametrize("name, layers, kv_heads, head_dim, expected", [
    ("Llama-3.1-8B", 32, 8, 128, 131072),
    ("Qwen2.5-7B", 28, 4, 128, 57344),
    ("Mixtral-8x7B", 32, 8, 128, 131072),
])
def test_kv_bytes_per_token_real_models(name, layers, kv_heads, head_dim, expected):
    got = kv_bytes_per_token(layers, kv_heads, head_dim, kv_cache_dtype="auto", model_dtype="bfloat16")
    assert got == expected == vllm_attention_spec_bytes_per_token(layers, kv_heads, head_dim, 2)
    # The formula as written in defaults.yaml says the same.
    formula = _load("defaults.yaml")["kv_cache"]["bytes_per_token_formula"]
    env = {"num_layers": layers, "num_kv_heads_per_gpu": kv_heads, "head_dim": head_dim, "dtype_bytes": 2}
    assert eval(formula, {"__builtins__": {}}, env) == expected  # noqa: S307 (our own data file)


def test_kv_bytes_fp8_and_tp():
    assert kv_bytes_per_token(32, 8, 128, kv_cache_dtype="fp8") == 65536
    assert kv_bytes_per_token(32, 8, 128, tensor_parallel_size=2) == 65536
    # tp beyond the KV heads replicates them: still one head per GPU
    assert kv_heads_per_gpu(8, 16) == 1
    assert kv_bytes_per_token(32, 8, 128, tensor_parallel_size=16) == 32 * 1 * 256 * 2
    with pytest.raises(ValueError):
        kv_bytes_per_token(32, 8, 128, kv_cache_dtype="nvfp4")


def test_memory_and_block_defaults():
    d = vllm_defaults()
    assert d.vllm_version == "0.33.0"
    assert d.gpu_memory_utilization == 0.92
    assert d.block_size == 16
    assert "fp8" in d.kv_cache_dtypes and "fp8_e5m2" in d.kv_cache_dtypes
    assert "vllm/config/cache.py" in d.sources["gpu_memory_utilization"]


@pytest.mark.parametrize("method, cap", [
    ("awq", 7.5), ("awq_marlin", 7.5), ("gptq", 6.0), ("gptq_marlin", 6.0), ("fp8", 7.5),
    ("compressed-tensors", 7.0), ("fbgemm_fp8", 8.0), ("modelopt", 8.0), ("mxfp4", 8.0), (None, 0.0),
])
def test_min_capability(method, cap):
    assert min_capability(method) == cap


def test_min_capability_unknown():
    with pytest.raises(ValueError):
        min_capability("int3")


def test_every_method_has_a_min_capability():
    d = vllm_defaults()
    missing = set(d.quantization_methods) - set(d.quantization_min_capability)
    assert missing == {"deepseek_v4_fp8"}  # model-specific; not a method a profile picks


@pytest.mark.parametrize("acc, seqs, tokens", [
    ("nvidia-h100-sxm-80gb", 1024, 8192),
    ("nvidia-h200", 1024, 8192),           # 139.8 GiB: below the 160 GiB tier
    ("nvidia-a100-sxm-80gb", 256, 2048),   # A100 excluded by name (vLLM PR #17885)
    ("nvidia-l4", 256, 2048),
    ("amd-mi300x", 1024, 16384),
    (200, 1024, 16384),
    (80, 1024, 8192),
    (24, 256, 2048),
])
def test_batch_defaults_by_device(acc, seqs, tokens):
    assert default_max_num_seqs(acc) == seqs
    assert default_max_num_batched_tokens(acc) == tokens


def test_batch_defaults_usage_cpu_and_throughput_mode():
    assert default_max_num_batched_tokens("nvidia-h100-sxm-80gb", usage="llm_class") == 16384
    assert default_max_num_seqs("cpu") == 128
    assert default_max_num_seqs("cpu", world_size=2) == 256
    assert default_max_num_seqs(24, throughput_mode=True) == 512
    assert batch_tier(24).name == "other"
    with pytest.raises(ValueError):
        default_max_num_seqs("no-such-gpu")
    with pytest.raises(ValueError):
        default_max_num_seqs(80, usage="batch")


def test_fp8_kv_backends():
    assert "FLASH_ATTN" in fp8_kv_backends(9.0)      # FA3 on Hopper
    assert "FLASH_ATTN" not in fp8_kv_backends(8.9)  # FA2: no fp8 KV
    assert fp8_kv_backends(7.5) == ["TRITON_ATTN"]   # FlashInfer floor raised to 8.0
    assert "ROCM_AITER_FA" in fp8_kv_backends(vendor="amd", gfx="gfx942")
    assert "ROCM_AITER_FA" not in fp8_kv_backends(vendor="amd", gfx="gfx90a")


def test_rocm_facts():
    d = vllm_defaults()
    assert {"gfx90a", "gfx942", "gfx950"} <= set(d.rocm_gfx_targets)
    assert "gptq_marlin" not in d.quantization_rocm and "awq" in d.quantization_rocm
