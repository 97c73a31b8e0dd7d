"""Every `vllm serve` argv the planner offers for the example manifests, as check cases.

    python -m tools.vllm_planned_cases --out /tmp/planned-argvs.json   # from the repository root

writes {"cases": [{"name", "argv", "expect_valid": true}, ...]} for
`python -m packager.vllm.contract [--real] FILE`. Runs in the project's
environment (the planner imports no vllm); the real check then runs the file
inside the vLLM venv, which need not have the planner's dependencies. It reads the
repository's manifests/ (an installed wheel has none), so it lives in tools/, not in packager.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def planner_cases(models_dir: Path | None = None, hardware_dir: Path | None = None) -> list[dict]:
    from packager.manifests import load_hardware, load_model
    from packager.planner import PlanRequest, make_plan

    # Each manifest is read once; the loops only plan.
    models = [(p.stem, load_model(str(p))) for p in sorted((models_dir or REPO / "manifests" / "models").glob("*.yaml"))]
    hardware = [(p.stem, load_hardware(str(p)))
                for p in sorted((hardware_dir or REPO / "manifests" / "hardware").glob("*.yaml"))]
    cases, seen = [], set()
    for m_name, model in models:
        for h_name, hw in hardware:
            for objective in ("throughput", "latency"):
                plan = make_plan(PlanRequest(model=model, hardware=hw, objective=objective)).to_dict()
                for c in plan["candidates"]:
                    if c["runtime"] != "vllm":
                        continue
                    key = tuple(c["engine_argv"])
                    if key in seen:
                        continue
                    seen.add(key)
                    cases.append({"name": f"{m_name}@{h_name}:{c['name']}",
                                  "argv": list(c["engine_argv"]), "expect_valid": True})
    return cases


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.vllm_planned_cases", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    cases = planner_cases()
    a.out.write_text(json.dumps({"cases": cases}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} vLLM argvs to {a.out}", file=sys.stderr)
    return 0 if cases else 1


if __name__ == "__main__":
    sys.exit(main())
