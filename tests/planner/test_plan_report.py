"""`packager report`: one self-contained HTML file, opened offline in headless Debian chromium.

Under CI=true a missing chromium fails these tests (`.ci/chromium.sh` installs it); elsewhere it skips them.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
M = ROOT / "manifests" / "models"
DEFAULT = M / "smollm2-135m-instruct.yaml"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--virtual-time-budget=5000",
                  # no network at view time: every host unresolvable, every request sent to a dead proxy
                  "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9"]


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing: run .ci/chromium.sh (CI must open the report in a real browser)")
        pytest.skip("chromium is not installed (bash .ci/chromium.sh)")
    return path


def browse(html: Path, *extra: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, html.as_uri()],
                              capture_output=True, text=True, timeout=120)


def dump_dom(html: Path) -> str:
    done = browse(html, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def screenshot(html: Path, png: Path, size: str = "1300,1500") -> Path:
    done = browse(html, f"--window-size={size}", f"--screenshot={png}")
    assert done.returncode == 0 and png.exists(), done.stderr[-2000:]
    return png


def report(run_cli, tmp_path: Path, model: Path, hardware: str, *extra: str) -> Path:
    out = tmp_path / f"{model.stem}.html"
    code, stdout, err = run_cli("report", str(model), "--hardware", hardware, "--out", str(out), *extra)
    assert code == 0, err
    assert f"wrote {out}" in stdout
    return out


def test_report_is_one_self_contained_file(run_cli, tmp_path):
    html = report(run_cli, tmp_path, DEFAULT, "cpu").read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=", html), "every script must be inline"
    markup = re.sub(r"<script>.*?</script>", "", html, flags=re.S)  # plotly.js itself names URLs it never loads here
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", markup), "nothing may load from the network"
    assert "plotly.js" in html and html.count('class="plotly-graph-div"') == 2
    assert "cpu-fp32-tp1-pp1-throughput won:" in html  # the one-sentence why
    assert "Rejected profiles and why" in html and "the CPU runtime computes in fp32, not bf16" in html


def test_report_renders_its_charts_in_chromium(run_cli, tmp_path):
    html = report(run_cli, tmp_path, M / "mixtral-8x7b-instruct-v0.1.yaml", "nvidia-h100-sxm-80gb:2")
    dom = dump_dom(html)
    assert 'data-js-errors="0"' in dom, "a script failed while the page rendered"
    graphs = dom.count('class="plotly-graph-div')
    assert graphs == 2, graphs
    # plotly.js ran: each graph drew its SVG layers, its bars (one per profile and segment) and its lines
    assert dom.count('class="main-svg"') >= 2 * graphs
    assert dom.count('class="point"') >= 16 and dom.count('class="scatterlayer') >= 1
    assert "vllm-bf16-tp2-pp1-throughput won:" in dom
    png = screenshot(html, tmp_path / "mixtral.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_default_plan_screenshot_is_committed_and_current(run_cli, tmp_path):
    """docs/report-default.png is the default plan (SmolLM2 on this CPU), drawn like this test draws it."""
    committed = ROOT / "docs" / "report-default.png"
    assert committed.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = report(run_cli, tmp_path, DEFAULT, "cpu")
    dom = dump_dom(html)
    assert 'data-js-errors="0"' in dom and dom.count('class="plotly-graph-div') == 2
    fresh = screenshot(html, tmp_path / "default.png")
    assert abs(fresh.stat().st_size - committed.stat().st_size) < 0.5 * committed.stat().st_size


def test_report_when_nothing_fits_still_writes_advice(run_cli, tmp_path):
    html = report(run_cli, tmp_path, M / "llama-3.1-70b-instruct.yaml", "nvidia-t4:1").read_text(encoding="utf-8")
    assert "Nothing fits this hardware." in html and "advice:" in html
    assert 'class="plotly-graph-div"' not in html


def test_report_bad_input_is_one_message_and_exit_2(run_cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEFAULT.read_text(encoding="utf-8").replace("context_length: 2048", "context_length: lots"))
    code, out, err = run_cli("report", str(bad), "--hardware", "cpu", "--out", str(tmp_path / "r.html"))
    assert code == 2 and "Traceback" not in err
    assert re.search(rf"{re.escape(str(bad))}:\d+: serving\.context_length", err), err
    code, _, err = run_cli("report", str(DEFAULT), "--hardware", "cpu", "--objective", "cheapest")
    assert code == 2 and "--objective" in err and "Traceback" not in err
    code, _, err = run_cli("report", str(DEFAULT), "--hardware", "cpu", "--out", str(tmp_path / "no" / "such" / "r.html"))
    assert code == 2 and "--out" in err and "Traceback" not in err
