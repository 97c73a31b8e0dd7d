"""Image build benchmark: cold build, code-only rebuild, layer sizes, start-to-ready.

    python bench/image_build.py [--out bench/results/image_build.json] [--base-image packager-base:bookworm]

Needs a Docker engine and the base image (bash .ci/docker.sh). Measures, in one process:
  - wheelhouse download into an empty cache dir (pip download, for Python 3.11)
  - cold image build (docker build --no-cache, --network none)
  - rebuild after a one-line code change (project wheel + docker build); target <= 15% of cold
  - image size per layer (deps, weights, code, ...)
  - container start -> /v1/health/ready, beside the time to read the weights file from disk
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from packager.build import BuildRequest, engine, run_build  # noqa: E402
from packager.build.projectwheel import build_project_wheel  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_seconds(path: Path) -> float:
    t0 = time.monotonic()
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass
    return time.monotonic() - t0


def _start_to_ready(cli: str, tag: str, timeout: float = 600) -> dict:
    port, name = _free_port(), f"packager-bench-{os.getpid()}"
    t0 = time.monotonic()
    subprocess.run([cli, "run", "-d", "--name", name, "--network", "host", "-e", "PACKAGER_HOST=127.0.0.1",
                    "-e", f"PACKAGER_PORT={port}", tag], check=True, capture_output=True)
    try:
        while time.monotonic() - t0 < timeout:
            if engine.probe_ready(port):
                break
            time.sleep(0.25)
        else:
            raise RuntimeError("container not ready in time")
        ready = time.monotonic() - t0
        logs = subprocess.run([cli, "logs", name], capture_output=True, text=True)
        text = logs.stdout + logs.stderr
        m = re.search(r"model loaded in ([0-9.]+) s", text)
        t_stop = time.monotonic()
        subprocess.run([cli, "stop", name], capture_output=True)
        return {"start_to_ready_s": round(ready, 2), "server_reported_model_load_s": float(m.group(1)) if m else None,
                "stop_s": round(time.monotonic() - t_stop, 2)}
    finally:
        subprocess.run([cli, "rm", "-f", name], capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "image_build.json"))
    ap.add_argument("--base-image", default="packager-base:bookworm")
    args = ap.parse_args()
    cli = engine.docker_cli()
    ok, why = engine.engine_reachable(cli)
    if not ok:
        print(f"no Docker engine: {why}; run bash .ci/docker.sh", file=sys.stderr)
        return 2
    quiet = lambda *_: None  # noqa: E731
    tag = f"packager-bench/smollm2:{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="packager-bench-") as tmp:
        tmp = Path(tmp)
        # 1. render with an empty wheelhouse cache: the download is part of a first build
        t0 = time.monotonic()
        res = run_build(BuildRequest(model=None, out=tmp / "out", hardware="cpu", base_image=args.base_image,
                                     tag=tag, no_image=True, opts=(("cache_dir", str(tmp / "cache")),)), log=quiet)
        render_cold = time.monotonic() - t0
        t0 = time.monotonic()
        run_build(BuildRequest(model=None, out=tmp / "out", hardware="cpu", base_image=args.base_image, tag=tag,
                               no_image=True, opts=(("cache_dir", str(tmp / "cache")),)), log=quiet)
        render_warm = time.monotonic() - t0
        ctx = res.context
        # 2. cold image build: no layer cache at all
        cold = engine.build(ctx, tag, no_cache=True, log=quiet)
        # 3. one-line code change: new project wheel, same deps and weights
        src = tmp / "src"
        src.mkdir()
        for name in ("pyproject.toml", "packager", "runtimes"):
            p = ROOT / name
            (shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__")) if p.is_dir()
             else shutil.copy2(p, src / name))
        with open(src / "runtimes" / "launcher.py", "a") as f:
            f.write(f"\n# bench: a one-line code change {time.time_ns()}\n")  # unique: wheels are reproducible
        t0 = time.monotonic()
        build_project_wheel(ctx / "dist", src, log=quiet)
        wheel_s = time.monotonic() - t0
        tag2 = tag + "-code"
        re_build = engine.build(ctx, tag2, log=quiet)
        rebuild_s = wheel_s + re_build.seconds
        # 4. start to ready, beside reading the weights once from disk
        gguf = next((ctx / "model").glob("*"))
        start = _start_to_ready(cli, tag)
        read_s = _read_seconds(gguf)
        for t in (tag, tag2):
            subprocess.run([cli, "image", "rm", "-f", t], capture_output=True)

    layers: dict[str, int] = {}
    for layer in cold.layers:
        layers[layer.step] = layers.get(layer.step, 0) + layer.size_bytes
    result = {
        "bench": "image_build",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "docker": subprocess.run([cli, "version", "--format", "{{.Server.Version}}"],
                                             capture_output=True, text=True).stdout.strip()},
        "render_with_wheelhouse_download_s": round(render_cold, 2),
        "render_cached_s": round(render_warm, 2),
        "cold_build_s": round(cold.seconds, 2),
        "code_change_rebuild_s": round(rebuild_s, 2),
        "code_change_rebuild_parts_s": {"project_wheel": round(wheel_s, 2), "docker_build": round(re_build.seconds, 2)},
        "rebuild_over_cold": round(rebuild_s / cold.seconds, 3),
        "rebuild_target_max_ratio": 0.15,
        "rebuild_cached_steps": [n for n, c in re_build.steps if c],
        "image_size_bytes": cold.size_bytes,
        "layer_bytes": layers,
        **start,
        "weights_read_from_disk_s": round(read_s, 3),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"rebuild / cold = {result['rebuild_over_cold']:.3f} (target <= 0.15); "
          f"start->ready {start['start_to_ready_s']} s vs weights read {read_s:.2f} s")
    return 0 if result["rebuild_over_cold"] <= 0.15 else 1


if __name__ == "__main__":
    sys.exit(main())
