"""The encoder stage: an embedding model's candidate -> a Profile or a Rejection.

An encoder keeps no KV cache: a request is one forward pass and its memory is gone when it is
answered. So a profile fits when weights + the activations of one step of `max_num_batched_tokens`
(+ the engine's own overheads and the margin) fit the budget, and its speed is sequences per second
through a compute-bound forward (rules.yaml `encoder`).
"""
from __future__ import annotations

from packager.facts import ModelFacts
from packager.planner.argv import engine_argv, engine_for
from packager.planner.constraints import precision_reasons, runtime_reasons
from packager.planner.estimates import (GiB, _peak_flops, compute_dtype_bytes, device_memory_gib, efficiency,
                                        fit_margin_bytes, non_torch_bytes, weight_bytes, vllm_device)
from packager.planner.rules import rules
from packager.planner.types import Candidate, Estimates, PlanRequest, Profile, Rejection
from packager.vllm.defaults import default_max_num_batched_tokens, default_max_num_seqs, vllm_defaults


def encoder_reasons(model: ModelFacts, c: Candidate) -> list[str]:
    r = rules()["encoder"]
    if c.runtime == "triton":
        return ["the fallback runtime embeds on CPU only; on GPUs embedding models are served by vLLM"]
    out = [x for x in runtime_reasons(model, c) if not x.startswith("the fallback runtime implements")]
    out += [x for x in precision_reasons(model, c) if not (c.runtime == "cpu" and x.startswith("the CPU runtime"))]
    if c.runtime == "cpu":
        out += cpu_precision_reasons(c)
    if c.runtime == "cpu" and model.family not in r["families"]:
        out.append(f"the fallback runtime embeds with {', '.join(r['families'])} encoders, not {model.family}")
    if c.kv_cache_dtype != "auto":
        out.append("an encoder keeps no KV cache: an fp8 KV cache changes nothing")
    if c.tp > 1 or c.pp > 1:
        out.append(f"an encoder of {model.parameters / 1e6:.0f} M parameters runs on one device: "
                   "more devices serve more replicas, not a split model")
    if c.variant is not None or c.precision not in r["precisions"]:
        out.append(f"embedding profiles compute in {', '.join(r['precisions'])}, not {c.precision}")
    return out


def cpu_precision_reasons(c: Candidate) -> list[str]:
    """Our encoder computes in fp32, or with bf16 matmuls (`--dtype bfloat16`), which pay only on a CPU
    with native bf16: the hardware manifest says so by giving its CPU a bf16_tflops."""
    if c.precision == "fp32":
        return []
    if c.precision != "bf16":
        return [f"the CPU encoder computes in fp32 or bf16, not {c.precision}"]
    if not c.pool.accelerator.bf16_tflops:
        return ["bf16 matmuls on a CPU pay only with AVX512-BF16 or AMX: give the pool's accelerator "
                "bf16_tflops in the hardware manifest to plan them"]
    return []


def _peak(c: Candidate) -> float:
    acc = c.pool.accelerator
    if not acc.is_gpu and c.precision == "bf16" and acc.bf16_tflops:
        return acc.bf16_tflops * 1e12  # the manifest's figure for the pool's CPU
    return _peak_flops(c)


def activation_bytes(model: ModelFacts, c: Candidate, tokens: int, context: int) -> int:
    """One step of `tokens` tokens: per token the q/k/v, attention output, residual and norm (6 H) and the
    MLP's up output and activation (2 I); attention scores for sequences of `context` tokens
    (tokens x heads x context), in the compute dtype."""
    per_token = 6 * model.hidden_size + 2 * model.intermediate_size + model.attention_heads * context
    return int(tokens * per_token * compute_dtype_bytes(c.precision))


def flops_per_sequence(model: ModelFacts, n: int) -> float:
    """2 x the matmul weights (all but the embedding tables) per token, plus attention's 4 x L x H x n per token."""
    embed = (model.vocab_size + model.max_positions) * model.hidden_size
    return n * (2 * max(model.parameters - embed, 1) + 4 * model.layers * model.hidden_size * n)


