"""One candidate -> a Profile (with its settings, estimates and argv) or a Rejection (with its reasons)."""
from __future__ import annotations

from dataclasses import dataclass

from packager.facts import ModelFacts
from packager.planner.adapters import adapter_plan, lora_spec
from packager.planner.argv import engine_argv, engine_for
from packager.planner.constraints import static_reasons
from packager.planner.encoder import evaluate_encoder
from packager.planner.estimates import GiB, compute_dtype_bytes, estimate, fits, max_context_that_fits, vllm_device
from packager.planner.rules import rules
from packager.planner.types import Candidate, Estimates, PlanRequest, Profile, Rejection
from packager.vllm.defaults import default_max_num_batched_tokens, default_max_num_seqs, vllm_defaults


@dataclass(frozen=True)
class Settings:
    max_num_seqs: int
    max_num_batched_tokens: int  # 0: not an engine setting (the fallback runtime chunks its own prefill)
    memory_utilization: float
    per_slot_kv: bool


def default_settings(req: PlanRequest, c: Candidate) -> Settings:
    """vLLM's own defaults on this device (latency profiles keep short queues); the fallback's from rules.yaml."""
    r = rules()
    if c.runtime == "vllm":
        device = vllm_device(c.pool.accelerator)
        seqs = default_max_num_seqs(device, world_size=c.devices)
        tokens = default_max_num_batched_tokens(device, world_size=c.devices)
        if c.objective == "latency":
            seqs = min(seqs, r["vllm"]["latency_max_num_seqs"])
        s = Settings(seqs, tokens, vllm_defaults().gpu_memory_utilization, False)
    elif c.runtime == "triton":
        s = Settings(r["cpu"]["max_num_seqs"][c.objective] * 4, 0, vllm_defaults().gpu_memory_utilization, True)
    else:
        s = Settings(r["cpu"]["max_num_seqs"][c.objective], 0, r["cpu"]["memory_utilization"], True)
    if req.model.max_num_seqs:
        s = Settings(min(s.max_num_seqs, req.model.max_num_seqs), s.max_num_batched_tokens, s.memory_utilization,
                     s.per_slot_kv)
    return s


def low_memory_settings(s: Settings) -> Settings:
    """Fewer sequences and a smaller prefill chunk: vLLM's profiling run then reserves less."""
    low = rules()["low_memory"]
    seqs = min(s.max_num_seqs, low["max_num_seqs"])
    tokens = max(seqs, min(s.max_num_batched_tokens, low["max_num_batched_tokens"]))
    return Settings(seqs, tokens, s.memory_utilization, s.per_slot_kv)


def _notes(model: ModelFacts, c: Candidate) -> list[str]:
    notes = []
    if c.tp > model.kv_heads:
        notes.append(f"{model.kv_heads} KV heads are replicated across tp={c.tp}")
    acc = c.pool.accelerator
    native_fp8 = vllm_defaults().fp8_native_min_capability / 10
    if c.precision == "fp8" and acc.vendor == "nvidia" and (acc.compute_capability or 0) < native_fp8:
        notes.append(f"fp8 runs weight-only through Marlin below compute capability {native_fp8}")
    if c.nodes > 1:
        notes.append(f"spans {c.nodes} nodes: vLLM with Ray across a LeaderWorkerSet group")
    return notes


def memory_reason(c: Candidate, est: Estimates, context: int, util: float) -> str:
    kv = est.kv_cache_bytes_per_token_per_device * context
    others = est.activation_bytes_per_device + est.non_torch_bytes_per_device + est.cuda_graph_bytes_per_device
    lora = f" + LoRA adapter slots {est.lora_bytes_per_device / GiB:.2f} GiB" if est.lora_bytes_per_device else ""
    return (f"weights {est.weights_bytes_per_device / GiB:.1f} GiB + activations and overheads {others / GiB:.1f} GiB{lora}"
            f" + KV for {context} tokens ({kv / GiB:.2f} GiB) + margin {est.margin_bytes_per_device / GiB:.1f} GiB"
            f" exceed {util:g} x {est.device_memory_bytes / GiB:.2f} GiB per device")


def _estimate(model: ModelFacts, c: Candidate, s: Settings, context: int) -> Estimates:
    lora = adapter_plan(model, c, compute_dtype_bytes(c.precision))
    return estimate(model, c, max_model_len=context, max_num_seqs=s.max_num_seqs, memory_utilization=s.memory_utilization,
                    per_slot_kv=s.per_slot_kv, max_num_batched_tokens=s.max_num_batched_tokens,
                    lora_bytes=lora.bytes_per_device if lora else 0)


def evaluate(req: PlanRequest, c: Candidate) -> Profile | Rejection:
    model = req.model
    if model.task == "embed":  # no KV cache: its own stage
        return evaluate_encoder(req, c)
    reasons = static_reasons(model, c)
    if reasons:
        return Rejection(c.name, tuple(reasons), c)
    wanted = req.max_model_len or model.context_length
    s = default_settings(req, c)
    context, est = wanted, _estimate(model, c, s, wanted)
    low_notes: list[str] = []
    if not fits(est, wanted):
        if c.runtime == "vllm":  # first shrink what the profiling run reserves, then the context
            low = low_memory_settings(s)
            if low != s:
                changed = [f"--{flag} {a} -> {b}" for flag, a, b in (
                    ("max-num-seqs", s.max_num_seqs, low.max_num_seqs),
                    ("max-num-batched-tokens", s.max_num_batched_tokens, low.max_num_batched_tokens)) if a != b]
                low_notes.append("low memory: " + ", ".join(changed))
                s, est = low, _estimate(model, c, low, wanted)
        if not fits(est, wanted):
            fit = (max_context_that_fits(model, c, est) // 256) * 256
            floor = min(rules()["min_low_memory_context"], wanted)
            if fit < floor:
                reason = memory_reason(c, est, wanted, s.memory_utilization)
                if low_notes:
                    reason += f" even at --max-num-seqs {s.max_num_seqs} --max-num-batched-tokens {s.max_num_batched_tokens}"
                if fit > 0:
                    reason += f"; longest context that fits is {fit} tokens"
                return Rejection(c.name, (reason,), c)
            context = fit
            low_notes.append(f"low memory: context cut from {wanted} to {context} tokens")
            est = _estimate(model, c, s, context)
    if s.per_slot_kv and est.concurrent_sequences < s.max_num_seqs:  # the fallback reserves whole slots
        s = Settings(max(1, est.concurrent_sequences), s.max_num_batched_tokens, s.memory_utilization, s.per_slot_kv)
        est = _estimate(model, c, s, context)
    low_memory = bool(low_notes)
    argv = engine_argv(model, c, model_ref=req.model_ref, max_model_len=context, max_num_seqs=s.max_num_seqs,
                       memory_utilization=s.memory_utilization,
                       max_num_batched_tokens=s.max_num_batched_tokens if low_memory and c.runtime == "vllm" else None,
                       lora=lora_spec(model, adapter_plan(model, c, compute_dtype_bytes(c.precision)),
                                      in_image=req.model_ref is not None))
    return Profile(candidate=c, max_model_len=context, max_num_seqs=s.max_num_seqs,
                   gpu_memory_utilization=s.memory_utilization, estimates=est, engine=engine_for(c),
                   engine_argv=tuple(argv), low_memory=low_memory, notes=tuple(_notes(model, c) + low_notes),
                   max_num_batched_tokens=s.max_num_batched_tokens or None)
