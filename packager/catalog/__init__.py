"""The accelerator catalog: device facts as data (accelerators.yaml), loaded once."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

CATALOG_FILE = Path(__file__).with_name("accelerators.yaml")
VENDORS = ("nvidia", "amd", "intel", "cpu")
RUNTIMES = ("vllm", "triton", "cpu")


@dataclass(frozen=True)
class Accelerator:
    key: str
    vendor: str
    name: str
    memory_gib: float | None
    bandwidth_gbs: float
    bf16_tflops: float | None = None
    fp16_tflops: float | None = None
    fp8_tflops: float | None = None
    fp32_tflops_per_core: float | None = None
    compute_capability: float | None = None
    gfx_target: str | None = None
    interconnect_kind: str = "none"
    interconnect_gbs: float = 0.0
    runtimes: tuple[str, ...] = ()
    source: str = ""
    vllm_memory_gib: float | None = None  # total as CUDA reports it: what vLLM's utilisation multiplies
    decode_efficiency: tuple[tuple[str, float], ...] = ()  # (runtime, achieved/peak bandwidth) measured
    calibration_source: str = ""

    @property
    def engine_memory_gib(self) -> float | None:
        """Memory an engine can address: the CUDA-reported total when known, else the catalog total."""
        return self.vllm_memory_gib or self.memory_gib

    def efficiency(self, runtime: str) -> float | None:
        return dict(self.decode_efficiency).get(runtime)

    @property
    def is_gpu(self) -> bool:
        return self.vendor != "cpu"

    def tflops(self, precision: str) -> float | None:
        """Dense tensor TFLOPS for a compute precision (quantized weights compute in 16-bit)."""
        if precision == "fp8":
            return self.fp8_tflops
        if precision == "fp16":
            return self.fp16_tflops
        return self.bf16_tflops or self.fp16_tflops

    def to_dict(self) -> dict:
        return {
            "key": self.key, "vendor": self.vendor, "name": self.name,
            "memory_gib": self.memory_gib, "bandwidth_gbs": self.bandwidth_gbs,
            "bf16_tflops": self.bf16_tflops, "fp16_tflops": self.fp16_tflops,
            "fp8_tflops": self.fp8_tflops, "compute_capability": self.compute_capability,
            "gfx_target": self.gfx_target,
            "interconnect": {"kind": self.interconnect_kind, "gbs": self.interconnect_gbs},
            "runtimes": list(self.runtimes), "source": self.source,
            "vllm_memory_gib": self.vllm_memory_gib, "decode_efficiency": dict(self.decode_efficiency),
        }


def accelerator_from_row(key: str, row: dict) -> Accelerator:
    inter = row.get("interconnect") or {}
    return Accelerator(
        key=key,
        vendor=row["vendor"],
        name=row.get("name", key),
        memory_gib=row.get("memory_gib"),
        bandwidth_gbs=float(row["bandwidth_gbs"]),
        bf16_tflops=row.get("bf16_tflops"),
        fp16_tflops=row.get("fp16_tflops"),
        fp8_tflops=row.get("fp8_tflops"),
        fp32_tflops_per_core=row.get("fp32_tflops_per_core"),
        compute_capability=row.get("compute_capability"),
        gfx_target=row.get("gfx_target"),
        interconnect_kind=inter.get("kind", "none"),
        interconnect_gbs=float(inter.get("gbs", 0) or 0),
        runtimes=tuple(row.get("runtimes", ())),
        source=row.get("source", ""),
        vllm_memory_gib=row.get("vllm_memory_gib"),
        decode_efficiency=tuple(sorted((str(k), float(v)) for k, v in (row.get("decode_efficiency") or {}).items())),
        calibration_source="; ".join(x for x in (row.get("vllm_memory_source"), row.get("decode_efficiency_source")) if x),
    )


@lru_cache(maxsize=1)
def catalog() -> dict[str, Accelerator]:
    """All catalog rows by key. The YAML is ours; a broken row is a bug, not user input."""
    raw = yaml.safe_load(CATALOG_FILE.read_text(encoding="utf-8"))
    return {key: accelerator_from_row(key, row) for key, row in raw["accelerators"].items()}


def keys() -> list[str]:
    return list(catalog())
