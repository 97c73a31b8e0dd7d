"""Memory and speed estimates for one candidate: pure arithmetic over facts, stated in words."""
from __future__ import annotations

import math
import re

from packager.facts import ModelFacts
from packager.planner.rules import rules
from packager.planner.types import Candidate, Estimates
from packager.catalog import Accelerator, catalog
from packager.vllm.defaults import kv_bytes_per_token as vllm_kv_bytes_per_token
from runtimes.cpu_isa import direct_rows

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


def forward_bytes(model: ModelFacts, precision: str, tokens: int, tp: int) -> int:
    """Peak of the profiling run's forward pass over `tokens` batched tokens (rules.yaml vllm.memory)."""
    m = rules()["vllm"]["memory"]
    per_token = (m["forward_intermediate"] * model.intermediate_size // tp + m["forward_hidden"] * model.hidden_size)
    return int(tokens * per_token * compute_dtype_bytes(precision))


def sampler_bytes(model: ModelFacts, max_num_seqs: int) -> int:
    """The sampler's dummy run: fp32 logits of max_num_seqs x vocab, several copies at its peak."""
    return int(rules()["vllm"]["memory"]["sampler_logits_copies"] * max_num_seqs * model.vocab_size * 4)


def non_torch_bytes(devices: int) -> int:
    nt = rules()["vllm"]["memory"]["non_torch_gib"]
    return int((nt["parallel"] if devices > 1 else nt["single"]) * GiB)


def cuda_graph_bytes() -> int:
    return int(rules()["vllm"]["memory"]["cuda_graph_gib"] * GiB)


def fit_margin_bytes(budget: int) -> int:
    m = rules()["fit_margin"]
    return int(max(m["min_gib"] * GiB, m["fraction_of_budget"] * budget))


def activation_bytes(model: ModelFacts, c: Candidate, max_num_seqs: int, max_num_batched_tokens: int,
                     sampler_in_profile: bool = True) -> int:
    """Peak working memory besides weights and KV (vLLM: what its profiling run measures as activation peak).

    vLLM runs the forward pass, then the sampler, one after the other: the peak is the larger of the two.
    """
    if c.runtime == "vllm":
        fwd = forward_bytes(model, c.precision, max_num_batched_tokens, c.tp)
        return max(fwd, sampler_bytes(model, max_num_seqs) if sampler_in_profile else 0)
    dtype = compute_dtype_bytes(c.precision)
    tokens = min(512, max(1, max_num_seqs) * 16)  # the fallback prefills in chunks
    overhead = 0.25 * GiB if c.runtime == "triton" else 0.5 * GiB  # CUDA context / Python + torch on CPU
    per_token = (2 * model.hidden_size + 2 * model.intermediate_size // c.tp) * dtype
    logits = max_num_seqs * model.vocab_size * 4  # fp32 logits for sampling
    return int(tokens * per_token + logits + overhead)


def device_memory_gib(c: Candidate) -> float:
    """What the engine multiplies by its utilisation: the CUDA-reported total for GPUs, host memory for CPUs."""
    acc = c.pool.accelerator
    return (acc.engine_memory_gib if acc.is_gpu else None) or c.pool.device_memory_gib


def efficiency(c: Candidate) -> float:
    """Achieved / peak bandwidth in decode: the catalog row's measured value, else the runtime's default."""
    return c.pool.accelerator.efficiency(c.runtime) or rules()["efficiency"][c.runtime]


def touched_fraction(model: ModelFacts, batch: int) -> float:
    """Share of the weights one decode step reads: MoE layers touch E(1-(1-k/E)^b) of E experts at batch b."""
    if not model.is_moe:
        return 1.0
    e, k = model.experts, model.active_experts or 1
    expert_params = 3 * model.hidden_size * model.intermediate_size * model.layers
    shared = max(model.parameters - e * expert_params, 0)
    touched = e * (1 - (1 - k / e) ** max(1, batch))
    return min(1.0, (shared + touched * expert_params) / model.parameters)


def _bandwidth_bytes_s(c: Candidate) -> float:
    return c.pool.accelerator.bandwidth_gbs * 1e9


def _peak_flops(c: Candidate, batch: int = 1) -> float:
    """``batch``: decode rows per matmul. The CPU runtime multiplies more than cpu_isa.BF16_DIRECT_ROWS of them
    on a bf16 weight copy where the CPU has native bf16 (the detected accelerator then carries bf16_tflops)."""
    acc = c.pool.accelerator
    if not acc.is_gpu:
        if acc.bf16_tflops and batch > direct_rows(True):
            return acc.bf16_tflops * 1e12
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


def cpu_weights_read(model: ModelFacts, batch: int = 1, bf16: bool = False) -> int:
    """Weight bytes one decode step of ``batch`` rows reads in the CPU runtime (runtimes/fallback/linear.py).
    Few rows multiply the packed weights: int4 (groups of 32, bf16 scale and zero: 0.625 B/param) where the
    checkpoint is already 4-bit in such groups (a Q4_0/Q4_1 GGUF), else int8 per output row, and an int8 LM
    head. More rows read a copy: bf16 (2 B/param) where the CPU has native bf16 (``bf16``), else fp32 (4)."""
    if batch > direct_rows(bf16):
        return int(model.parameters * (2 if bf16 else 4))
    per = rules()["cpu"]["decode_bytes_per_param"]
    file = str((model.source or {}).get("file", ""))
    body = per["int4"] if model.format == "gguf" and re.search(r"\.Q4_[01]\.gguf$", file, re.I) else per["int8"]
    head = model.vocab_size * model.hidden_size
    return int((model.parameters - head * (1 if model.tie_word_embeddings else 2)) * body + head * per["int8"])


def cpu_resident_weight_bytes(model: ModelFacts, bf16: bool = False) -> int:
    """What the CPU runtime holds for the weights: the fp32 copy prompt rows multiply (every matrix and the
    embedding, a tied LM head once more as its own copy), the packed int4/int8 matrices few decode rows read,
    and with native bf16 the bf16 copy bigger batches read. SmolLM2's Q4_1 GGUF: 1.02 GB planned with bf16,
    0.75 without; a loaded engine holds 1.09 and 0.82 GB (tests/runtime/test_memory.py: the rest is the
    tokenizer). The loader's freed fp32 pages stay with the process until malloc returns them (about 0.25 GB
    here), which the CPU budget's 20 % margin (memory_utilization 0.8) covers."""
    head = model.vocab_size * model.hidden_size
    fp32 = (model.parameters + (head if model.tie_word_embeddings else 0)) * 4
    return int(fp32 + cpu_weights_read(model) + (model.parameters * 2 if bf16 else 0))


def cpu_overhead_seconds(model: ModelFacts, batch: int) -> float:
    """The CPU runtime's time a step spends off the rooflines (small ops, Python, per-sequence attention
    bookkeeping), per layer: rules.yaml cpu.step_overhead_ms, fitted in calibration.yaml."""
    o = rules()["cpu"]["step_overhead_ms"]
    return model.layers * (o["per_layer"] + o["per_layer_per_sequence"] * batch) * 1e-3


def step_seconds(model: ModelFacts, c: Candidate, *, batch: int, context: int, weights_per_device: int,
                 kv_bytes_per_token_per_device: int) -> float:
    """One decode step at `batch` sequences of `context` tokens: the bandwidth and compute rooflines
    at the device's efficiency, plus tp/pp communication. Batch 1 walks the pp stages one after another;
    a full batch keeps them all busy with micro-batches. The CPU runtime reads its int4/int8 weights,
    not the fp32 it holds for prefill, and pays a measured per-step overhead."""
    r = rules()
    cpu = c.runtime == "cpu"
    weights = cpu_weights_read(model, batch, bool(c.pool.accelerator.bf16_tflops)) if cpu else weights_per_device
    bw = _bandwidth_bytes_s(c) * efficiency(c)
    read = weights * touched_fraction(model, batch) + batch * context * kv_bytes_per_token_per_device
    t_mem = read / bw * (c.pp if batch == 1 else 1)
    t_compute = 2 * model.active_parameters * batch / (c.devices * _peak_flops(c, batch) * r["compute_utilisation"])
    return max(t_mem, t_compute) + _comm_seconds_per_step(model, c) + (cpu_overhead_seconds(model, batch) if cpu else 0.0)


def estimate(model: ModelFacts, c: Candidate, *, max_model_len: int, max_num_seqs: int,
             memory_utilization: float, per_slot_kv: bool, max_num_batched_tokens: int = 0,
             sampler_in_profile: bool = True, cuda_graphs_in_budget: bool = True,
             device_gib: float | None = None, lora_bytes: int = 0) -> Estimates:
    """Memory and speed of one candidate. The keyword switches after per_slot_kv describe older vLLM
    releases (calibration rows); the planner leaves them at the pinned vLLM's behaviour."""
    r = rules()
    compute_bytes = compute_dtype_bytes(c.precision)
    kv_dtype = 1 if c.kv_cache_dtype == "fp8" else compute_bytes
    native_bf16 = bool(c.pool.accelerator.bf16_tflops)
    total_weights = cpu_resident_weight_bytes(model, native_bf16) if c.runtime == "cpu" else weight_bytes(model, c.precision)
    weights_dev = total_weights // c.devices
    kv_tok = kv_bytes_per_token(model, kv_dtype)
    kv_tok_dev = kv_bytes_per_token_per_device(model, kv_dtype, c.tp, c.pp)
    act = activation_bytes(model, c, max_num_seqs, max_num_batched_tokens, sampler_in_profile)
    vllm = c.runtime == "vllm"
    non_torch = non_torch_bytes(c.devices) if vllm else 0
    graphs = cuda_graph_bytes() if vllm and cuda_graphs_in_budget else 0
    device = int((device_gib or device_memory_gib(c)) * GiB)
    budget = int(memory_utilization * device)
    room = max(0, budget - weights_dev - act - non_torch - graphs - lora_bytes)
    margin = fit_margin_bytes(budget)
    kv_tokens = room // kv_tok_dev
    if per_slot_kv:  # the fallback reserves max_model_len per slot, so capacity is whole slots
        slots = min(max_num_seqs, kv_tokens // max_model_len)
        kv_tokens = slots * max_model_len
    seqs = kv_tokens // max_model_len

    eff = efficiency(c)
    typical_ctx = min(max_model_len, 4096) // 2
    step = dict(context=typical_ctx, weights_per_device=weights_dev, kv_bytes_per_token_per_device=kv_tok_dev)
    t1 = step_seconds(model, c, batch=1, **step)
    # Full batch: vLLM admits sequences by the KV they really use (typical context), the fallback whole slots.
    batch = max(1, min(max_num_seqs, seqs if per_slot_kv else kv_tokens // max(1, typical_ctx)))
    t_full = step_seconds(model, c, batch=batch, **step)
    basis = (f"{c.runtime} at {eff:.2f} of {c.pool.accelerator.bandwidth_gbs:g} GB/s; "
             + (f"weights {cpu_weights_read(model, 1, native_bf16) / GiB:.2f} GiB read per step at one sequence, "
                f"{cpu_weights_read(model, batch, native_bf16) / GiB:.2f} GiB at {batch} ({weights_dev / GiB:.2f} GiB held); "
                if c.runtime == "cpu" else
                f"weights {weights_dev / GiB:.2f} GiB/device read once per step"
                f"{' (MoE: the experts a batch touches)' if model.is_moe else ''}; ")
             + f"KV at {typical_ctx} tokens of context; compute at {r['compute_utilisation']:.2f} of peak; "
             f"tp/pp communication {_comm_seconds_per_step(model, c) * 1e3:.2f} ms/step")
    return Estimates(
        weights_bytes_per_device=int(weights_dev), kv_cache_bytes_per_token=int(kv_tok),
        kv_cache_bytes_per_token_per_device=int(kv_tok_dev), activation_bytes_per_device=int(act),
        memory_budget_bytes_per_device=budget, kv_cache_tokens=int(kv_tokens), concurrent_sequences=int(seqs),
        decode_tokens_per_s=round(1.0 / t1, 1), decode_tokens_per_s_full_batch=round(batch / t_full, 1),
        full_batch=batch, efficiency=eff, basis=basis,
        non_torch_bytes_per_device=int(non_torch), cuda_graph_bytes_per_device=int(graphs),
        kv_cache_bytes_per_device=int(room), margin_bytes_per_device=int(margin),
        device_memory_bytes=device, max_num_batched_tokens=int(max_num_batched_tokens),
        lora_bytes_per_device=int(lora_bytes),
    )


def fits(est: Estimates, context: int) -> bool:
    """KV room for one full-length sequence plus the stated margin."""
    return est.kv_cache_bytes_per_device - est.margin_bytes_per_device >= context * est.kv_cache_bytes_per_token_per_device


def max_context_that_fits(model: ModelFacts, c: Candidate, est: Estimates) -> int:
    """Longest context one sequence can have in the KV room left after everything else and the margin."""
    room = est.kv_cache_bytes_per_device - est.margin_bytes_per_device
    return max(0, room // est.kv_cache_bytes_per_token_per_device)
