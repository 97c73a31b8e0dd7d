"""Issue 14's examples through the real planner: the fit margin, low-memory argv, the precision order, cost."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from packager.planner import PlanRequest, make_plan, plan_files
from packager.planner.estimates import GiB

ROOT = Path(__file__).resolve().parents[2]
M = ROOT / "manifests" / "models"
H = ROOT / "manifests" / "hardware"


def plan(model: str, hw: str, objective: str | None = None, **model_changes):
    hw_arg = str(H / f"{hw}.yaml") if (H / f"{hw}.yaml").exists() else hw
    p = plan_files(str(M / f"{model}.yaml"), hw_arg, objective)
    if not model_changes:
        return p
    req = p.request
    return make_plan(PlanRequest(model=replace(req.model, **model_changes), hardware=req.hardware,
                                 objective=req.objective))


def flag(argv, name):
    return argv[argv.index(name) + 1] if name in argv else None


def test_llama70b_fp8_on_one_h100_at_16k_is_not_offered_as_fitting():
    """vLLM refuses it ("No available memory for the cache blocks"): weights 67.7 GiB of a 72.9 GiB budget."""
    p = plan("llama-3.1-70b-instruct", "nvidia-h100-sxm-80gb:1", precisions=("fp8",), variants=(), context_length=16384)
    assert p.candidates and not [c.name for c in p.candidates if c.max_model_len >= 16384]
    for c in p.candidates:  # what is offered is low-memory, with a shorter context and smaller batches in its argv
        assert c.low_memory and c.max_model_len < 16384
        argv = c.engine_argv
        assert int(flag(argv, "--max-num-seqs")) <= 16 and int(flag(argv, "--max-num-batched-tokens")) <= 2048
        e = c.estimates
        need = c.max_model_len * e.kv_cache_bytes_per_token_per_device + e.margin_bytes_per_device
        assert e.kv_cache_bytes_per_device >= need  # one full-length sequence plus the margin
        assert any(n.startswith("low memory: --max-num-") for n in c.notes)
    assert p.selected.max_model_len < 16384


def test_low_memory_profiles_lower_their_batch_settings_in_argv():
    """A context that does not fit at vLLM's defaults: the profile shrinks max_num_seqs and the prefill chunk."""
    p = plan_files(str(M / "llama-3.1-8b-instruct.yaml"), "nvidia-l4:1", max_model_len=131072)
    low = [c for c in p.candidates if c.low_memory and c.runtime == "vllm"]
    assert low
    for c in low:
        assert int(flag(c.engine_argv, "--max-num-seqs")) <= 16
        assert int(flag(c.engine_argv, "--max-num-batched-tokens")) <= 2048
        assert c.max_num_batched_tokens == int(flag(c.engine_argv, "--max-num-batched-tokens"))
        assert "--enable-chunked-prefill" in c.engine_argv  # a prefill budget below the context needs chunking
    full = [c for c in p.candidates if not c.low_memory and c.runtime == "vllm"]
    assert all("--max-num-batched-tokens" not in c.engine_argv for c in full)  # defaults stay vLLM's


def test_precision_order_on_llama70b_8x_h100_chooses_bf16():
    p = plan("llama-3.1-70b-instruct", "nvidia-h100-sxm-80gb-x8")
    assert p.request.model.precisions == ("bf16", "fp16")
    assert p.selected.candidate.precision == "bf16", p.selected.name
    assert any(c.candidate.precision == "awq-int4" and c.candidate.devices == 1 for c in p.candidates)  # it fits, yet loses
    assert "bf16 is the manifest's most preferred precision that fits" in p.why


def test_mixtral_on_2x_h100_chooses_bf16_on_two():
    p = plan("mixtral-8x7b-instruct-v0.1", "nvidia-h100-sxm-80gb:2")
    assert p.selected.name == "vllm-bf16-tp2-pp1-throughput", p.selected.name
    assert any(c.candidate.precision == "fp8" and c.candidate.devices == 1 for c in p.candidates)


