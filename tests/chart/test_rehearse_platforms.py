"""`packager rehearse` on platform objects: the pods KServe would make from `packager kserve`'s objects are
replayed with the launcher's dry run (the plan from --plan, as their image holds it), and the chart's
endpoint picker is read, not run."""
from __future__ import annotations

import json

import yaml
from chart_checks import REPO, plan_file, render

from packager.chart.values import values_from_plan
from packager.rehearse.containers import containers
from packager.rehearse.platforms import endpoint_picker, is_endpoint_picker


def rehearse_json(run_cli, *args):
    code, out, err = run_cli("rehearse", *args, "--json")
    return code, json.loads(out), err


def kserve_file(run_cli, tmp_path, name, *args):
    path = tmp_path / f"{name}.yaml"
    code, _, err = run_cli("kserve", "--plan", str(plan_file(name, tmp_path)), "--out", str(path), *args)
    assert code == 0, err
    return path


def checks(container: dict) -> dict:
    return {c["name"]: c for c in container["checks"]}


def test_llm_inference_service_leader_and_worker_would_start(run_cli, tmp_path):
    path = kserve_file(run_cli, tmp_path, "nvidia-llama70b-2x8")
    code, out, err = rehearse_json(run_cli, str(path))
    assert code == 0, err
    roles = {(c["workload"], c["role"]) for c in out["containers"]}
    assert roles == {("LLMInferenceService/llama-3-1-70b-instruct", "leader"),
                     ("LLMInferenceService/llama-3-1-70b-instruct", "worker")}
    leader = next(c for c in out["containers"] if c["role"] == "leader")
    assert leader["record"]["profile"] == "vllm-bf16-tp8-pp2-throughput"
    assert leader["record"]["argv"][:3] == ["vllm", "serve", "/mnt/models"]  # KServe's model dir
    got = checks(leader)
    assert got["planned-argv"]["ok"] and got["vllm-argv"]["ok"] and got["weights"]["ok"]
    assert "storage initializer" in got["weights"]["detail"]


def test_inference_service_pod_is_the_runtime_merged_with_the_model(run_cli, tmp_path):
    path = kserve_file(run_cli, tmp_path, "nvidia-llama8b-l4", "--kind", "inferenceservice")
    code, out, err = rehearse_json(run_cli, str(path))
    assert code == 0, err
    (c,) = out["containers"]
    assert (c["workload"], c["container"]) == ("InferenceService/llama-3-1-8b-instruct", "kserve-container")
    argv = c["record"]["argv"]
    assert argv[argv.index("--port") + 1] == "8080"  # the launcher binds the runtime's port


def test_template_args_that_disagree_with_the_launcher_fail(run_cli, tmp_path):
    path = kserve_file(run_cli, tmp_path, "nvidia-llama8b-l4")
    plan_map, llm = yaml.safe_load_all(path.read_text())
    args = llm["spec"]["template"]["containers"][0]["args"]
    args[args.index("--max-num-seqs") + 1] = "7"
    path.write_text(yaml.safe_dump_all([plan_map, llm]))
    code, out, _ = rehearse_json(run_cli, str(path))
    assert code == 1
    failed = checks(out["containers"][0])["planned-argv"]
    assert failed["ok"] is False and "7" in failed["detail"].split()


def test_the_plan_comes_from_the_mounted_config_map(run_cli, tmp_path):
    path = kserve_file(run_cli, tmp_path, "cpu-smollm2", "--weights", "baked")
    code, out, err = rehearse_json(run_cli, str(path))
    assert code == 0, err
    (c,) = out["containers"]
    assert c["record"]["plan_source"] == "/etc/packager/plan.json" and c["record"]["profile"] == "cpu-fp32-tp1-pp1-throughput"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d["kind"] != "ConfigMap"]
    path.write_text(yaml.safe_dump_all(docs))  # without it (and without its image) the launcher has no plan
    code, out, _ = rehearse_json(run_cli, str(path))
    assert code == 1
    assert "plan" in checks(out["containers"][0])["starts"]["detail"]


def test_chart_endpoint_picker_is_read_not_run(run_cli, tmp_path):
    chart = tmp_path / "chart"
    code, _, err = run_cli("chart", "--plan", str(plan_file("cpu-smollm2", tmp_path)), "--out", str(chart),
                           "--set", "router.enabled=true")
    assert code == 0, err
    code, out, err = rehearse_json(run_cli, str(chart / "smollm2-135m-instruct"))
    assert code == 0, err
    (epp,) = [c for c in out["containers"] if c["workload"].endswith("-epp")]
    assert epp["replayed"] == "read" and epp["role"] == "endpoint-picker"
    got = checks(epp)
    assert got["pool"]["ok"] and got["config"]["ok"] and got["image"]["ok"] is None


def test_endpoint_picker_checks_can_fail():
    from chart_checks import plan

    v = values_from_plan(plan("cpu-smollm2"))
    v["router"] = {"enabled": True}
    docs = render(REPO / "helm", v)
    (epp,) = [c for c in containers(docs, "ai") if is_endpoint_picker(c)]
    ok = {c.name: c.ok for c in endpoint_picker(epp, docs)}
    assert ok["pool"] and ok["config"]
    no_pool = [d for d in docs if d["kind"] != "InferencePool"]
    assert {c.name: c.ok for c in endpoint_picker(epp, no_pool)}["pool"] is False
    for d in docs:
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-epp"):
            cfg = yaml.safe_load(d["data"]["config.yaml"])
            cfg["plugins"] = cfg["plugins"][1:]  # a profile now names an undeclared scorer
            d["data"]["config.yaml"] = yaml.safe_dump(cfg)
    (epp,) = [c for c in containers(docs, "ai") if is_endpoint_picker(c)]
    assert {c.name: c.ok for c in endpoint_picker(epp, docs)}["config"] is False
