"""The chart's security contract (issue 9): the schema holds every pod to the
restricted Pod Security Standard, the API key travels only through a Secret
as environment variables, checkov's Kubernetes checks pass over every
rendered profile, and a plan or output directory cannot make packager write
or delete outside --out."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from chart_checks import ALL_FEATURES, by_kind, plan, plan_file, pod_specs, render, validate
from packager.chart import write_chart
from packager.cachedir import cache_dir

FIXTURES = ["cpu-smollm2", "nvidia-llama8b-tp2", "nvidia-llama70b-2x8", "amd-mi300x-llama8b"]
DIGEST = "sha256:" + "a" * 64


@pytest.fixture(scope="module")
def charts(tmp_path_factory):
    out = tmp_path_factory.mktemp("charts")
    return {name: write_chart(plan(name), out / name) for name in FIXTURES}


# -- restricted Pod Security Standard in the schema --------------------------------
REFUSED = [
    ("securityContext.privileged=true", "securityContext.privileged"),
    ("securityContext.allowPrivilegeEscalation=true", "securityContext.allowPrivilegeEscalation"),
    ("securityContext.runAsUser=0", "securityContext.runAsUser"),
    ("podSecurityContext.runAsUser=0", "podSecurityContext.runAsUser"),
    ("securityContext.runAsNonRoot=false", "securityContext.runAsNonRoot"),
    ("podSecurityContext.runAsNonRoot=false", "podSecurityContext.runAsNonRoot"),
    ("securityContext.capabilities.add=[SYS_ADMIN]", "securityContext.capabilities.add.0"),
    ("securityContext.capabilities.drop=[NET_RAW]", "securityContext.capabilities.drop"),
    ("securityContext.seccompProfile.type=Unconfined", "securityContext.seccompProfile.type"),
    ("hostNetwork=true", "hostNetwork"),
    ("hostPID=true", "hostPID"),
    ("volumes=[{name: h, hostPath: {path: /}}]", "volumes"),
]


@pytest.mark.parametrize("setting,field", REFUSED, ids=[r[0] for r in REFUSED])
def test_schema_refuses_what_restricted_pss_forbids(run_cli, tmp_path, setting, field):
    code, out, err = run_cli("chart", "--plan", str(plan_file("cpu-smollm2", tmp_path)), "--out", str(tmp_path / "out"),
                             "--set", setting)
    assert code == 2, (out, err)
    assert field in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_net_bind_service_is_the_one_capability_allowed(run_cli, tmp_path):
    code, out, err = run_cli("chart", "--plan", str(plan_file("cpu-smollm2", tmp_path)), "--out", str(tmp_path / "out"),
                             "--set", "securityContext.capabilities.add=[NET_BIND_SERVICE]")
    assert code == 0, err


# -- API key -----------------------------------------------------------------------
def _env(container) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("name", FIXTURES)
def test_existing_secret_reaches_server_and_test_pod_as_env_only(charts, name):
    objs = render(charts[name], {**ALL_FEATURES, "auth": {"existingSecret": "llm-key"}})
    assert not by_kind(objs, "Secret")  # the user's Secret is used, not copied
    pods = pod_specs(objs) + [p["spec"] for p in by_kind(objs, "Pod")]
    served = 0
    for spec in pods:
        for c in spec["containers"]:
            env = _env(c)
            if "PACKAGER_API_KEY" in env:
                served += 1
                for var in ("PACKAGER_API_KEY", "VLLM_API_KEY"):
                    assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "llm-key", "key": "api-key"}
            assert "--api-key" not in c.get("args", []) + c.get("command", [])
    # every HTTP server container (Deployment or LWS leader) and the helm test pod
    assert served == len([s for s in pods if s["containers"][0]["name"] != "worker"])
    for obj in objs:
        validate(obj)


def test_api_key_from_values_makes_a_secret_and_notes_warn(charts):
    key = "sk-from-values-0123456789"
    objs = render(charts["cpu-smollm2"], {"auth": {"apiKey": key}})
    (secret,) = by_kind(objs, "Secret")
    assert secret["stringData"] == {"api-key": key}
    ref = _env(pod_specs(objs)[0]["containers"][0])["PACKAGER_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"]
    text = json.dumps([o for o in objs if o["kind"] != "Secret"])
    assert key not in text  # only the Secret holds it
    import helm_python as helm

    with helm.Chart.load(str(charts["cpu-smollm2"])) as chart:
        notes = chart.render({"auth": {"apiKey": key}}, name="rel", namespace="ai")["smollm2-135m-instruct/templates/NOTES.txt"]
        open_notes = chart.render(None, name="rel", namespace="ai")["smollm2-135m-instruct/templates/NOTES.txt"]
    assert "WARNING: the API key came from the values" in notes and key not in notes
    assert "WARNING: no API key" in open_notes


def test_no_key_means_no_secret_and_no_key_env(charts):
    objs = render(charts["cpu-smollm2"])
    assert not by_kind(objs, "Secret")
    assert "PACKAGER_API_KEY" not in _env(pod_specs(objs)[0]["containers"][0])


# -- a real policy checker over every rendered profile -------------------------------
# Skipped checkov checks, each with the reason it does not apply here.
CHECKOV_SKIPS = {
    "CKV_K8S_21": "the namespace is Helm's --namespace at install time; rendered objects carry none",
    "CKV_K8S_11": "no CPU limit on purpose: CFS throttling stalls decode steps; requests are set",
    "CKV_K8S_35": "vLLM reads its key only from VLLM_API_KEY; the Secret is mounted as env, never argv",
    "CKV_K8S_40": "the image's user is UID 1000; the restricted PSS requires non-root, which the schema enforces",
}
MUST_PASS = {"CKV_K8S_16", "CKV_K8S_20", "CKV_K8S_23", "CKV_K8S_28", "CKV_K8S_37", "CKV_K8S_22", "CKV_K8S_31",
             "CKV_K8S_29", "CKV_K8S_43", "CKV_K8S_17", "CKV_K8S_19"}


def checkov(directory: Path) -> dict:
    tool = Path(os.environ.get("PACKAGER_TOOLS") or cache_dir("tools")) / "checkov" / "bin" / "checkov"
    exe = str(tool) if tool.exists() else shutil.which("checkov")
    if exe is None:
        msg = "checkov is not installed: run bash .ci/security_tools.sh"
        pytest.fail(msg) if os.environ.get("CI") else pytest.skip(msg)
    r = subprocess.run([exe, "-d", str(directory), "--framework", "kubernetes", "--compact", "--skip-download",
                        "--skip-check", ",".join(CHECKOV_SKIPS), "-o", "json"], capture_output=True, text=True, timeout=600)
    report = json.loads(r.stdout)
    return report[0] if isinstance(report, list) else report


def _write_rendered(directory: Path, name: str, objs: list) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.yaml").write_text(yaml.safe_dump_all(objs + _lws_pods(objs)))


def _lws_pods(objs: list) -> list:
    """checkov has no LeaderWorkerSet checks: its leader and worker templates, as Pods, get the Pod checks."""
    pods = []
    for lws in by_kind(objs, "LeaderWorkerSet"):
        t = lws["spec"]["leaderWorkerTemplate"]
        for role, tmpl in (("leader", t["leaderTemplate"]), ("worker", t["workerTemplate"])):
            meta = {"name": f"{lws['metadata']['name']}-{role}", "namespace": "ai",
                    "annotations": tmpl.get("metadata", {}).get("annotations", {})}
            pods.append({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": tmpl["spec"]})
    return pods


def test_checkov_passes_every_rendered_profile(charts, tmp_path):
    for name in FIXTURES:
        for label, values in (("defaults", {}), ("all", {**ALL_FEATURES, "auth": {"existingSecret": "k"}})):
            _write_rendered(tmp_path, f"{name}-{label}", render(charts[name], {**values, "image": {"digest": DIGEST}}))
    report = checkov(tmp_path)
    failed = [(f["check_id"], f["resource"]) for f in report["results"]["failed_checks"]]
    assert not failed, failed
    passed = {f["check_id"] for f in report["results"]["passed_checks"]}
    assert MUST_PASS <= passed, MUST_PASS - passed
    checked = {f["resource"] for f in report["results"]["passed_checks"]}
    assert any(r.endswith("-leader") for r in checked) and any(r.endswith("-worker") for r in checked)


def test_checkov_catches_a_privileged_pod(charts, tmp_path):
    # The checker must be able to fail: the same objects with the schema bypassed.
    objs = render(charts["cpu-smollm2"], {"image": {"digest": DIGEST}})
    sc = by_kind(objs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    sc.update(privileged=True, allowPrivilegeEscalation=True)
    _write_rendered(tmp_path, "bad", objs)
    failed = {f["check_id"] for f in checkov(tmp_path)["results"]["failed_checks"]}
    assert {"CKV_K8S_16", "CKV_K8S_20"} <= failed


# -- nothing escapes --out -----------------------------------------------------------
@pytest.mark.parametrize("bad", ["../victim", "/tmp/abs", "a/../../victim", "Victim", ""])
def test_plan_file_names_cannot_escape_out(run_cli, tmp_path, bad):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    planned = json.loads(plan_file("cpu-smollm2", tmp_path).read_text())
    planned["model"]["name"] = bad
    evil = tmp_path / "evil.plan.json"
    evil.write_text(json.dumps(planned, indent=2))
    (tmp_path / "out").mkdir()
    code, out, err = run_cli("chart", "--plan", str(evil), "--out", str(tmp_path / "out"))
    assert code == 2, (out, err)
    assert f"{evil}:" in err and "model.name" in err and "Traceback" not in err
    assert (victim / "keep.txt").read_text() == "mine"
    assert not any((tmp_path / "out").iterdir())


def test_a_directory_packager_did_not_write_is_never_replaced(run_cli, tmp_path):
    out = tmp_path / "out"
    mine = out / "smollm2-135m-instruct"
    mine.mkdir(parents=True)
    (mine / "precious.txt").write_text("mine")
    pf = str(plan_file("cpu-smollm2", tmp_path))
    code, _, err = run_cli("chart", "--plan", pf, "--out", str(out))
    assert code == 2 and "not written by packager" in err
    assert (mine / "precious.txt").read_text() == "mine"
    shutil.rmtree(mine)
    for _ in range(2):  # packager's own output is replaced on a re-run
        code, stdout, err = run_cli("chart", "--plan", pf, "--out", str(out))
        assert code == 0, err
    assert (mine / ".packager-output").is_file() and (mine / "Chart.yaml").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["smollm2-135m-instruct"]


def test_hub_token_is_a_mounted_secret_file(charts):
    objs = render(charts["cpu-smollm2"], {"weights": {"mode": "volume", "tokenSecret": "hf-token"}})
    (spec,) = pod_specs(objs)
    c = spec["containers"][0]
    assert _env(c)["HF_TOKEN_PATH"]["value"] == "/var/run/secrets/packager/hf/token"
    mount = next(m for m in c["volumeMounts"] if m["name"] == "hf-token")
    assert mount["readOnly"] and mount["mountPath"] == "/var/run/secrets/packager/hf"
    vol = next(v for v in spec["volumes"] if v["name"] == "hf-token")
    assert vol["secret"]["secretName"] == "hf-token" and vol["secret"]["defaultMode"] == 0o440
    assert not any(e["name"] == "HF_TOKEN" for e in c.get("env", []))
    for obj in objs:
        validate(obj)
