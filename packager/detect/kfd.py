"""AMD GPUs from the ROCm kernel driver's topology (/sys/class/kfd): no ROCm tools needed.

Each node directory holds `properties` ("name value" lines: gfx_target_version, vendor_id,
device_id, simd_count, ...) and mem_banks/*/properties (heap_type, size_in_bytes). CPU nodes
report gfx_target_version 0.
"""
from __future__ import annotations

from pathlib import Path

from packager.detect.measured import MeasuredGpu

KFD_NODES = "/sys/class/kfd/kfd/topology/nodes"
AMD_PCI_VENDOR = 0x1002
DEVICE_HEAPS = (1, 2)  # HSA_HEAPTYPE_FRAME_BUFFER_PUBLIC / _PRIVATE: the card's own memory; 0 is system memory


def gfx_target(version: int) -> str:
    """KFD's packed gfx_target_version (major*10000 + minor*100 + stepping) as LLVM names it: minor and
    stepping are one hex digit each, so 90010 is gfx90a, 90402 gfx942 and 110000 gfx1100 (not gfx11)."""
    major, minor, step = version // 10000, (version // 100) % 100, version % 100
    return f"gfx{major}{minor:x}{step:x}"


def _properties(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1], 0)
            except ValueError:
                continue
    return out


def _device_memory(node: Path) -> int:
    total = 0
    for bank in sorted((node / "mem_banks").glob("*/properties")):
        props = _properties(bank)
        if props.get("heap_type", 1) in DEVICE_HEAPS:
            total += props.get("size_in_bytes", 0)
    return total


def _node_order(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (1 << 30, path.name)


def read_kfd(root: str | Path = KFD_NODES) -> list[MeasuredGpu]:
    """One MeasuredGpu per GPU node, in node order; [] without the driver."""
    base = Path(root)
    try:
        nodes = sorted((p for p in base.iterdir() if p.is_dir()), key=_node_order)
    except OSError:
        return []
    out = []
    for node in nodes:
        props = _properties(node / "properties")
        version = props.get("gfx_target_version", 0)
        if not version:
            continue  # a CPU node
        out.append(MeasuredGpu(
            vendor="amd", driver="KFD", name="", memory_bytes=_device_memory(node),
            pci_vendor=props.get("vendor_id", AMD_PCI_VENDOR), pci_device=props.get("device_id"),
            gfx_target=gfx_target(version), simd_count=props.get("simd_count"),
            bus_id=f"location {props['location_id']:#x}" if "location_id" in props else "",
        ))
    return out
