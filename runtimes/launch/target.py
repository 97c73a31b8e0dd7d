"""The hardware the launcher plans for: detected, or PACKAGER_HARDWARE (a rehearsal of a GPU
profile on a machine without that GPU); PACKAGER_DEVICE narrows it to the image's device family;
a LeaderWorkerSet group spans LWS_GROUP_SIZE such nodes."""
from __future__ import annotations

from dataclasses import replace

from packager.errors import UserError
from runtimes.launch.settings import LaunchError, Settings

# The vendors each PACKAGER_DEVICE can drive (ROCm torch calls its device "cuda" too).
DEVICE_VENDORS = {"cpu": ("cpu",), "cuda": ("nvidia", "amd"), "rocm": ("amd",)}


def choose(settings: Settings):
    """(Hardware, source): source is "PACKAGER_HARDWARE" or "detected"."""
    from packager.detect import detect_hardware
    from packager.manifests.machine import stand_in

    if settings.hardware:
        try:
            return stand_in(settings.hardware), "PACKAGER_HARDWARE"
        except UserError as exc:
            raise LaunchError(str(exc)) from None
    hw = force_device(detect_hardware(), settings.device)
    if settings.role in ("leader", "worker") and settings.group_size > 1:
        # One pod sees one node; the group the profile spans is LWS_GROUP_SIZE of them.
        hw = replace(hw, pools=tuple(replace(p, nodes=settings.group_size) for p in hw.pools))
    return hw, "detected"


def force_device(hw, device: str | None):
    """Keep the pools the image's engine can drive: a CPU image on a GPU node serves on the CPU."""
    if not device:
        return hw
    vendors = DEVICE_VENDORS[device]
    kept = tuple(p for p in hw.pools if p.accelerator.vendor in vendors)
    if kept:
        return replace(hw, pools=kept)
    if device == "cpu":
        from packager.detect import cpu_pool

        return replace(hw, pools=(cpu_pool(),))
    return hw  # no GPU of that family here: the planner's rejections say so


def describe(hardware: dict) -> str:
    """One line for a human, in the detection module's words (measured memory, catalog key, stand-in)."""
    from packager.detect import describe_hardware

    return describe_hardware(hardware)
