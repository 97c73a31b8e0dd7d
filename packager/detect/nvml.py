"""NVIDIA GPUs through NVML: the few pynvml calls detection makes, behind a protocol so a recorded
answer (tests/fixtures/hardware/nvml/*.json) replays through the same reader as the real driver.

The real adapter is the `pynvml` module itself (nvidia-ml-py): its functions are the protocol.
`record(pynvml)` writes what a machine's driver answers in the format `RecordedNvml` replays:
    python3 -m packager.detect.record > my-card.json
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

from packager.detect.measured import MeasuredGpu


class Nvml(Protocol):
    """The subset of pynvml that detection calls, with pynvml's names and return shapes."""

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...
    def nvmlDeviceGetName(self, handle: Any) -> str | bytes: ...
    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any: ...  # .total in bytes
    def nvmlDeviceGetCudaComputeCapability(self, handle: Any) -> tuple[int, int]: ...
    def nvmlDeviceGetPciInfo(self, handle: Any) -> Any: ...  # .pciDeviceId, .pciSubSystemId, .busId


def system_nvml() -> Nvml | None:
    """The real driver's bindings, or None where nvidia-ml-py is not installed (cheap: no CUDA runtime)."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml  # type: ignore[return-value]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_nvidia(nvml: Nvml | None) -> list[MeasuredGpu]:
    """One MeasuredGpu per device NVML lists; [] when there is no driver or no device (the CPU case)."""
    if nvml is None:
        return []
    try:
        nvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound / DriverNotLoaded: no NVIDIA GPU here
        return []
    try:
        return [_device(nvml, nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(nvml.nvmlDeviceGetCount())]
    finally:
        nvml.nvmlShutdown()


def _device(nvml: Nvml, handle: Any) -> MeasuredGpu:
    try:
        major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
        cc: float | None = round(major + minor / 10, 1)
    except Exception:
        cc = None
    try:
        pci = nvml.nvmlDeviceGetPciInfo(handle)
        combined, subsystem, bus = int(pci.pciDeviceId), int(pci.pciSubSystemId), _text(pci.busId)
        vendor, device = combined & 0xFFFF, combined >> 16  # NVML packs device id << 16 | vendor id
    except Exception:
        vendor = device = subsystem = None
        bus = ""
    return MeasuredGpu(vendor="nvidia", driver="NVML", name=_text(nvml.nvmlDeviceGetName(handle)),
                       memory_bytes=int(nvml.nvmlDeviceGetMemoryInfo(handle).total), pci_vendor=vendor,
                       pci_device=device, pci_subsystem=subsystem, compute_capability=cc, bus_id=bus)


class NvmlReplayError(Exception):
    """A recorded NVML failure (e.g. NVML_ERROR_DRIVER_NOT_LOADED), raised where pynvml raises NVMLError."""


class RecordedNvml:
    """A recorded NVML answer, replayed with pynvml's call names and return shapes."""

    def __init__(self, answer: dict) -> None:
        self.answer = answer
        self.devices: list[dict] = list(answer.get("devices", []))

    @classmethod
    def from_file(cls, path: str | Path) -> "RecordedNvml":
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    def nvmlInit(self) -> None:
        if self.answer.get("init_error"):
            raise NvmlReplayError(self.answer["init_error"])

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict:
        return self.devices[index]

    def nvmlDeviceGetName(self, handle: dict) -> str:
        return handle["name"]

    def nvmlDeviceGetMemoryInfo(self, handle: dict) -> SimpleNamespace:
        return SimpleNamespace(total=int(handle["memory_total"]))

    def nvmlDeviceGetCudaComputeCapability(self, handle: dict) -> tuple[int, int]:
        if "cuda_compute_capability" not in handle:
            raise NvmlReplayError("NVML_ERROR_NOT_SUPPORTED")
        major, minor = handle["cuda_compute_capability"]
        return int(major), int(minor)

    def nvmlDeviceGetPciInfo(self, handle: dict) -> SimpleNamespace:
        return SimpleNamespace(pciDeviceId=int(handle["pciDeviceId"], 16),
                               pciSubSystemId=int(handle["pciSubSystemId"], 16), busId=handle.get("busId", ""))


def record(nvml: Nvml) -> dict:
    """What this machine's NVML answers, in RecordedNvml's format (a fixture for a card you cannot borrow)."""
    nvml.nvmlInit()
    try:
        devices = []
        for i in range(nvml.nvmlDeviceGetCount()):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            pci = nvml.nvmlDeviceGetPciInfo(h)
            dev = {"name": _text(nvml.nvmlDeviceGetName(h)), "pciDeviceId": f"0x{int(pci.pciDeviceId):08X}",
                   "pciSubSystemId": f"0x{int(pci.pciSubSystemId):08X}", "busId": _text(pci.busId),
                   "memory_total": int(nvml.nvmlDeviceGetMemoryInfo(h).total)}
            try:
                dev["cuda_compute_capability"] = list(nvml.nvmlDeviceGetCudaComputeCapability(h))
            except Exception:
                pass
            devices.append(dev)
        return {"source": "recorded by packager.detect.nvml.record", "devices": devices}
    finally:
        nvml.nvmlShutdown()

