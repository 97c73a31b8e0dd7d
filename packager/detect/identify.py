"""Which catalog row a measured GPU is, by PCI device id (and gfx target on AMD) from
packager/catalog/gpu_ids.yaml; a card not in that table is an explicit unknown accelerator
described by what its driver measured. Memory always comes from the driver."""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import yaml

from packager.catalog import Accelerator, catalog
from packager.detect.measured import MeasuredGpu

IDS_FILE = Path(__file__).resolve().parent.parent / "catalog" / "gpu_ids.yaml"
AGREE = 0.01  # measured memory within 1% of the catalog's is the same card (driver rounding, ECC)


@dataclass(frozen=True)
class IdRow:
    vendor: str
    device: int
    key: str
    name: str
    source: str
    subsystems: tuple[int, ...] = ()
    gfx: str | None = None
    simd_count: int | None = None

    def matches(self, m: MeasuredGpu) -> bool:
        return (m.pci_device == self.device
                and (not self.subsystems or m.pci_subsystem in self.subsystems)
                and (self.gfx is None or m.gfx_target == self.gfx)
                and (self.simd_count is None or m.simd_count == self.simd_count))


@dataclass(frozen=True)
class IdTable:
    rows: tuple[IdRow, ...]
    vendor_ids: dict
    sources: dict
    unknown: dict


@lru_cache(maxsize=1)
def id_table() -> IdTable:
    """The table is ours: a row naming a missing catalog key or source is a bug, caught here and by tests."""
    raw = yaml.safe_load(IDS_FILE.read_text(encoding="utf-8"))
    cat, sources = catalog(), raw["sources"]
    rows = []
    for vendor in ("nvidia", "amd"):
        for r in raw[vendor]:
            refs = [s.strip() for s in str(r["source"]).split(";")]
            missing = [s for s in refs if s not in sources]
            if r["key"] not in cat or missing:
                raise ValueError(f"{IDS_FILE.name}: row {r} names an unknown catalog key or source {missing}")
            rows.append(IdRow(vendor=vendor, device=int(r["device"]), key=r["key"], name=str(r["name"]),
                              source="; ".join(sources[s] for s in refs),
                              subsystems=tuple(int(s) for s in r.get("subsystems", ())),
                              gfx=r.get("gfx"), simd_count=r.get("simd_count")))
    return IdTable(rows=tuple(rows), vendor_ids=dict(raw["vendors"]), sources=dict(sources),
                   unknown=dict(raw["unknown"]))


def lookup(m: MeasuredGpu) -> IdRow | None:
    table = id_table()
    if m.pci_vendor != table.vendor_ids.get(m.vendor):
        return None
    return next((r for r in table.rows if r.vendor == m.vendor and r.matches(m)), None)


def identify(m: MeasuredGpu) -> Accelerator:
    row = lookup(m)
    return known(m, row) if row else unknown(m)


def _spec(m: MeasuredGpu) -> str:
    return f"compute capability {m.compute_capability}" if m.vendor == "nvidia" else f"{m.gfx_target}"


def known(m: MeasuredGpu, row: IdRow) -> Accelerator:
    """The catalog row for the identified card, with the memory its driver reports."""
    acc = catalog()[row.key]
    mem, listed = m.memory_gib, acc.memory_gib or 0.0
    agrees = abs(mem - listed) <= AGREE * max(listed, 1.0)
    if agrees:
        vllm_mem, note = acc.vllm_memory_gib, f"memory {mem} GiB measured by {m.driver} (the catalog agrees)"
    else:
        # Same card, other memory (a variant, a partition, a driver reserve): measured wins, and the
        # CUDA-visible total scales with it.
        ratio = (acc.vllm_memory_gib / listed) if acc.vllm_memory_gib and listed else None
        vllm_mem = round(mem * ratio, 2) if ratio else None
        note = f"memory {mem} GiB measured by {m.driver}; the catalog says {listed:g} GiB: measured wins"
    detected = f"detected PCI {m.pci_id} ({row.name}) as {row.key} [{row.source}]; {note}"
    return replace(acc, name=m.name or row.name, memory_gib=mem, vllm_memory_gib=vllm_mem,
                   source=f"{detected}; catalog row: {acc.source}")


def _floor(values) -> float | None:
    present = [v for v in values if v]
    return min(present) if present else None


def unknown(m: MeasuredGpu) -> Accelerator:
    """A card the table does not know: its measured specs, and the weakest speed figures among the
    catalog's rows of its vendor (conservative: plans may be slower than the card, never optimistic)."""
    table, mem = id_table(), m.memory_gib
    rows = [a for a in catalog().values() if a.vendor == m.vendor]
    has_bf16 = m.vendor == "amd" or (m.compute_capability or 0) >= 8.0
    vllm_mem = round(mem * float(table.unknown["nvidia_cuda_memory_ratio"]), 2) if m.vendor == "nvidia" else mem
    device = f"{m.pci_device:04x}" if m.pci_device is not None else "unknown"
    key = f"unknown-{m.vendor}-{m.gfx_target + '-' if m.gfx_target else ''}{device}"
    name = m.name or f"AMD {m.gfx_target} GPU (PCI {m.pci_id})"
    inter = table.unknown["interconnect"]
    return Accelerator(
        key=key, vendor=m.vendor, name=name, memory_gib=mem,
        bandwidth_gbs=_floor(a.bandwidth_gbs for a in rows) or 100.0,
        bf16_tflops=_floor(a.bf16_tflops for a in rows) if has_bf16 else None,
        fp16_tflops=_floor(a.fp16_tflops for a in rows), fp8_tflops=None,
        compute_capability=m.compute_capability, gfx_target=m.gfx_target,
        interconnect_kind=inter["kind"], interconnect_gbs=float(inter["gbs"]),
        runtimes=tuple(table.unknown["runtimes"]), vllm_memory_gib=vllm_mem,
        source=(f"unknown card: PCI {m.pci_id} ({name}) is not in packager/catalog/gpu_ids.yaml; memory {mem} GiB "
                f"and {_spec(m)} as {m.driver} measures them; bandwidth and TFLOPS are the lowest of the "
                f"catalog's {m.vendor} rows (conservative)"),
    )
