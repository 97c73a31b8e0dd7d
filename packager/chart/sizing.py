"""Numbers the chart needs that follow from the plan: startup budget, /dev/shm, CPU and memory.

Each rule is one small function so a test can pin it down.
"""
from __future__ import annotations

import math
from typing import Any

GIB = 1024**3

# KAITO's rule for how long a model server may take to load its weights.
STARTUP_BASE_S = 15 * 60
STARTUP_PER_GIB_S = 18
STARTUP_PERIOD_S = 10

# NCCL/RCCL keep per-peer buffers in /dev/shm; Docker's 64 MiB default breaks tp > 1.
SHM_GIB_PER_TP_RANK = 2
SHM_GIB_CPU = 1

# Host memory beyond the weights: the engine process, tokenizer, CUDA/ROCm context.
HOST_OVERHEAD_GIB = {"cpu": 2, "gpu": 8}
# Leave part of the node to the kubelet, system daemons and other pods.
NODE_SHARE = 0.9
CPU_SHARE = 0.75
DEFAULT_CPUS_PER_DEVICE = 4

_PRECISION_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "awq-int4": 0.5, "gptq-int4": 0.5}


def devices_per_pod(profile: dict[str, Any]) -> int:
    """Accelerators one pod holds: tp x pp spread over the profile's nodes."""
    if profile.get("devices_per_node"):
        return int(profile["devices_per_node"])
    total = int(profile.get("tensor_parallel_size", 1)) * int(profile.get("pipeline_parallel_size", 1))
    return max(1, total // max(1, int(profile.get("nodes", 1))))


def weights_bytes(model: dict[str, Any], profile: dict[str, Any]) -> int:
    """Total weight bytes the profile loads (all devices together)."""
    est = profile.get("estimates") or {}
    per_device = est.get("weights_bytes_per_device")
    if per_device:
        devices = int(profile.get("devices") or devices_per_pod(profile) * int(profile.get("nodes", 1)))
        return int(per_device) * devices
    params = int((model.get("architecture") or {}).get("parameters") or 0)
    return int(params * _PRECISION_BYTES.get(profile.get("precision", "bf16"), 2))


def startup_budget_s(weights: int) -> int:
    """15 min + 18 s per GiB of weights."""
    return STARTUP_BASE_S + math.ceil(STARTUP_PER_GIB_S * weights / GIB)


def startup_probe(budget_s: int, path: str = "/v1/health/ready") -> dict[str, Any]:
    return {
        "path": path,
        "periodSeconds": STARTUP_PERIOD_S,
        "timeoutSeconds": 5,
        "failureThreshold": math.ceil(budget_s / STARTUP_PERIOD_S),
    }


def shm_gib(profile: dict[str, Any]) -> int:
    if profile.get("vendor") == "cpu":
        return SHM_GIB_CPU
    return SHM_GIB_PER_TP_RANK * int(profile.get("tensor_parallel_size", 1))


def _node_fraction(pool: dict[str, Any], profile: dict[str, Any]) -> float:
    """The share of a node one pod's accelerators are: 2 of 8 GPUs -> 0.25."""
    if profile.get("vendor") == "cpu":
        return 1.0
    per_node = int(pool.get("count_per_node") or pool.get("count") or devices_per_pod(profile))
    return min(1.0, devices_per_pod(profile) / max(1, per_node))


def cpu_request(pool: dict[str, Any], profile: dict[str, Any]) -> int:
    cores = pool.get("cpu_cores")
    if not cores:
        return DEFAULT_CPUS_PER_DEVICE * (devices_per_pod(profile) if profile.get("vendor") != "cpu" else 1)
    return max(1, math.floor(CPU_SHARE * int(cores) * _node_fraction(pool, profile)))


def memory_gib(pool: dict[str, Any], profile: dict[str, Any], weights: int) -> int:
    """Host memory one pod needs, capped at its share of the node (shm counts: it is RAM)."""
    nodes = max(1, int(profile.get("nodes", 1)))
    pod_weights_gib = weights / nodes / GIB
    if profile.get("vendor") == "cpu":
        est = profile.get("estimates") or {}
        kv_gib = int(est.get("kv_cache_bytes_per_token") or 0) * int(est.get("kv_cache_tokens") or 0) / GIB
        need = pod_weights_gib + kv_gib + HOST_OVERHEAD_GIB["cpu"]
    else:
        # Weights pass through host memory while they are loaded onto the devices.
        need = pod_weights_gib + HOST_OVERHEAD_GIB["gpu"]
    need += shm_gib(profile)
    host = pool.get("memory_gib")
    if host:
        need = min(need, NODE_SHARE * float(host) * _node_fraction(pool, profile))
    return max(1, math.ceil(need))


def resources(pool: dict[str, Any], profile: dict[str, Any], weights: int) -> dict[str, Any]:
    """Requests and limits without the accelerator (the chart adds that from accelerator.*).

    No CPU limit: throttling a decode loop costs latency and buys nothing.
    Memory limit = request, so the scheduler's promise is what the pod gets.
    """
    mem = f"{memory_gib(pool, profile, weights)}Gi"
    return {
        "requests": {"cpu": str(cpu_request(pool, profile)), "memory": mem},
        "limits": {"memory": mem},
    }
