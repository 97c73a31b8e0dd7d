"""Issue 25, item 4: the path from chart to running pod is written down and stays true.

`deploy --dry-run` starts with the exact `helm upgrade --install` line; the chart's README lists the
commands of a first install. Every one that can run without a cluster or the internet runs here: the
packager CLI, kubectl's client (`--dry-run=client`), Helm's own `--set` parser and renderer, the
loopback registry. Helm has no binary here: its command lines are read flag by flag (an unknown flag
fails the test) and carried out with the Helm SDK (helm_python), which is Helm's Go code.
"""
from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import helm_python as helm
import yaml

from chart_checks import REPO, one, pod_specs, render
from chart_pull import pull_chart
from packager.deploy import render_manifests

MODEL, HW = "smollm2-135m-instruct", "cpu"


def packager(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "packager.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=900)


def helm_upgrade(argv: list[str], cwd: Path) -> dict:
    """`helm upgrade --install RELEASE CHART [flags]` as Helm reads it: release, chart, namespace, values."""
    assert argv[:3] == ["helm", "upgrade", "--install"], argv
    release, chart, rest = argv[3], argv[4], argv[5:]
    out = {"release": release, "chart": chart, "namespace": "default", "values": {}, "version": None,
           "context": None, "create_namespace": False}
    i = 0
    while i < len(rest):
        flag = rest[i]
        if flag == "--create-namespace":
            out["create_namespace"] = True
            i += 1
            continue
        value = rest[i + 1]
        if flag in ("--namespace", "-n"):
            out["namespace"] = value
        elif flag == "--kube-context":
            out["context"] = value
        elif flag == "--version":
            out["version"] = value
        elif flag == "--set":
            from packager.chart.overrides import deep_merge

            out["values"] = deep_merge(out["values"], helm.parse_set_string(value))
        else:
            raise AssertionError(f"flag {flag} is not one this test reads: teach it, or drop it from the command")
        i += 2
    helm.validate_release_name(release)
    return out


def test_deploy_dry_run_starts_with_the_helm_command_that_installs_exactly_it(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "site-a",
        "contexts": [{"name": "site-a", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {}}]}))
    env = {"KUBECONFIG": str(kubeconfig)}
    r = packager("deploy", "llama-3.1-8b-instruct", "--hardware", "nvidia-h100-sxm-80gb:8", "--dry-run",
                 "-n", "ai", "--release", "r1", "--set", "service.port=9000", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("# helm: helm upgrade --install r1 ")
    helm_cmd = helm_upgrade(shlex.split(lines[0].removeprefix("# helm: ")), tmp_path)
    assert (helm_cmd["namespace"], helm_cmd["create_namespace"]) == ("ai", True)
    kubectl = subprocess.run(["kubectl", "config", "current-context"], capture_output=True, text=True, env={**os.environ, **env})
    assert helm_cmd["context"] == kubectl.stdout.strip() == "site-a"  # the context kubectl would use
    assert "release: r1   namespace: ai   context: site-a" in r.stdout
    chart_line = next(x for x in lines if x.startswith("# chart: "))
    chart_cmd = shlex.split(chart_line.split(": ", 2)[2])
    assert chart_cmd[:2] == ["packager", "chart"]
    made = packager(*chart_cmd[1:], cwd=tmp_path)  # the printed chart command, run as printed
    assert made.returncode == 0, made.stderr
    chart_dir = tmp_path / helm_cmd["chart"]
    assert (tmp_path / made.stdout.strip()).resolve() == chart_dir.resolve()
    manifests = render_manifests(chart_dir, release=helm_cmd["release"], namespace=helm_cmd["namespace"],
                                 values=helm_cmd["values"] or None)
    body = r.stdout[r.stdout.index("---\n"):]
    assert body == manifests  # the helm line installs exactly what the dry run printed
    assert "port: 9000" in body and r.stdout.index("# helm:") == 0


def test_dry_run_without_a_kubeconfig_says_so_and_names_no_context(tmp_path):
    r = packager("deploy", MODEL, "--hardware", HW, "--dry-run", cwd=tmp_path,
                 env={"KUBECONFIG": str(tmp_path / "absent"), "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert "--kube-context" not in r.stdout.splitlines()[0]
    assert "context: none: no kubeconfig" in r.stdout


def readme_commands() -> list[str]:
    text = (REPO / "helm" / "README.md").read_text()
    section = text[text.index("## From chart to running pod"):]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_chart_readme_path_to_a_cluster_runs(tmp_path, registry):
    words = {"MODEL": MODEL, "HW": HW, "REGISTRY": f"{registry}/team", "NS": "ai", "RELEASE": "r1",
             "USER": "robot", "PASSWORD": "secret-pw"}
    env = {"HF_HUB_OFFLINE": "1"}
    seen = []
    rendered = {}
    for raw in readme_commands():
        line = re.sub(r"\b(" + "|".join(words) + r")\b", lambda m: words[m.group(1)], raw)
        argv = shlex.split(line)
        if argv[0] == "export":
            key, _, value = argv[1].partition("=")
            env[key] = value
            seen.append("export")
        elif argv[:2] == ["packager", "build"]:
            # --no-image: the image build itself is tests/image's; here the chart and plan it writes matter.
            r = packager(*argv[1:], "--no-image", cwd=tmp_path, env=env)
            assert r.returncode == 0, (line, r.stderr)
            assert "hf_your_token" not in r.stdout + r.stderr
            seen.append("build")
        elif argv[:2] == ["packager", "publish"]:
            # --skip-image: no image was built above; the chart goes to the loopback registry for real.
            r = packager(*argv[1:], "--skip-image", cwd=tmp_path, env=env)
            assert r.returncode == 0, (line, r.stderr)
            rendered["published"] = re.search(r"chart: (\S+)", r.stdout).group(1)
            words["VERSION"] = rendered["published"].rsplit(":", 1)[1]  # the version publish pushed
            seen.append("publish")
        elif argv[0] == "kubectl":
            r = subprocess.run([*argv, "--dry-run=client", "-o", "yaml"], capture_output=True, text=True,
                               env={**os.environ, "KUBECONFIG": str(tmp_path / "none")})
            assert r.returncode == 0, (line, r.stderr)
            obj = yaml.safe_load(r.stdout)
            rendered[obj["metadata"]["name"]] = obj
            seen.append(f"kubectl {obj['kind']}")
        elif argv[0] == "helm":
            cmd = helm_upgrade(argv, tmp_path)
            chart = cmd["chart"]
            if chart.startswith("oci://"):  # the published chart, pulled back as a cluster's Helm would
                assert f"{chart}:{cmd['version']}" == rendered["published"]
                chart = str(pull_chart(rendered["published"], tmp_path / "pulled"))
            objs = render(tmp_path / chart, cmd["values"], release=cmd["release"], namespace=cmd["namespace"])
            rendered.setdefault("installs", []).append((cmd, objs))
            seen.append("helm")
        else:
            raise AssertionError(f"a README command this test does not run: {line}")
    assert seen.count("build") == 2 and "publish" in seen and seen.count("helm") == 2
    assert rendered["ai"]["kind"] == "Namespace"
    assert rendered["regcred"]["type"] == "kubernetes.io/dockerconfigjson"
    assert registry in base64.b64decode(rendered["regcred"]["data"][".dockerconfigjson"]).decode()
    token = rendered["hf-token"]
    assert set(token["data"]) == {"token"}  # the key the chart mounts (weights.tokenSecret)
    for cmd, objs in rendered["installs"]:
        spec = pod_specs(objs)[0]
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]
        image = cmd["values"].get("image", {}).get("repository")
        if image:
            assert spec["containers"][0]["image"].startswith(f"{registry}/team/packager/{MODEL}:")
        assert one(objs, "Service")["metadata"]["name"].startswith("r1-")
