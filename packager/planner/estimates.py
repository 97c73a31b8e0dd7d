"""Memory and speed estimates for one candidate: pure arithmetic over facts, stated in words."""
from __future__ import annotations

import math

from packager.facts import ModelFacts
from packager.planner.rules import rules
from packager.planner.types import Candidate, Estimates
from packager.catalog import Accelerator, catalog
from packager.vllm.defaults import default_max_num_batched_tokens
from packager.vllm.defaults import kv_bytes_per_token as vllm_kv_bytes_per_token

GiB = 2**30
BYTES_PER_PARAM = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "awq-int4": 0.5625, "gptq-int4": 0.5625}
# int4 = 4 bits + one 16-bit scale and zero per group of 128 -> ~4.25 bits; 4.5 covers packing.


def vllm_device(acc: Accelerator) -> str | float:
    """What vLLM's batch-default tiers key on: the catalog key, or the memory of an uncatalogued card."""
    return acc.key if acc.key in catalog() else float(acc.memory_gib or 0)


def compute_dtype_bytes(precision: str) -> int:
    return 4 if precision == "fp32" else 2  # quantized weights compute and store KV in 16-bit


def _kv_dtype_args(kv_dtype_bytes: int) -> tuple[str, str]:
    """(kv_cache_dtype, model_dtype) in vLLM's words for a KV element size."""
    return ("fp8", "bfloat16") if kv_dtype_bytes == 1 else ("auto", "float32" if kv_dtype_bytes == 4 else "bfloat16")


def kv_bytes_per_token(model: ModelFacts, kv_dtype_bytes: int) -> int:
    """Whole model, one token: vLLM's page-size formula on a single device."""
    return kv_bytes_per_token_per_device(model, kv_dtype_bytes, tp=1, pp=1)


def kv_bytes_per_token_per_device(model: ModelFacts, kv_dtype_bytes: int, tp: int, pp: int) -> int:
    """Per GPU: layers split by pp; KV heads split by tp, replicated (at least one) when tp exceeds them."""
    kv, dtype = _kv_dtype_args(kv_dtype_bytes)
    return vllm_kv_bytes_per_token(math.ceil(model.layers / pp), model.kv_heads, model.head_dim,
                                   kv_cache_dtype=kv, model_dtype=dtype, tensor_parallel_size=tp)


def weight_bytes(model: ModelFacts, precision: str) -> int:
    """All weights; quantized checkpoints keep embeddings and the LM head in 16-bit."""
    per = BYTES_PER_PARAM[precision]
    if per >= 2:
        return int(model.parameters * per)
    embed = model.vocab_size * model.hidden_size * (1 if model.tie_word_embeddings else 2)
    return int((model.parameters - embed) * per + embed * 2)


