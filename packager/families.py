"""Runtime families and image names: which template, base image and Python deps an image needs,
and the name `packager build` tags it with.

A family is chosen from the selected profile (runtime + vendor). Everything that
differs between families is data here, so the templates stay logic-free and the
build driver never branches on the family. It sits low (errors only) because chart,
supply and image all name images by it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from packager.errors import UserError

TORCH_PIN = "torch==2.13.0"


@dataclass(frozen=True)
class Family:
    name: str
    template: str
    runtimes: tuple[str, ...]  # profile runtimes this image can run (launcher filter)
    python_version: str  # the image's Python, for `pip download --python-version`
    platforms: tuple[str, ...]
    extras: tuple[str, ...]  # pyproject extras installed into the image
    torch: str | None  # torch requirement; None: the base image brings its own
    pip_args: tuple[str, ...] = ()  # extra `pip download` args (e.g. a torch index)
    env: tuple[tuple[str, str], ...] = ()  # image ENV specific to the family
    groups: tuple[str, ...] = ()  # supplementary groups of the runtime user
    extra_deps: tuple[str, ...] = ()  # beyond pyproject: what the launcher needs in this family
    # Installed without their own dependencies: a requirement's name takes the project's line, a full
    # requirement adds a dependency they do need that nothing else brings.
    no_deps: tuple[str, ...] = ()


_MANYLINUX = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64")

FAMILIES: dict[str, Family] = {
    "cpu": Family(
        name="cpu", template="cpu.Dockerfile.j2", runtimes=("cpu",), python_version="3.11",
        platforms=_MANYLINUX, extras=("runtime",), torch=TORCH_PIN,
        env=(("PACKAGER_DEVICE", "cpu"),),
        # xgrammar requires triton on Linux x86-64 (about 1 GB) and never uses it on a CPU: without
        # its dependencies it needs only apache-tvm-ffi beside what the runtime extra brings.
        no_deps=("xgrammar", "apache-tvm-ffi>=0.1.11,<0.2"),
    ),
    # torch's CUDA wheels carry the CUDA user-space libraries; the driver comes
    # from the host through the NVIDIA container toolkit, so a plain Debian base works.
    "triton-cuda": Family(
        name="triton-cuda", template="triton-cuda.Dockerfile.j2", runtimes=("triton", "cpu"),
        python_version="3.11", platforms=_MANYLINUX, extras=("runtime", "triton"), torch=TORCH_PIN,
        env=(("NVIDIA_VISIBLE_DEVICES", "all"), ("NVIDIA_DRIVER_CAPABILITIES", "compute,utility"),
             ("PACKAGER_DEVICE", "cuda")),
    ),
    # ROCm torch wheels live on PyTorch's own index; they also carry the ROCm libraries.
    "triton-rocm": Family(
        name="triton-rocm", template="triton-rocm.Dockerfile.j2", runtimes=("triton", "cpu"),
        python_version="3.11", platforms=_MANYLINUX, extras=("runtime", "triton"), torch=TORCH_PIN,
        pip_args=("--extra-index-url", "https://download.pytorch.org/whl/rocm6.4"),
        env=(("PACKAGER_DEVICE", "cuda"), ("HIP_VISIBLE_DEVICES", "all")),
        groups=("video", "render"),
    ),
    # The vLLM image brings Python, torch and vLLM; we add only the launcher's
    # own light deps, in a separate venv so vLLM's environment stays untouched.
    "vllm": Family(
        name="vllm", template="vllm.Dockerfile.j2", runtimes=("vllm",), python_version="3.12",
        platforms=_MANYLINUX, extras=(), torch=None, extra_deps=("nvidia-ml-py",),  # detect reads NVML
    ),
}


def family_for(profile: dict) -> Family:
    """The family that serves `profile` (a plan.json PROFILE)."""
    runtime, vendor = profile.get("runtime"), profile.get("vendor")
    if runtime == "vllm":
        return FAMILIES["vllm"]
    if runtime == "cpu":
        return FAMILIES["cpu"]
    if runtime == "triton":
        if vendor == "amd":
            return FAMILIES["triton-rocm"]
        return FAMILIES["triton-cuda"]
    raise UserError(f"profile {profile.get('name')!r} has runtime {runtime!r}; known: vllm, triton, cpu",
                    field="selected.runtime")


def slug(text: str) -> str:
    """A model name as an image repository component."""
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._") or "model"


def image_ref(plan: dict) -> str:
    """The image a plan is built as: `packager/<model>:<version>-<family>`. One name for build,
    chart and deploy, so a chart rendered before (or without) a build points at what build tags."""
    from packager import __version__

    version = str(plan.get("packager_version") or __version__)
    selected = plan.get("selected")
    suffix = f"-{family_for(selected).name}" if selected else ""
    return f"packager/{plan['model']['name']}:{version}{suffix}"
