"""Describe the machine we run on: CPU cores and memory, plus GPUs when NVML or ROCm's KFD report any.

GPUs are identified by PCI device id (and gfx target on AMD) from packager/catalog/gpu_ids.yaml,
never by name; their memory is what the driver measures. Detection only measures: the
PACKAGER_HARDWARE stand-in is applied where hardware is loaded (packager.manifests.machine).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from packager.catalog import Accelerator, catalog
from packager.detect.cpu import NATIVE_BF16_FLAGS, cpu_model, host_cores, host_memory_gib, native_bf16
from packager.detect.describe import DETECTED, describe_hardware
from packager.detect.identify import identify
from packager.detect.kfd import KFD_NODES, read_kfd
from packager.detect.measured import MeasuredGpu
from packager.detect.nvml import Nvml, RecordedNvml, read_nvidia, system_nvml
from packager.facts import DEFAULT_RESOURCE_KEYS, Hardware, Pool

__all__ = ["Sources", "detect_hardware", "describe_hardware", "measure_gpus", "host_memory_gib", "host_cores",
           "cpu_model", "RecordedNvml", "MeasuredGpu"]

_SYSTEM = object()  # "ask the real driver": the default NVML source


@dataclass(frozen=True)
class Sources:
    """Where detection reads from; tests point these at recorded answers."""

    nvml: Nvml | None | object = _SYSTEM   # an Nvml (pynvml or RecordedNvml); None: no NVIDIA driver
    kfd_root: str | Path = KFD_NODES


def measure_gpus(sources: Sources) -> list[MeasuredGpu]:
    nvml = system_nvml() if sources.nvml is _SYSTEM else sources.nvml
    return read_nvidia(nvml) or read_kfd(sources.kfd_root)  # type: ignore[arg-type]


def with_native_bf16(acc: Accelerator, cores: int) -> Accelerator:
    """A CPU row for a host with native bf16 (AVX512-BF16 or AMX): bf16_tflops at twice the fp32 rate per core,
    since vdpbf16ps does two bf16 products per fp32 lane (bench/embeddings' profile here: oneDNN matmuls at
    ~211 GFLOP/s per core in bf16, ~108 in fp32). Detection and the calibration rows measured on such a host."""
    if not acc.fp32_tflops_per_core:
        return acc
    return replace(acc, bf16_tflops=round(2 * acc.fp32_tflops_per_core * cores, 3),
                   source=acc.source + "; bf16_tflops: native bf16 (" + "/".join(NATIVE_BF16_FLAGS)
                   + " in /proc/cpuinfo), twice the fp32 rate per core")


def cpu_pool(cpuinfo: str = "/proc/cpuinfo") -> Pool:
    """This host's CPU as a pool: what serves when no GPU does (detection, and a CPU image on a GPU node)."""
    acc, cores = catalog()["cpu"], host_cores()
    if native_bf16(cpuinfo):
        acc = with_native_bf16(acc, cores)
    return Pool(name="local", accelerator=acc, count=1, nodes=1, memory_gib=host_memory_gib(),
                cpu_cores=cores, cloud="onprem", resource_key=None)


def detect_hardware(sources: Sources | None = None) -> Hardware:
    src = sources or Sources()
    mem, cores = host_memory_gib(), host_cores()
    gpus = measure_gpus(src)
    if not gpus:
        return Hardware(name=DETECTED, pools=(cpu_pool(),))
    # Mixed cards: serve on the most numerous kind (a pool is one kind); the rest are not used.
    kind, count = Counter(g.kind for g in gpus).most_common(1)[0]
    first = next(g for g in gpus if g.kind == kind)
    acc = identify(first)
    if count < len(gpus):
        acc = replace(acc, source=f"{acc.source}; {len(gpus) - count} other GPU(s) of another kind are not used")
    pool = Pool(name="local", accelerator=acc, count=count, nodes=1, memory_gib=mem, cpu_cores=cores,
                cloud="onprem", resource_key=DEFAULT_RESOURCE_KEYS[acc.vendor])
    return Hardware(name=DETECTED, pools=(pool,))
