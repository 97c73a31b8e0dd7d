"""Issue 25, item 1: a throughput plan fills the node (replicas x tp x pp = devices per node) and the chart
asks for exactly those devices; latency keeps one instance and says what the idle devices could do."""
from __future__ import annotations

import pytest

from chart_checks import REPO, by_kind, one, pod_specs, render
from packager.chart import write_chart
from packager.planner import plan_files

LLAMA8B = str(REPO / "manifests" / "models" / "llama-3.1-8b-instruct.yaml")
LLAMA70B = str(REPO / "manifests" / "models" / "llama-3.1-70b-instruct.yaml")


def gpus_in_use(objs, key="nvidia.com/gpu") -> int:
    dep = one(objs, "Deployment")
    return dep["spec"]["replicas"] * pod_specs(objs)[0]["containers"][0]["resources"]["limits"][key]


def test_8b_on_8_h100_throughput_plans_and_charts_all_8_gpus(tmp_path):
    plan = plan_files(LLAMA8B, "nvidia-h100-sxm-80gb:8", "throughput")
    sel = plan.selected
    f = sel.fill
    assert f.replicas_per_node * sel.candidate.tp * sel.candidate.pp == 8 and f.idle_devices_per_node == 0
    assert f.devices_in_use == 8 and f.how == "pods"
    # The estimate per node is the replicas' sum, and the why says so and why pods.
    assert f.tokens_per_s_per_node == pytest.approx(f.replicas_per_node * sel.estimates.decode_tokens_per_s_full_batch,
                                                    rel=1e-3)
    assert f"{f.tokens_per_s_per_node:,.0f} tokens/s per node" in plan.why and "one pod each" in plan.why and plan.why.count(". ") == 0
    # A larger tp with a higher node estimate is named, with why the replicas still win.
    bigger = max((p for p in plan.candidates if p.candidate.objective == "throughput" and p.candidate.precision == "bf16"
                  and p.candidate.kv_cache_dtype == "auto"), key=lambda p: p.fill.tokens_per_s_per_node)
    assert f"tp={bigger.candidate.tp} estimates {bigger.fill.tokens_per_s_per_node:,.0f} per node" in plan.why
    objs = render(write_chart(plan.to_dict(), tmp_path))
    assert gpus_in_use(objs) == 8
    assert one(objs, "Deployment")["spec"]["replicas"] == f.replicas


def test_autoscaling_bounds_follow_the_node_count(tmp_path):
    plan = plan_files(LLAMA8B, "nvidia-h100-sxm-80gb:8x2", "throughput").to_dict()
    fill = plan["selected"]["fill"]
    assert fill["replicas"] == 2 * fill["replicas_per_node"] and fill["devices_in_use"] == 16
    objs = render(write_chart(plan, tmp_path), {"autoscaling": {"keda": {"enabled": True}}})
    so = one(objs, "ScaledObject")["spec"]
    assert (so["minReplicaCount"], so["maxReplicaCount"]) == (1, fill["replicas"])
    assert not by_kind(objs, "HorizontalPodAutoscaler")


def test_latency_keeps_one_instance_and_names_the_idle_devices(tmp_path):
    plan = plan_files(LLAMA8B, "nvidia-h100-sxm-80gb:6", "latency")
    sel = plan.selected
    assert sel.candidate.objective == "latency" and sel.fill.replicas == 1
    idle = 6 - sel.candidate.devices
    assert idle and sel.fill.idle_devices_per_node == idle
    assert f"leaves {idle} of 6 devices per node idle" in plan.why
    values_chart = write_chart(plan.to_dict(), tmp_path)
    objs = render(values_chart, {"autoscaling": {"hpa": {"enabled": True}}})
    hpa = one(objs, "HorizontalPodAutoscaler")["spec"]
    assert hpa["maxReplicas"] == 6 // sel.candidate.devices  # the autoscaler may use what the node still holds


def test_cost_leaves_the_rest_of_the_node_and_says_how_to_use_it():
    plan = plan_files(LLAMA8B, "nvidia-h100-sxm-80gb:8", "cost")
    assert plan.selected.candidate.devices == 1 and plan.selected.fill.replicas == 1
    assert "--set replicaCount=8" in plan.why


def test_a_pinned_profile_carries_its_own_fill(tmp_path):
    from packager.planfile import pin_profile

    plan = pin_profile(plan_files(LLAMA70B, "nvidia-h100-sxm-80gb:8", "throughput").to_dict(),
                       "vllm-bf16-tp4-pp1-throughput")
    objs = render(write_chart(plan, tmp_path))
    assert gpus_in_use(objs) == 8 and one(objs, "Deployment")["spec"]["replicas"] == 2


def test_the_table_shows_replicas_and_the_estimate_per_node():
    from packager.table import HEADER, render_plan

    plan = plan_files(LLAMA8B, "nvidia-h100-sxm-80gb:8", "throughput")
    text = render_plan(plan)
    assert "REPL" in HEADER and "NODE TOK/S" in HEADER and "FIT@CTX" in HEADER and " SEQS" not in HEADER
    row = next(line for line in text.splitlines() if line.startswith(" *1"))
    cols = row.split()
    assert cols[1] == plan.selected.name and cols[2:4] == ["1", "8"]
    assert float(cols[-1]) == plan.selected.fill.tokens_per_s_per_node
    assert "not --max-num-seqs" in text  # the legend tells the two counts apart


def test_replicas_on_several_nodes_share_the_weights_volume_read_write_many(tmp_path):
    one_node = write_chart(plan_files(LLAMA8B, "nvidia-h100-sxm-80gb:8", "throughput").to_dict(), tmp_path / "a")
    two_nodes = write_chart(plan_files(LLAMA8B, "nvidia-h100-sxm-80gb:8x2", "throughput").to_dict(), tmp_path / "b")
    modes = [one(render(c, {"weights": {"mode": "volume"}}), "PersistentVolumeClaim")["spec"]["accessModes"]
             for c in (one_node, two_nodes)]
    assert modes == [["ReadWriteOnce"], ["ReadWriteMany"]]