def test_a_quantized_variant_wins_only_when_nothing_preferred_fits():
    p = plan("llama-3.1-70b-instruct", "nvidia-h100-sxm-80gb:2")  # bf16 needs >= 2 x 65.7 GiB + KV: not on 2
    assert p.selected.candidate.precision == "awq-int4"
    assert "nothing" not in p.why or "no bf16, fp16 profile can run" in p.why


def test_objective_cost_picks_fewest_devices_whatever_the_precision():
    for model, hw in (("llama-3.1-70b-instruct", "nvidia-h100-sxm-80gb-x8"),
                      ("mixtral-8x7b-instruct-v0.1", "nvidia-h100-sxm-80gb:2")):
        p = plan(model, hw, "cost")
        fewest = min(c.candidate.devices for c in p.candidates if not c.low_memory)
        assert p.selected.candidate.devices == fewest == 1, p.selected.name
        assert "fewest devices" in p.why
    assert plan("llama-3.1-70b-instruct", "nvidia-h100-sxm-80gb-x8", "cost").selected.candidate.precision == "awq-int4"


def test_the_plan_says_in_one_sentence_why_the_winner_won():
    for model, hw, objective in (("llama-3.1-8b-instruct", "nvidia-h100-sxm-80gb-x8", "latency"),
                                 ("llama-3.1-8b-instruct", "nvidia-h100-sxm-80gb-x8", "throughput"),
                                 ("smollm2-135m-instruct", "cpu", None)):
        p = plan(model, hw, objective)
        why = p.why
        assert why.startswith(f"{p.selected.name} won: ") and why.endswith(".")
        assert why.count(". ") == 0 and "\n" not in why  # one sentence
    assert "largest tensor-parallel size" in plan("llama-3.1-8b-instruct", "nvidia-h100-sxm-80gb-x8", "latency").why


def test_cli_cost_objective_and_why_in_json_and_table(run_cli):
    code, out, err = run_cli("profiles", str(M / "mixtral-8x7b-instruct-v0.1.yaml"), "--hardware",
                             "nvidia-h100-sxm-80gb:2", "--objective", "cost", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["objective"] == "cost" and d["selected"]["devices"] == 1 and d["why"].startswith(d["selected"]["name"])
    code, out, _ = run_cli("profiles", str(M / "mixtral-8x7b-instruct-v0.1.yaml"), "--hardware", "nvidia-h100-sxm-80gb:2")
    assert code == 0 and "why: vllm-bf16-tp2-pp1-throughput won:" in out
    code, _, err = run_cli("profiles", str(M / "mixtral-8x7b-instruct-v0.1.yaml"), "--objective", "cheap")
    assert code == 2 and "latency or throughput (or cost" in err


def test_memory_budget_uses_what_cuda_reports_not_nvidia_smi():
    e = plan("llama-3.1-8b-instruct", "nvidia-h100-sxm-80gb:1").selected.estimates
    assert e.device_memory_bytes == int(79.22 * GiB)  # vLLM's total_gpu_memory on an H100 80GB
    parts = (e.weights_bytes_per_device + e.activation_bytes_per_device + e.non_torch_bytes_per_device
             + e.cuda_graph_bytes_per_device + e.kv_cache_bytes_per_device)
    assert abs(parts - e.memory_budget_bytes_per_device) <= 1


def test_moe_batch_touches_more_experts():
    from packager.planner.estimates import touched_fraction

    mix = plan("mixtral-8x7b-instruct-v0.1", "nvidia-h100-sxm-80gb:2").request.model
    one, eight, many = (touched_fraction(mix, b) for b in (1, 8, 256))
    assert abs(one - mix.active_parameters / mix.parameters) < 1e-9
    assert one < eight < many <= 1.0 and many > 0.999


def test_throughput_profiles_are_faster_at_full_batch_than_latency_ones():
    """Issue 14 saw Qwen on an L4 with "throughput" profiles slower at full batch than "latency" ones."""
    p = plan("qwen2.5-7b-instruct", "nvidia-l4:1")
    by = {c.name: c.estimates for c in p.candidates}
    for name, e in by.items():
        if name.startswith("vllm-") and name.endswith("-throughput"):
            lat = by[name.replace("-throughput", "-latency")]
            assert e.full_batch > lat.full_batch and e.decode_tokens_per_s_full_batch > lat.decode_tokens_per_s_full_batch
