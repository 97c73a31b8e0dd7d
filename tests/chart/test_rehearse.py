"""`packager rehearse`: every container of a chart replayed with the launcher's dry run.

GPU charts are rehearsed with the installed packager (no vLLM image here) on the hardware they were
planned for (PACKAGER_HARDWARE); the CPU chart in its real image is in tests/image/test_rehearse_image.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from chart_checks import REPO

MODELS = sorted((REPO / "manifests" / "models").glob("*.yaml"))
GPU_HARDWARE = [("nvidia-h100-sxm-80gb:8", None),
                ("nvidia-h100-sxm-80gb:8x2", "vllm-bf16-tp8-pp2-throughput"),
                ("nvidia-l4:1", None),
                ("amd-mi300x:8", None)]


def packager(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "packager.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def chart_for(model: Path, hardware: str, profile: str | None, out: Path) -> Path | None:
    args = ["chart", str(model), "--hardware", hardware, "--out", str(out)]
    if profile:
        plan = json.loads(packager("profiles", str(model), "--hardware", hardware, "--json").stdout or "{}")
        if profile not in {c["name"] for c in plan.get("candidates", [])}:
            return None  # this model has no such profile on this hardware (e.g. it fits on fewer GPUs only)
        args += ["--profile", profile]
    r = packager(*args)
    if r.returncode != 0 and ("no profile fits" in r.stderr or "selected no profile" in r.stderr):
        return None
    assert r.returncode == 0, r.stderr
    return Path(r.stdout.strip())


@pytest.mark.parametrize("hardware,profile", GPU_HARDWARE, ids=[h for h, _ in GPU_HARDWARE])
def test_every_example_chart_would_start(tmp_path, hardware, profile):
    rehearsed = 0
    for model in MODELS:
        chart = chart_for(model, hardware, profile, tmp_path / model.stem)
        if chart is None:
            continue
        r = packager("rehearse", str(chart), "--json")
        report = json.loads(r.stdout)
        failed = {c["workload"] + "/" + c["container"]: [x for x in c["checks"] if x["ok"] is False]
                  for c in report["containers"] if not c["ok"]}
        assert r.returncode == 0 and not failed, f"{model.stem} on {hardware}: {failed}\n{r.stderr[-2000:]}"
        roles = {c["role"] for c in report["containers"]}
        assert "test" in roles and (roles >= {"leader", "worker"} if profile else "server" in roles)
        for c in report["containers"]:
            if c["role"] in ("server", "leader"):
                rec = c["record"]
                assert rec["profile"] and rec["argv"], rec
                names = {x["name"] for x in c["checks"]}
                assert "starts" in names and "weights" in names
                if rec["runtime"] == "vllm":
                    assert "vllm-argv" in names and "middleware" in names
        rehearsed += 1
    assert rehearsed >= 3, f"only {rehearsed} example models have a chart on {hardware}"


def _mini_chart(tmp_path: Path, kind_yaml: str, values: dict) -> Path:
    chart = tmp_path / "mini"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: mini\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text(yaml.safe_dump(values))
    (chart / "templates" / "workload.yaml").write_text(kind_yaml)
    return chart


LEADER_WITHOUT_LAUNCHER = """\
apiVersion: leaderworkerset.x-k8s.io/v1
kind: LeaderWorkerSet
metadata:
  name: mini
spec:
  leaderWorkerTemplate:
    size: 2
    leaderTemplate:
      spec:
        containers:
          - name: leader
            image: {{ .Values.image | quote }}
            command: ["vllm"]
            args: {{ toJson .Values.args }}
    workerTemplate:
      spec:
        containers:
          - name: worker
            image: {{ .Values.image | quote }}
            command: ["ray", "start", "--address=$(LWS_LEADER_ADDRESS):6379", "--block"]
"""

SERVER = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: mini
spec:
  template:
    spec:
      containers:
        - name: server
          image: {{ .Values.image | quote }}
          command: ["vllm"]
          args: {{ toJson .Values.args }}
          env:
            - name: PYTHONPATH
              value: {{ .Values.pythonpath | quote }}
"""


def _vllm_args() -> list[str]:
    plan = json.loads(packager("profiles", "llama-3.1-8b-instruct", "--hardware", "nvidia-h100-sxm-80gb:1",
                               "--json").stdout)
    return plan["selected"]["engine_argv"][1:]  # after "vllm"


