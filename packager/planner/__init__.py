"""The planner: candidates -> constraints -> estimates -> ranking -> explanation. Imports no torch."""
from __future__ import annotations

from packager.errors import UserError
from packager.facts import Hardware, ModelFacts, model_facts_from_dict
from packager.planner.advice import advise
from packager.planner.argv import engine_argv, engine_for
from packager.planner.candidates import enumerate_candidates
from packager.planner.constraints import static_reasons
from packager.planner.estimates import GiB, estimate, max_context_that_fits, vllm_device
from packager.planner.ranking import rank
from packager.planner.rules import rules
from packager.planner.types import Candidate, Plan, PlanRequest, Profile, Rejection
from packager.vllm.defaults import default_max_num_seqs, vllm_defaults

__all__ = ["Plan", "PlanRequest", "Profile", "Rejection", "make_plan", "plan_files", "read_plan_file", "replan"]


def _settings(req: PlanRequest, c: Candidate) -> tuple[int, float, bool]:
    """(max_num_seqs, memory utilisation, per-slot KV) for a candidate's runtime and objective."""
    r = rules()
    if c.runtime == "vllm":
        seqs = default_max_num_seqs(vllm_device(c.pool.accelerator), world_size=c.devices)
        if c.objective == "latency":
            seqs = min(seqs, r["vllm"]["latency_max_num_seqs"])
        util, per_slot = vllm_defaults().gpu_memory_utilization, False
    elif c.runtime == "triton":
        seqs, util, per_slot = r["cpu"]["max_num_seqs"][c.objective] * 4, vllm_defaults().gpu_memory_utilization, True
    else:
        seqs, util, per_slot = r["cpu"]["max_num_seqs"][c.objective], r["cpu"]["memory_utilization"], True
    if req.model.max_num_seqs:
        seqs = min(seqs, req.model.max_num_seqs)
    return seqs, util, per_slot


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


def _memory_reason(model: ModelFacts, c: Candidate, est, context: int, util: float) -> str:
    kv = est.kv_cache_bytes_per_token_per_device * context
    return (f"weights {est.weights_bytes_per_device / GiB:.1f} GiB + activations {est.activation_bytes_per_device / GiB:.1f} GiB"
            f" + KV for {context} tokens ({kv / GiB:.2f} GiB) exceed {util:g} x {c.pool.device_memory_gib:g} GiB per device")


