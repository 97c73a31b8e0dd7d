"""`rehearse` never runs what a chart supplies on this host. When the chart's image is not in the local
engine, the start is replayed with the installed packager; a ConfigMap mounted on the chart's PYTHONPATH
(sitecustomize.py), a `.pth` under its HOME, or a warnings filter naming its module would each run on
the host if the launcher were started with the container's environment. The replay hands the launcher
only its own variables, in Python's isolated mode, and says what it withheld."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from test_rehearse import _mini_chart, packager

HOSTILE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: mini-code
data:
  sitecustomize.py: {{ .Values.code | quote }}
  evilwarn.py: {{ printf "%s\\nclass W(Warning): pass\\n" .Values.code | quote }}
  evil.pth: {{ printf "import pathlib; pathlib.Path(%q).write_text('pth ran')" .Values.canary | quote }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: mini
spec:
  template:
    spec:
      volumes:
        - name: code
          configMap:
            name: mini-code
        - name: home
          configMap:
            name: mini-code
            items:
              - key: evil.pth
                path: .local/lib/python3.11/site-packages/evil.pth
      containers:
        - name: server
          image: packager/not-here:0
          volumeMounts:
            - {name: code, mountPath: /opt/chart-code}
            - {name: home, mountPath: /srv/chart-home}
          env:
            - {name: PYTHONPATH, value: /opt/chart-code}
            - {name: HOME, value: /srv/chart-home}
            - {name: PYTHONWARNINGS, value: "ignore::evilwarn.W"}
            - {name: LD_PRELOAD, value: /opt/chart-code/evil.so}
            - {name: PACKAGER_HARDWARE, value: cpu}
"""


def test_chart_code_never_runs_on_the_host(tmp_path):
    canary = tmp_path / "canary"
    code = f"import pathlib; pathlib.Path({str(canary)!r}).write_text('sitecustomize ran')"
    chart = _mini_chart(tmp_path, HOSTILE, {"code": code, "canary": str(canary) + ".pth"})
    r = packager("rehearse", str(chart), "--json")
    assert "Traceback" not in r.stderr, r.stderr
    assert not canary.exists() and not Path(str(canary) + ".pth").exists(), "chart code ran on this host"
    (c,) = json.loads(r.stdout)["containers"]
    assert c["replayed"] == "installed"
    note = next(n for n in c["notes"] if n.startswith("the replay on this host ran without"))
    for name in ("HOME", "LD_PRELOAD", "PYTHONPATH", "PYTHONWARNINGS"):
        assert name in note, note
    assert c["record"]["pythonpath"][-1] == "/opt/chart-code"  # shown as the real start would have it


def test_a_gpu_chart_still_rehearses_on_the_host_with_its_launcher_variables(tmp_path):
    model = Path(__file__).resolve().parents[2] / "manifests" / "models" / "llama-3.1-8b-instruct.yaml"
    out = packager("chart", str(model), "--hardware", "nvidia-l4:1", "--out", str(tmp_path)).stdout.strip()
    r = packager("rehearse", out, "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["ok"], r.stdout[-3000:] + r.stderr[-2000:]
    server = next(c for c in report["containers"] if c["role"] == "server")
    assert server["replayed"] == "installed" and server["record"]["runtime"] == "vllm"
    assert server["record"]["env"]["HF_HUB_OFFLINE"] == "1"  # the chart's launcher variables still reach it
    assert yaml.safe_load((Path(out) / "values.yaml").read_text())["image"]["repository"]


def test_the_middleware_check_finds_modules_without_running_them(tmp_path):
    """Without the engine's interpreter the --middleware check looks for the module's file under the engine's
    PYTHONPATH; it used to find_spec it, which runs the parent package's __init__.py (chart code, when the
    path was a staged ConfigMap)."""
    from runtimes.launch.engine_env import middleware_importable

    canary = tmp_path / "canary"
    pkg = tmp_path / "path" / "chartpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"open({str(canary)!r}, 'w').write('ran')\n")
    (pkg / "mw.py").write_text("class Mw: pass\n")
    (tmp_path / "path" / "nsonly" / "deep").mkdir(parents=True)  # a namespace package: no __init__.py
    env = {"PYTHONPATH": str(tmp_path / "path"), "PATH": "/nonexistent"}
    argv = ["vllm-absent", "serve", "/m", "--middleware"]
    assert middleware_importable(argv + ["chartpkg.mw.Mw"], env) == (True, "")
    assert middleware_importable(argv + ["nsonly.deep.X"], env) == (True, "")
    ok, why = middleware_importable(argv + ["chartpkg.nope.X"], env)
    assert ok is False and "chartpkg.nope.X" in why
    assert not canary.exists(), "the check ran the package's __init__.py"


READ_ONLY_SERVER = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: mini
spec:
  template:
    spec:
      containers:
        - name: server
          image: vllm/vllm-openai:v0.33.0
          command: ["vllm"]
          args: ["serve", "/m", "--middleware", "chartpkg.mw.Mw"]
          env:
            - {name: PYTHONPATH, value: {{ .Values.path | quote }}}
"""


def test_a_container_read_not_run_has_its_middleware_found_not_imported(tmp_path):
    """A container that does not start through the launcher is read: its --middleware is looked for on its
    PYTHONPATH, never imported by a `vllm` that happens to be on this host's PATH."""
    import os
    import subprocess
    import sys

    canary = tmp_path / "canary"
    pkg = tmp_path / "path" / "chartpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"open({str(canary)!r}, 'w').write('ran')\n")
    (pkg / "mw.py").write_text("class Mw: pass\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "vllm").write_text(f"#!{sys.executable}\n")  # a console script, as pip writes vLLM's
    (bindir / "vllm").chmod(0o755)
    chart = _mini_chart(tmp_path, READ_ONLY_SERVER, {"path": str(tmp_path / "path")})
    r = subprocess.run([sys.executable, "-m", "packager.cli", "rehearse", str(chart), "--json"], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"})
    (c,) = json.loads(r.stdout)["containers"]
    assert c["replayed"] == "read"
    assert {x["name"]: x["ok"] for x in c["checks"]}["middleware"] is True, c["checks"]
    assert not canary.exists(), "the rehearsal imported the chart's middleware on this host"
