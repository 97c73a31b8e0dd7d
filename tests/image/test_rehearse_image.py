"""`packager rehearse` on the built CPU image's chart: every container replayed inside the real image
(`docker run --network none`, the chart's user, read-only root, its volumes), launcher in dry-run mode."""
from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _chart(built_image):
    charts = [p.parent for p in (built_image["out"] / "smollm2-135m-instruct" / "chart").glob("*/Chart.yaml")]
    assert len(charts) == 1, charts
    return charts[0]


def test_the_cpu_chart_would_start_in_its_image(built_image, helpers):
    r = helpers.packager_cli("rehearse", str(_chart(built_image)), "--json", timeout=600)
    report = json.loads(r.stdout)
    assert r.returncode == 0, json.dumps(report, indent=1)[-4000:] + r.stderr[-2000:]
    by_role = {c["role"]: c for c in report["containers"]}
    server = by_role["server"]
    assert server["replayed"] == "image" and server["image"] == built_image["tag"]
    rec = server["record"]
    assert rec["in_image"] is True and rec["ok"] is True and rec["exit_code"] == 0
    assert rec["runtime"] == "cpu" and rec["argv"][1:3] == ["-m", "runtimes.fallback"]
    assert rec["model_path"].startswith("/opt/packager/model/")
    assert rec["plan_source"] == "/etc/packager/plan.json"  # the mounted ConfigMap is what the pod reads
    checks = {x["name"]: x["ok"] for x in server["checks"]}
    assert checks["image"] and checks["starts"] and checks["weights"]
    assert by_role["test"]["checks"] and all(x["ok"] for x in by_role["test"]["checks"])


def test_a_profile_the_image_lacks_fails_the_server(built_image, helpers):
    """Pinning a GPU profile on CPU hardware: the replayed launcher refuses, rehearse exits 1."""
    r = helpers.packager_cli("rehearse", str(_chart(built_image)), "--hardware", "nvidia-l4:1", timeout=600)
    assert r.returncode == 1, r.stdout
    assert "[server] container server: would NOT start" in r.stdout and "FAIL starts" in r.stdout

