"""How fast does `packager profiles` answer on the default model, against `python -c pass`?

Both run as fresh processes in the same run, alternating, so the ratio cancels out
machine noise. Writes bench/results/cli_latency.json and prints the ratio.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "manifests" / "models" / "smollm2-135m-instruct.yaml"
RUNS = 15


def wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    baseline_cmd = [sys.executable, "-c", "pass"]
    cli_cmd = [sys.executable, "-m", "packager.cli", "profiles", str(MODEL)]
    cli_json_cmd = cli_cmd + ["--json"]
    wall(cli_cmd)  # warm the page cache and .pyc files
    base, table, js = [], [], []
    for _ in range(RUNS):
        base.append(wall(baseline_cmd))
        table.append(wall(cli_cmd))
        js.append(wall(cli_json_cmd))
    result = {
        "runs": RUNS,
        "python_pass_s": statistics.median(base),
        "profiles_table_s": statistics.median(table),
        "profiles_json_s": statistics.median(js),
    }
    result["ratio_table"] = result["profiles_table_s"] / result["python_pass_s"]
    result["ratio_json"] = result["profiles_json_s"] / result["python_pass_s"]
    out = ROOT / "bench" / "results" / "cli_latency.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"python -c pass       {result['python_pass_s'] * 1000:7.1f} ms")
    print(f"packager profiles    {result['profiles_table_s'] * 1000:7.1f} ms  ({result['ratio_table']:.1f}x python -c pass)")
    print(f"packager profiles --json {result['profiles_json_s'] * 1000:5.1f} ms  ({result['ratio_json']:.1f}x python -c pass)")
    print("target: well under 1 s ->", "met" if result["profiles_table_s"] < 0.5 else "NOT met")


if __name__ == "__main__":
    main()
