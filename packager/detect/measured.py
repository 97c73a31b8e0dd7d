"""One GPU as its driver reports it: the only facts detection trusts about the card in front of it."""
from __future__ import annotations

from dataclasses import dataclass

GiB = 2**30


@dataclass(frozen=True)
class MeasuredGpu:
    vendor: str                 # nvidia | amd
    driver: str                 # NVML | KFD: who measured it
    name: str                   # as the driver reports it; KFD reports none ("")
    memory_bytes: int
    pci_vendor: int | None
    pci_device: int | None
    pci_subsystem: int | None = None     # NVML's pciSubSystemId: subsystem device << 16 | subsystem vendor
    compute_capability: float | None = None
    gfx_target: str | None = None
    simd_count: int | None = None
    bus_id: str = ""

    @property
    def memory_gib(self) -> float:
        return round(self.memory_bytes / GiB, 1)

    @property
    def pci_id(self) -> str:
        """'10de:2330' (vendor:device), as lspci -n prints it."""
        if self.pci_device is None:
            return "unknown PCI id"
        return f"{self.pci_vendor or 0:04x}:{self.pci_device:04x}"

    @property
    def kind(self) -> tuple:
        """What makes two devices the same kind (everything but where they sit on the bus)."""
        return (self.vendor, self.name, self.memory_bytes, self.pci_vendor, self.pci_device, self.pci_subsystem,
                self.compute_capability, self.gfx_target, self.simd_count)
