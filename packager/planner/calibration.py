"""The planner against public measurements: recompute its figure for every row of calibration.yaml.

    python -m packager.planner.calibration           # prints measured, planned and their ratio per row
    python -m packager.planner.calibration --write   # also writes the planner's figures beside the measured ones

Pure Python: the planner's own estimate functions, run on each row's model, device and settings.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from packager.catalog import accelerator_from_row, catalog
from packager.detect import with_native_bf16
from packager.facts import ModelFacts, Pool
from packager.planner.estimates import GiB, estimate, step_seconds
from packager.planner.types import Candidate

CALIBRATION_FILE = Path(__file__).with_name("calibration.yaml")
TOLERANCE = {"memory": 0.10, "decode": 0.25}
MEMORY_METRICS = {"weights_gib": "weights_bytes_per_device", "kv_cache_gib": "kv_cache_bytes_per_device"}


@dataclass(frozen=True)
class Check:
    row: str
    kind: str
    role: str
    metric: str
    measured: float
    planned: float
    tolerance: float

    @property
    def ratio(self) -> float:
        return self.planned / self.measured

    @property
    def ok(self) -> bool:
        return abs(self.ratio - 1) <= self.tolerance


@lru_cache(maxsize=1)
def calibration() -> dict:
    return yaml.safe_load(CALIBRATION_FILE.read_text(encoding="utf-8"))


def _model(key: str) -> ModelFacts:
    a = calibration()["models"][key]
    return ModelFacts(
        name=key, api_name=key, license=None, source={"file": a["file"]} if "file" in a else {},
        format=a.get("format", "safetensors"), family=a["family"],
        parameters=a["parameters"], layers=a["layers"], hidden_size=a["hidden_size"],
        attention_heads=a["attention_heads"], kv_heads=a["kv_heads"], head_dim=a["head_dim"],
        intermediate_size=a["intermediate_size"], vocab_size=a["vocab_size"], max_positions=a["max_positions"],
        context_length=a["max_positions"], objective="throughput", precisions=("bf16",), runtime_preference="auto",
        experts=a.get("experts"), active_experts=a.get("active_experts"),
        tie_word_embeddings=bool(a.get("tie_word_embeddings")),
    )


def _candidate(row: dict) -> Candidate:
    key = row["accelerator"]
    extra = calibration().get("accelerators") or {}
    acc = accelerator_from_row(key, extra[key]) if key in extra else catalog()[key]
    if row.get("native_bf16"):  # measured on a CPU with AVX512-BF16/AMX: what detection would report there
        acc = with_native_bf16(acc, row.get("cpu_cores") or 1)
    count = row.get("tp", 1) * row.get("pp", 1)
    pool = Pool(name="calibration", accelerator=acc, count=count, nodes=1, memory_gib=row.get("host_memory_gib", 24),
                cpu_cores=row.get("cpu_cores"), cloud="onprem", resource_key=None)
    return Candidate(row.get("runtime", "vllm"), row["precision"], row.get("kv_cache_dtype", "auto"), row.get("tp", 1),
                     row.get("pp", 1), "throughput", pool)


def checks(row: dict) -> list[Check]:
    """The planner's figures for one row, beside the measured ones."""
    model, c = _model(row["model"]), _candidate(row)
    kind, measured = row["kind"], row["measured"]
    out = []
    if kind == "memory":
        s, eng = row["settings"], row.get("engine") or {}
        est = estimate(model, c, max_model_len=s["max_model_len"], max_num_seqs=s["max_num_seqs"],
                       memory_utilization=s["gpu_memory_utilization"], per_slot_kv=False,
                       max_num_batched_tokens=s["max_num_batched_tokens"],
                       sampler_in_profile=eng.get("sampler_in_profile", True),
                       cuda_graphs_in_budget=eng.get("cuda_graphs_in_budget", True),
                       device_gib=row.get("device_memory_gib"))
        for metric, field in MEMORY_METRICS.items():
            if metric in measured:
                out.append(Check(row["id"], kind, row["role"], metric, float(measured[metric]),
                                 getattr(est, field) / GiB, TOLERANCE[kind]))
    elif kind == "decode":
        est = estimate(model, c, max_model_len=row["context"], max_num_seqs=row["batch"], memory_utilization=0.9,
                       per_slot_kv=False)
        t = step_seconds(model, c, batch=row["batch"], context=row["context"],
                         weights_per_device=est.weights_bytes_per_device,
                         kv_bytes_per_token_per_device=est.kv_cache_bytes_per_token_per_device)
        out.append(Check(row["id"], kind, row["role"], "tokens_per_s_per_sequence",
                         float(measured["tokens_per_s_per_sequence"]), 1.0 / t, TOLERANCE[kind]))
    else:
        raise ValueError(f"calibration row {row['id']}: unknown kind {kind!r}")
    return out


def all_checks() -> list[Check]:
    return [ch for row in calibration()["rows"] for ch in checks(row)]


def planner_columns(found: list[Check]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for ch in found:
        out.setdefault(ch.row, {})[ch.metric] = round(ch.planned, 2)
    return out


def write_planner_columns(path: Path = CALIBRATION_FILE) -> None:
    """Write each row's current planner figures beside its measured ones (`planner:` under `measured:`)."""
    cols = planner_columns(all_checks())
    lines, out, row = path.read_text(encoding="utf-8").split("\n"), [], None
    for line in lines:
        if line.startswith("  - id: "):
            row = line.split(": ", 1)[1].strip()
        if line.startswith("    planner: ") and row in cols:
            continue  # replaced below, after `measured:`
        out.append(line)
        if line.startswith("    measured: ") and row in cols:
            figures = ", ".join(f"{k}: {v:g}" for k, v in cols[row].items())
            out.append(f"    planner: {{{figures}}}  # written by python -m packager.planner.calibration --write")
    path.write_text("\n".join(out), encoding="utf-8")
    calibration.cache_clear()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--write" in args:
        write_planner_columns()
    rows = all_checks()
    print(f"{'row':<26s}{'metric':<28s}{'measured':>10s}{'planner':>10s}{'ratio':>8s}  role")
    for ch in rows:
        mark = "" if ch.ok else f"  OFF by more than {ch.tolerance:.0%}"
        print(f"{ch.row:<26s}{ch.metric:<28s}{ch.measured:>10.2f}{ch.planned:>10.2f}{ch.ratio:>8.3f}  {ch.role}{mark}")
    return 0 if all(ch.ok for ch in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