def test_a_leader_without_the_import_path_fails_naming_container_and_check(tmp_path):
    """The chart's leader once ran `vllm serve ... --middleware runtimes.vllm_health...` without the
    launcher: nothing put `runtimes` on vLLM's import path."""
    chart = _mini_chart(tmp_path, LEADER_WITHOUT_LAUNCHER, {"image": "vllm/vllm-openai:v0.33.0",
                                                             "args": _vllm_args()})
    r = packager("rehearse", str(chart))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "LeaderWorkerSet/mini [leader] container leader" in r.stdout
    assert "middleware (runtimes.vllm_health" in r.stdout and "PYTHONPATH is empty" in r.stdout


def test_an_unknown_vllm_flag_fails_the_argv_check(tmp_path):
    chart = _mini_chart(tmp_path, SERVER, {"image": "vllm/vllm-openai:v0.33.0", "pythonpath": "",
                                           "args": _vllm_args() + ["--enable-warp-drive"]})
    r = packager("rehearse", str(chart), "--json")
    assert r.returncode == 1
    (c,) = json.loads(r.stdout)["containers"]
    bad = {x["name"]: x["detail"] for x in c["checks"] if x["ok"] is False}
    assert "--enable-warp-drive" in bad["vllm-argv"], bad
    assert c["workload"] == "Deployment/mini"


def test_a_missing_image_tag_fails_with_the_registry_given(tmp_path, registry):
    model = REPO / "manifests" / "models" / "smollm2-135m-instruct.yaml"
    chart = chart_for(model, "nvidia-l4:1", None, tmp_path / "c")
    r = packager("rehearse", str(chart), "--set", "image.tag=no-such-tag-0", "--registry", registry)
    assert r.returncode == 1, r.stdout
    assert "FAIL image: packager/smollm2-135m-instruct:no-such-tag-0 does not exist in registry" in r.stdout


def test_bad_input_is_exit_2(tmp_path):
    r = packager("rehearse", str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "CHART_DIR" in r.stderr
    model = REPO / "manifests" / "models" / "smollm2-135m-instruct.yaml"
    chart = chart_for(model, "cpu", None, tmp_path / "c")
    r = packager("rehearse", str(chart), "--profile", "no-such-profile")
    assert r.returncode == 2 and "--profile" in r.stderr and "cpu-" in r.stderr
    r = packager("rehearse", str(chart), "--hardware", "nvidia-l44:1")
    assert r.returncode == 2 and "Traceback" not in r.stderr


SECRET_AND_ITEMS = """\
apiVersion: v1
kind: Secret
metadata:
  name: mini-creds
stringData:
  creds: {{ .Values.secret | quote }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: mini-files
data:
  f: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: mini
spec:
  template:
    spec:
      volumes:
        - name: files
          configMap:
            name: mini-files
            items:
              - key: f
                path: {{ .Values.itemPath | quote }}
      containers:
        - name: server
          image: {{ .Values.image | quote }}
          command: ["vllm"]
          args: {{ toJson .Values.args }}
          volumeMounts:
            - name: files
              mountPath: /etc/mini
          env:
            - name: HF_MIRROR_AUTH
              valueFrom:
                secretKeyRef: {name: mini-creds, key: creds}
            - name: PYTHONPATH
              value: /nowhere
"""


def test_values_from_secrets_never_show_whatever_their_name(tmp_path):
    secret = "s3cr3t-" + tmp_path.name
    chart = _mini_chart(tmp_path, SECRET_AND_ITEMS, {"image": "vllm/vllm-openai:v0.33.0", "secret": secret,
                                                     "itemPath": "f.txt", "args": _vllm_args()})
    r = packager("rehearse", str(chart), "--json")
    assert secret not in r.stdout + r.stderr
    (c,) = json.loads(r.stdout)["containers"]
    assert c["record"]["env"]["HF_MIRROR_AUTH"] == "REDACTED"  # a name no rule calls secret
    assert {x["name"]: x["ok"] for x in c["checks"]}["middleware"] is False  # /nowhere holds no runtimes/


def test_a_volume_item_path_cannot_leave_its_stage(tmp_path):
    """A launcher container's volumes are staged in a temp dir; a chart's items[].path stays inside it."""
    launcher_pod = SECRET_AND_ITEMS.replace('          command: ["vllm"]\n          args: {{ toJson .Values.args }}\n', "")
    chart = _mini_chart(tmp_path, launcher_pod, {"image": "packager/none:0", "secret": "x",
                                                 "itemPath": "../../../escaped-" + tmp_path.name})
    r = packager("rehearse", str(chart))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "items[].path" in r.stderr, r.stderr
    assert not list(Path("/tmp").glob("escaped-" + tmp_path.name))
