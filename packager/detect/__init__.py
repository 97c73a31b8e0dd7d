"""Describe the machine we run on: CPU cores and memory, plus GPUs when NVML or ROCm report any."""
from __future__ import annotations

import os

from packager.catalog import Accelerator, catalog
from packager.facts import DEFAULT_RESOURCE_KEYS, Hardware, Pool


def host_memory_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return 8.0


def host_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _nvidia_gpus() -> list[tuple[str, float, float | None]]:
    """(name, memory GiB, compute capability) per GPU, or [] when there is no driver."""
    try:
        import pynvml  # nvidia-ml-py; cheap, no CUDA runtime
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver, no device: this is the common CPU case
        return []
    try:
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            name = name.decode() if isinstance(name, bytes) else name
            mem = pynvml.nvmlDeviceGetMemoryInfo(h).total / 2**30
            try:
                major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
                cc = major + minor / 10
            except Exception:
                cc = None
            out.append((name, mem, cc))
        return out
    finally:
        pynvml.nvmlShutdown()


KFD_NODES = "/sys/class/kfd/kfd/topology/nodes"
GFX_TO_CATALOG = {"gfx942": "amd-mi300x", "gfx90a": "amd-mi250x"}


def _amd_gpus(root: str = KFD_NODES) -> list[tuple[str, float]]:
    """(gfx target, memory GiB) per AMD GPU, read from the ROCm kernel driver's topology (no tools needed)."""
    out = []
    try:
        nodes = sorted(os.listdir(root))
    except OSError:
        return out
    for node in nodes:
        try:
            with open(os.path.join(root, node, "properties")) as f:
                props = dict(line.split(None, 1) for line in f if " " in line)
        except OSError:
            continue
        version = int(props.get("gfx_target_version", "0").strip() or 0)
        if not version:
            continue  # a CPU node
        major, minor, step = version // 10000, (version // 100) % 100, version % 100
        gfx = f"gfx{major}{minor:x}{step:x}" if minor or step else f"gfx{major}"
        mem = 0.0
        banks = os.path.join(root, node, "mem_banks")
        for bank in (os.listdir(banks) if os.path.isdir(banks) else ()):
            try:
                with open(os.path.join(banks, bank, "properties")) as f:
                    for line in f:
                        if line.startswith("size_in_bytes"):
                            mem += int(line.split()[1]) / 2**30
            except OSError:
                pass
        out.append((gfx, round(mem, 1)))
    return out


def match_catalog(name: str, memory_gib: float) -> Accelerator | None:
    """Best catalog row for a reported device name (e.g. 'NVIDIA H100 80GB HBM3')."""
    n = name.lower().replace(" ", "")
    rules = [
        ("h200", "nvidia-h200"), ("h100pcie", "nvidia-h100-pcie-80gb"), ("h100", "nvidia-h100-sxm-80gb"),
        ("a100", "nvidia-a100-sxm-80gb" if memory_gib > 50 else "nvidia-a100-40gb"), ("l40s", "nvidia-l40s"),
        ("l4", "nvidia-l4"), ("a10g", "nvidia-a10g"), ("t4", "nvidia-t4"), ("v100", "nvidia-v100-32gb"),
        ("4090", "nvidia-rtx-4090"), ("mi300x", "amd-mi300x"), ("mi250x", "amd-mi250x"),
    ]
    for needle, key in rules:
        if needle in n:
            return catalog()[key]
    return None


def detect_hardware() -> Hardware:
    gpus = _nvidia_gpus()
    mem, cores = host_memory_gib(), host_cores()
    if gpus:
        name, gmem, cc = gpus[0]
        acc = match_catalog(name, gmem)
        if acc is None:  # unknown card: describe it from what NVML says, bandwidth unknown -> conservative
            acc = Accelerator(key=name, vendor="nvidia", name=name, memory_gib=round(gmem, 1), bandwidth_gbs=500,
                              fp16_tflops=50, compute_capability=cc, runtimes=("vllm", "triton"), source="NVML")
        pool = Pool(name="local", accelerator=acc, count=len(gpus), nodes=1, memory_gib=mem, cpu_cores=cores,
                    cloud="onprem", resource_key=DEFAULT_RESOURCE_KEYS["nvidia"])
        return Hardware(name="this-machine", pools=(pool,))
    amd = _amd_gpus()
    if amd:
        gfx, gmem = amd[0]
        key = GFX_TO_CATALOG.get(gfx)
        acc = catalog()[key] if key else Accelerator(
            key=gfx, vendor="amd", name=f"AMD {gfx}", memory_gib=gmem or None, bandwidth_gbs=1000, bf16_tflops=100,
            fp16_tflops=100, gfx_target=gfx, runtimes=("vllm", "triton"), source="ROCm KFD topology")
        pool = Pool(name="local", accelerator=acc, count=len(amd), nodes=1, memory_gib=mem, cpu_cores=cores,
                    cloud="onprem", resource_key=DEFAULT_RESOURCE_KEYS["amd"])
        return Hardware(name="this-machine", pools=(pool,))
    pool = Pool(name="local", accelerator=catalog()["cpu"], count=1, nodes=1, memory_gib=mem, cpu_cores=cores,
                cloud="onprem", resource_key=None)
    return Hardware(name="this-machine", pools=(pool,))