def evaluate(req: PlanRequest, c: Candidate) -> Profile | Rejection:
    model = req.model
    reasons = static_reasons(model, c)
    if reasons:
        return Rejection(c.name, tuple(reasons), c)
    seqs, util, per_slot = _settings(req, c)
    context = req.max_model_len or model.context_length
    est = estimate(model, c, max_model_len=context, max_num_seqs=seqs, memory_utilization=util, per_slot_kv=per_slot)
    low_memory = False
    if est.concurrent_sequences < 1:
        fit = (max_context_that_fits(model, c, est) // 256) * 256
        floor = min(rules()["min_low_memory_context"], context)
        if fit < floor:
            reason = _memory_reason(model, c, est, context, util)
            if fit > 0:
                reason += f"; longest context that fits is {fit} tokens"
            return Rejection(c.name, (reason,), c)
        context, low_memory = fit, True
        est = estimate(model, c, max_model_len=context, max_num_seqs=seqs, memory_utilization=util, per_slot_kv=per_slot)
    if per_slot and est.concurrent_sequences < seqs:  # the fallback reserves whole slots: fit the count to memory
        seqs = max(1, est.concurrent_sequences)
        est = estimate(model, c, max_model_len=context, max_num_seqs=seqs, memory_utilization=util, per_slot_kv=per_slot)
    notes = _notes(model, c)
    if low_memory:
        notes.append(f"low memory: context cut from {req.max_model_len or model.context_length} to {context} tokens")
    argv = engine_argv(model, c, model_ref=req.model_ref, max_model_len=context, max_num_seqs=seqs, memory_utilization=util)
    return Profile(candidate=c, max_model_len=context, max_num_seqs=seqs, gpu_memory_utilization=util, estimates=est,
                   engine=engine_for(c), engine_argv=tuple(argv), low_memory=low_memory, notes=tuple(notes))


def check_request(req: PlanRequest) -> None:
    """Overrides from the command line or the environment get the same checks as manifests."""
    if req.objective not in ("latency", "throughput"):
        raise UserError(f"objective {req.objective!r} is not allowed", field="objective", hint="use latency or throughput")
    if req.max_model_len is not None and not 0 < req.max_model_len <= req.model.max_positions:
        raise UserError(f"max model length {req.max_model_len} is outside 1..{req.model.max_positions} "
                        f"(the model's positions)", field="max_model_len",
                        hint=f"use at most {req.model.max_positions}")


def make_plan(req: PlanRequest) -> Plan:
    check_request(req)
    profiles: list[Profile] = []
    rejected: list[Rejection] = []
    for c in enumerate_candidates(req.model, req.hardware):
        if req.only_profiles is not None and c.name not in req.only_profiles:
            continue
        result = evaluate(req, c)
        (profiles if isinstance(result, Profile) else rejected).append(result)
    ranked = rank(profiles, req.objective, req.model.precisions)
    advice = advise(req, rejected) if not ranked else []
    return Plan(request=req, candidates=tuple(ranked), rejected=tuple(rejected), advice=tuple(advice))


def read_plan_file(path) -> dict:
    """A plan.json written earlier (`profiles --json`, `build`): bad files are a UserError with the line."""
    import json
    from pathlib import Path

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read the plan: {exc.strerror}", file=str(path)) from None
    except json.JSONDecodeError as exc:
        raise UserError(f"not valid JSON: {exc.msg}", file=str(path), line=exc.lineno) from None


def plan_files(model_path: str, hardware: str | None = None, objective: str | None = None,
               model_ref: str | None = None, max_model_len: int | None = None) -> Plan:
    """Plan from a model manifest file and a hardware file/shorthand (None: this machine)."""
    from packager.manifests import load_hardware, load_model  # pydantic only when manifests are read

    model = load_model(model_path)
    if hardware is None:
        from packager.detect import detect_hardware
        hw: Hardware = detect_hardware()
    else:
        hw = load_hardware(hardware)
    return make_plan(PlanRequest(model=model, hardware=hw, objective=objective or model.objective,
                                 model_ref=model_ref, max_model_len=max_model_len))


def replan(plan: dict, hardware: Hardware, pinned: str | None = None, *, model_ref: str | None = None,
           max_model_len: int | None = None) -> Plan:
    """Re-plan a recorded plan (an image's plan.json) for the hardware found at start, within its profiles."""
    names = tuple(p["name"] for p in plan.get("candidates", []))
    if pinned is not None and pinned not in names:
        raise UserError(f"profile {pinned!r} is not in this image", field="PACKAGER_PROFILE",
                        hint="use one of: " + ", ".join(names))
    model = model_facts_from_dict(plan["model"])
    req = PlanRequest(model=model, hardware=hardware, objective=plan.get("objective", model.objective),
                      model_ref=model_ref or plan.get("model_ref"), max_model_len=max_model_len, only_profiles=names)
    result = make_plan(req)
    if pinned is None:
        return result
    chosen = result.profile(pinned)
    if chosen is None:
        why = next((r.reasons for r in result.rejected if r.name == pinned), ("not offered on this hardware",))
        raise UserError(f"pinned profile {pinned!r} cannot run here: {'; '.join(why)}", field="PACKAGER_PROFILE",
                        hint="unset PACKAGER_PROFILE to let the launcher choose, or pick a compatible profile")
    rest = tuple(p for p in result.candidates if p.name != pinned)
    return Plan(request=req, candidates=(chosen, *rest), rejected=result.rejected, advice=result.advice)
