"""The host: CPU model, cores this process may use, and memory, read from /proc (no tools needed)."""
from __future__ import annotations

import os
import platform

from runtimes.cpu_isa import NATIVE_BF16_FLAGS, native_bf16  # noqa: F401  (one rule, shared with the runtime)


def host_memory_gib(meminfo: str = "/proc/meminfo") -> float:
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return 8.0


def host_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # a container's CPU set, not the host's count
    except AttributeError:
        return os.cpu_count() or 1


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's marketing name ('AMD EPYC 9B14'); arm64 kernels often print none, then the architecture."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return " ".join(value.split())
    except OSError:
        pass
    return f"{platform.machine() or 'unknown'} CPU"