def activation_bytes(model: ModelFacts, c: Candidate, max_num_seqs: int) -> int:
    """Peak working memory besides weights and KV (vLLM's profiling run measures the same thing)."""
    r = rules()
    dtype = compute_dtype_bytes(c.precision)
    if c.runtime == "vllm":
        tokens = default_max_num_batched_tokens(vllm_device(c.pool.accelerator), world_size=c.devices)
        overhead = r["vllm"]["non_torch_overhead_gib"] * GiB
    else:
        tokens = min(512, max(1, max_num_seqs) * 16)  # the fallback prefills in chunks
        overhead = 0.25 * GiB if c.runtime == "triton" else 0.5 * GiB  # CUDA context / Python + torch on CPU
    per_token = (2 * model.hidden_size + 2 * model.intermediate_size // c.tp) * dtype
    logits = max_num_seqs * model.vocab_size * 4  # fp32 logits for sampling
    return int(tokens * per_token + logits + overhead)


def _bandwidth_bytes_s(c: Candidate) -> float:
    return c.pool.accelerator.bandwidth_gbs * 1e9


def _peak_flops(c: Candidate) -> float:
    acc = c.pool.accelerator
    if not acc.is_gpu:
        cores = c.pool.cpu_cores or 2
        return (acc.fp32_tflops_per_core or 0.05) * cores * 1e12
    precision = "fp8" if c.precision == "fp8" else ("fp16" if c.precision == "fp16" else "bf16")
    return (acc.tflops(precision) or acc.tflops("fp16") or 10.0) * 1e12


def _comm_seconds_per_step(model: ModelFacts, c: Candidate) -> float:
    """Two all-reduces per layer under tp; one network hop per extra pipeline stage across nodes."""
    r = rules()
    t = 0.0
    if c.tp > 1:
        kind = c.pool.accelerator.interconnect_kind
        family = "nvlink" if kind.startswith("nvlink") else "pcie" if kind.startswith("pcie") else kind
        t += 2 * model.layers * r["allreduce_latency_us"].get(family, 25) * 1e-6
    if c.pp > 1:
        t += (c.pp - 1) * r["inter_node_hop_us"] * 1e-6
    return t


def estimate(model: ModelFacts, c: Candidate, *, max_model_len: int, max_num_seqs: int,
             memory_utilization: float, per_slot_kv: bool) -> Estimates:
    r = rules()
    eff = r["efficiency"][c.runtime]
    compute_bytes = compute_dtype_bytes(c.precision)
    kv_dtype = 1 if c.kv_cache_dtype == "fp8" else compute_bytes
    total_weights = weight_bytes(model, c.precision)
    weights_dev = total_weights // c.devices
    kv_tok = kv_bytes_per_token(model, kv_dtype)
    kv_tok_dev = kv_bytes_per_token_per_device(model, kv_dtype, c.tp, c.pp)
    act = activation_bytes(model, c, max_num_seqs)
    budget = int(memory_utilization * c.pool.device_memory_gib * GiB)
    room = budget - weights_dev - act
    kv_tokens = max(0, room // kv_tok_dev)
    if per_slot_kv:  # the fallback reserves max_model_len per slot, so capacity is whole slots
        slots = min(max_num_seqs, kv_tokens // max_model_len)
        kv_tokens = slots * max_model_len
    seqs = kv_tokens // max_model_len

    bw = _bandwidth_bytes_s(c) * eff
    comm = _comm_seconds_per_step(model, c)
    active_frac = model.active_parameters / model.parameters
    typical_ctx = min(max_model_len, 4096) // 2
    # Batch 1: every stage reads its weight shard (only active experts) and the KV of one sequence.
    t1 = c.pp * (weights_dev * active_frac + typical_ctx * kv_tok_dev) / bw + comm
    batch = max(1, min(max_num_seqs, seqs))
    # Full batch: all experts get touched, KV grows with the batch; compute may take over.
    t_mem = (weights_dev * (1.0 if model.is_moe and batch > 4 else active_frac) + batch * typical_ctx * kv_tok_dev) / bw
    t_compute = 2 * model.active_parameters * batch / (c.devices * _peak_flops(c) * r["compute_utilisation"])
    t_full = max(t_mem, t_compute) + comm  # at full batch the pp stages work on micro-batches in parallel
    basis = (f"{c.runtime} at {eff:.2f} of {c.pool.accelerator.bandwidth_gbs:g} GB/s; weights "
             f"{weights_dev / GiB:.2f} GiB/device read once per step; KV at {typical_ctx} tokens of context; "
             f"compute at {r['compute_utilisation']:.2f} of peak; tp/pp communication {comm * 1e3:.2f} ms/step")
    return Estimates(
        weights_bytes_per_device=int(weights_dev), kv_cache_bytes_per_token=int(kv_tok),
        kv_cache_bytes_per_token_per_device=int(kv_tok_dev), activation_bytes_per_device=int(act),
        memory_budget_bytes_per_device=budget, kv_cache_tokens=int(kv_tokens), concurrent_sequences=int(seqs),
        decode_tokens_per_s=round(1.0 / t1, 1), decode_tokens_per_s_full_batch=round(batch / t_full, 1),
        full_batch=batch, efficiency=eff, basis=basis,
    )


def max_context_that_fits(model: ModelFacts, c: Candidate, est: Estimates) -> int:
    """Longest context one sequence can have in the KV room left after weights and activations."""
    room = est.memory_budget_bytes_per_device - est.weights_bytes_per_device - est.activation_bytes_per_device
    return max(0, room // est.kv_cache_bytes_per_token_per_device)