def estimate(model: ModelFacts, c: Candidate, *, context: int, max_num_seqs: int, tokens: int,
             utilization: float) -> Estimates:
    r = rules()
    weights = weight_bytes(model, c.precision)
    act = activation_bytes(model, c, tokens, context)
    overhead = non_torch_bytes(1) if c.runtime == "vllm" else int(r["encoder"]["cpu_overhead_gib"] * GiB)
    device = int(device_memory_gib(c) * GiB)
    budget = int(utilization * device)
    n = min(context, r["encoder"]["typical_tokens"])
    util = r["compute_utilisation"]
    # Batch 1: the weights are read once (bandwidth) or the forward computes (FLOPS), whichever is slower;
    # a full step is compute-bound.
    # Each step also pays a fixed cost (scheduling, tokenizing, pooling, launching kernels) that dominates
    # a small encoder on a GPU.
    bw = c.pool.accelerator.bandwidth_gbs * 1e9 * efficiency(c)
    fixed = r["encoder"]["step_overhead_ms"][c.runtime] / 1e3
    t1 = max(weights / bw, flops_per_sequence(model, n) / (_peak(c) * util)) + fixed
    # vLLM schedules at most max_num_seqs sequences a step; our engine fills a step by tokens alone
    full = max(1, tokens // n if c.runtime == "cpu" else min(max_num_seqs, tokens // n))
    per_s = full / (full * flops_per_sequence(model, n) / (_peak(c) * util) + fixed)
    return Estimates(
        weights_bytes_per_device=weights, kv_cache_bytes_per_token=0, kv_cache_bytes_per_token_per_device=0,
        activation_bytes_per_device=act, memory_budget_bytes_per_device=budget, kv_cache_tokens=0,
        concurrent_sequences=max_num_seqs, decode_tokens_per_s=round(n / t1, 1),
        decode_tokens_per_s_full_batch=round(per_s * n, 1), full_batch=full, efficiency=efficiency(c),
        basis=(f"encoder, no KV cache: steps of {full} sequences of {n} tokens, compute-bound at {util:.2f} of peak "
               f"+ {fixed * 1e3:g} ms per step; "
               f"tokens/s are prompt tokens embedded; activations for {tokens} tokens per step"),
        non_torch_bytes_per_device=overhead, kv_cache_bytes_per_device=0,  # CPU: Python + torch's own memory
        margin_bytes_per_device=fit_margin_bytes(budget), device_memory_bytes=device,
        max_num_batched_tokens=tokens, sequences_per_s=round(per_s, 1),
    )


def _settings(req: PlanRequest, c: Candidate, context: int) -> tuple[int, int, float]:
    r = rules()
    if c.runtime == "vllm":
        device = vllm_device(c.pool.accelerator)
        seqs = default_max_num_seqs(device, world_size=1)
        tokens = max(default_max_num_batched_tokens(device, world_size=1), context)
        util = vllm_defaults().gpu_memory_utilization
    else:
        seqs, tokens = r["cpu"]["max_num_seqs"][c.objective], r["encoder"]["cpu_max_num_batched_tokens"]
        util = r["cpu"]["memory_utilization"]
    if req.model.max_num_seqs:
        seqs = min(seqs, req.model.max_num_seqs)
    return seqs, max(tokens, seqs + 1), util


def evaluate_encoder(req: PlanRequest, c: Candidate) -> Profile | Rejection:
    model = req.model
    reasons = encoder_reasons(model, c)
    if reasons:
        return Rejection(c.name, tuple(reasons), c)
    context = req.max_model_len or model.context_length
    seqs, tokens, util = _settings(req, c, context)
    est = estimate(model, c, context=context, max_num_seqs=seqs, tokens=tokens, utilization=util)
    need = est.weights_bytes_per_device + est.activation_bytes_per_device + est.non_torch_bytes_per_device
    if need + est.margin_bytes_per_device > est.memory_budget_bytes_per_device:
        return Rejection(c.name, (f"weights {est.weights_bytes_per_device / GiB:.2f} GiB + activations for {tokens} "
                                  f"tokens and overheads exceed {util:g} x {est.device_memory_bytes / GiB:.2f} GiB",), c)
    argv = engine_argv(model, c, model_ref=req.model_ref, max_model_len=context, max_num_seqs=seqs,
                       memory_utilization=util, max_num_batched_tokens=tokens)
    return Profile(candidate=c, max_model_len=context, max_num_seqs=seqs, gpu_memory_utilization=util,
                   estimates=est, engine=engine_for(c), engine_argv=tuple(argv),
                   notes=(f"embedding model ({model.pooling} pooling{', normalised' if model.normalize else ''}): "
                          f"~{est.sequences_per_s:g} sequences/s of {min(context, rules()['encoder']['typical_tokens'])} tokens",
                          *_bf16_note(c)),
                   max_num_batched_tokens=tokens)


def _bf16_note(c: Candidate) -> tuple[str, ...]:
    if c.runtime != "cpu" or c.precision != "bf16":
        return ()
    r = rules()["encoder"]["cpu_bf16"]
    return (f"bf16 matmuls (LayerNorms, residuals, pooling in fp32): min cosine {r['min_cosine']} to the fp32 "
            f"reference, about {r['speedup']}x fp32's embeddings/s ({r['source']})",)
