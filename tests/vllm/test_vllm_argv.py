"""build_vllm_argv: flags valid for vLLM 0.33.0 (checked against the parser snapshot)."""
from dataclasses import replace

import pytest

from packager.vllm import VLLM_VERSION, VllmServeSpec, build_vllm_argv, vllm_image, vllm_images
from packager.vllm.contract import check_argv, load_snapshot

BASE = VllmServeSpec(
    model_ref="meta-llama/Llama-3.1-8B-Instruct", served_model_name="llama-3.1-8b",
    tensor_parallel_size=1, pipeline_parallel_size=1, dtype="bfloat16", kv_cache_dtype="auto",
    max_model_len=8192, gpu_memory_utilization=0.9, max_num_seqs=256, quantization=None,
    vendor="nvidia",
)

SPECS = {
    "nvidia-bf16": BASE,
    "nvidia-fp8-kvfp8-tp8": replace(BASE, quantization="fp8", kv_cache_dtype="fp8", tensor_parallel_size=8),
    "nvidia-awq-fp16": replace(BASE, quantization="awq_marlin", dtype="float16"),
    "nvidia-gptq-no-prefix-cache": replace(BASE, quantization="gptq", dtype="float16",
                                           enable_prefix_caching=False, enable_chunked_prefill=True),
    "nvidia-2-nodes": replace(BASE, tensor_parallel_size=8, pipeline_parallel_size=2, nodes=2),
    "amd-fp8": replace(BASE, vendor="amd", quantization="fp8", kv_cache_dtype="fp8",
                       enable_chunked_prefill=False),
    "amd-awq": replace(BASE, vendor="amd", quantization="awq_marlin", dtype="float16"),
    "with-batched-tokens": replace(BASE, max_num_batched_tokens=8192, port=9000, host="127.0.0.1"),
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_argv_passes_the_contract(name):
    argv = build_vllm_argv(SPECS[name])
    assert argv[:3] == ["vllm", "serve", SPECS[name].model_ref]
    assert check_argv(argv) == []


@pytest.mark.parametrize("name", sorted(SPECS))
def test_argv_uses_only_documented_spellings(name):
    """No hidden or abbreviated spellings: each flag is one vLLM shows in --help."""
    snap = load_snapshot()
    visible = {s for o in snap.options for s in o.visible}
    flags = [a for a in build_vllm_argv(SPECS[name]) if a.startswith("--")]
    assert flags and all(f in visible for f in flags), [f for f in flags if f not in visible]


def test_argv_states_the_whole_configuration():
    argv = build_vllm_argv(BASE)
    pairs = dict(zip(argv[3::2], argv[4::2]))
    assert pairs["--tensor-parallel-size"] == "1"
    assert pairs["--max-model-len"] == "8192"
    assert pairs["--gpu-memory-utilization"] == "0.9"
    assert pairs["--kv-cache-dtype"] == "auto"
    assert pairs["--served-model-name"] == "llama-3.1-8b"
    assert "--enable-prefix-caching" in argv
    assert "--quantization" not in argv and "--distributed-executor-backend" not in argv
    assert not any("chunked-prefill" in a for a in argv)  # None leaves vLLM's default


def test_multi_node_uses_ray():
    argv = build_vllm_argv(SPECS["nvidia-2-nodes"])
    i = argv.index("--distributed-executor-backend")
    assert argv[i + 1] == "ray"


def test_switches_off():
    argv = build_vllm_argv(SPECS["nvidia-gptq-no-prefix-cache"])
    assert "--disable-prefix-caching" in argv and "--enable-chunked-prefill" in argv


def test_rocm_rewrites_awq_marlin_to_awq():
    argv = build_vllm_argv(SPECS["amd-awq"])
    assert argv[argv.index("--quantization") + 1] == "awq"


@pytest.mark.parametrize("change, words", [
    ({"vendor": "amd", "quantization": "gptq_marlin"}, "not supported on ROCm"),
    ({"vendor": "amd", "kv_cache_dtype": "nvfp4"}, "not supported on ROCm"),
    ({"quantization": "awq4"}, "not a vLLM"),
    ({"quantization": "fbgemm_fp8"}, "deprecated"),
    ({"dtype": "bf16"}, "dtype"),
    ({"kv_cache_dtype": "fp9"}, "kv_cache_dtype"),
    ({"tensor_parallel_size": 0}, "tensor_parallel_size"),
    ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
    ({"vendor": "intel"}, "vendor"),
    ({"port": 70000}, "port"),
])
def test_invalid_specs_raise(change, words):
    with pytest.raises(ValueError, match=words):
        build_vllm_argv(replace(BASE, **change))


def test_images_are_data_with_tags_for_this_version():
    imgs = vllm_images()
    assert set(imgs) == {"nvidia", "amd"}
    for img in imgs.values():
        assert img.tag == f"v{VLLM_VERSION}"
        assert img.ref.endswith(f":v{VLLM_VERSION}") or "@sha256:" in img.ref
        assert img.source
    assert vllm_image("nvidia").repository.endswith("vllm/vllm-openai")
    with pytest.raises(ValueError):
        vllm_image("cpu")
