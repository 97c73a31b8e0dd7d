"""One line a person reads about the hardware a plan is for:
    GPU: 8 x NVIDIA H100 80GB HBM3 (nvidia-h100-sxm-80gb, 79.6 GiB measured, cc 9.0); CPU: AMD EPYC 9B14, 2 cores, 23.4 GiB RAM
"""
from __future__ import annotations

from packager.catalog import catalog
from packager.facts import Hardware

DETECTED = "this-machine"       # Hardware.name of what detect_hardware measured
STAND_IN = "PACKAGER_HARDWARE"  # Hardware.name prefix when that variable stood in for detection


def _gpu(pool: dict, measured: bool) -> str:
    acc = pool.get("accelerator") or {}
    key, mem = acc.get("key") or "?", acc.get("memory_gib")
    row = catalog().get(key)
    parts = [key if row else "unknown card, not in packager's table: planned from its measured specs"]
    if mem is not None:
        parts.append(f"{mem:.1f} GiB {'measured' if measured else 'per the catalog'}")
        if measured and row and row.memory_gib and abs(row.memory_gib - mem) > 0.01 * row.memory_gib:
            parts.append(f"the catalog says {row.memory_gib:.1f} GiB")
    if acc.get("compute_capability") is not None:
        parts.append(f"cc {acc['compute_capability']:.1f}")
    if acc.get("gfx_target"):
        parts.append(str(acc["gfx_target"]))
    nodes = pool.get("nodes") or 1
    count = pool.get("count_per_node") or pool.get("count") or 1
    where = f" per node x {nodes} nodes" if nodes > 1 else ""
    return f"GPU: {count} x {acc.get('name') or key}{where} ({', '.join(parts)})"


def _host(pool: dict, cpu: str) -> str:
    cores, mem = pool.get("cpu_cores"), pool.get("memory_gib")
    return (f"CPU: {cpu}" + (f", {cores} cores" if cores else "")
            + (f", {mem:.1f} GiB RAM" if isinstance(mem, (int, float)) else ""))


def describe_hardware(hardware: Hardware | dict, cpu_model: str | None = None) -> str:
    """Short human description of detect_hardware()'s result (or its to_dict(), as a plan records it)."""
    hw = hardware.to_dict() if isinstance(hardware, Hardware) else hardware
    name = str(hw.get("name", ""))
    measured = name == DETECTED
    if measured and cpu_model is None:
        from packager.detect.cpu import cpu_model as read_cpu_model
        cpu_model = read_cpu_model()
    lines = []
    for pool in hw.get("pools", []):
        acc = pool.get("accelerator") or {}
        cpu = cpu_model or (acc.get("name") if acc.get("vendor") == "cpu" else None) or "host"
        if acc.get("vendor") == "cpu":
            lines.append(_host(pool, cpu))
        else:  # a stand-in's host figures are the manifest's defaults, not this machine's: leave them out
            lines.append(f"{_gpu(pool, measured)}; {_host(pool, cpu)}" if measured else _gpu(pool, measured))
    text = "; ".join(lines) or "no hardware"
    if name.startswith(STAND_IN):
        text += f" [{name}: a stand-in, not detected]"
    return text
