"""What a build hands back besides the image: the `docker run` line, the chart beside it, the push, and the
closing screen."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from packager.image.context import MODEL_DIR

if TYPE_CHECKING:  # pipeline imports this module
    from packager.image.pipeline import BuildRequest, BuildResult


# What a container needs to reach the profile's devices (docker's flags; the chart asks Kubernetes
# for the same through the device plugins' resources). NVIDIA: the container toolkit's --gpus;
# AMD: ROCm's documented device nodes and group. Shared memory: vLLM's workers and NCCL/RCCL use
# /dev/shm, which docker caps at 64 MB (NIM's documented run line sets 16 GB too).
_DEVICE_FLAGS = {"nvidia": "--gpus all --shm-size 16g",
                 "amd": "--device /dev/kfd --device /dev/dri --group-add video --shm-size 16g"}


def run_command(tag: str, mode: str, w, port: int, plan: dict | None = None) -> str:
    """The `docker run` line printed after a build: one that runs as pasted on a host of the plan's kind."""
    plan = plan or {}
    vendor = (plan.get("selected") or {}).get("vendor")
    parts = ["docker run --rm --network host", f"-e PACKAGER_HOST=127.0.0.1 -e PACKAGER_PORT={port}"]
    if vendor in _DEVICE_FLAGS:
        parts.append(_DEVICE_FLAGS[vendor])
    if mode == "volume":
        if ((plan.get("model") or {}).get("source") or {}).get("kind") == "huggingface":
            parts.append("-e HF_TOKEN")  # a gated repo: the host's token, passed by name (its value never printed)
        host = str(w.root.parent if (w and w.is_file) else (w.root if w else "/path/to/weights"))
        parts.append(f"-v {host}:{MODEL_DIR}:ro")
    parts.append(tag)
    return " ".join(parts)


def write_chart_beside(plan: dict, out: Path, tag: str, log, sets: tuple[str, ...] = ()) -> Path | None:
    try:
        from packager.chart import write_chart
    except ImportError:
        return None
    return Path(write_chart(plan, out / "chart", image=tag, sets=sets))


def weights_chart_sets(req: BuildRequest, plan: dict, w, tag: str) -> tuple[str, ...]:
    """The chart beside the image expects its weights where the image does: volume mode downloads into
    the claim (a chart left at baked would look in an image that has none); --weights oci --push
    mounts the artifact the push puts in the registry, by digest."""
    if req.weights == "volume":
        return ("weights.mode=volume",)
    if req.weights != "oci" or not req.push:
        return ()
    from packager.supply.ociweights import chart_sets, weights_ref

    return tuple(chart_sets(weights_ref(plan, w, tag, req.push)))


def push(tag: str, registry: str, chart: Path | None, log) -> str:
    """Push the image; with a chart beside it, publish that too, pinned to the pushed digest."""
    from packager.publish import parse_registry, publish, push_image

    if chart is None:
        ref = push_image(tag, parse_registry(registry).host)
        log(f"pushed: {ref}")
        return str(ref)
    charts = parse_registry(registry)
    charts_ref = charts.oci if charts.path else f"{charts.oci}/charts"
    result = publish(chart, charts_ref, image=tag, image_registry=charts.host)
    log(f"pushed: {result.image_ref}")
    log(f"chart:  {result.chart_ref}@{result.chart_digest}")
    return f"{result.image_ref} (chart {result.chart_ref})"


def report(result: BuildResult) -> str:
    """The closing screen: image id, size by layer, and a ready run line."""
    lines = [f"plan:    {result.plan_path}", f"context: {result.context}"]
    if result.chart:
        lines.append(f"chart:   {result.chart}")
    if result.image:
        img = result.image
        lines += [f"image:   {img.tag}", f"id:      {img.image_id}",
                  f"size:    {img.size_bytes / 2**20:.0f} MiB, built in {img.seconds:.1f} s "
                  f"({img.cached_steps} of {len(img.steps)} steps cached"
                  + (f": {', '.join(n for n, c in img.steps if c)}" if img.cached_steps else "") + ")", "layers:"]
        for layer in img.layers:
            if layer.size_bytes or layer.step in ("deps", "weights", "code", "plan", "base"):
                lines.append(f"  {layer.step:<14} {layer.size_bytes / 2**20:>9.1f} MiB")
    if result.pushed:
        lines.append(f"pushed:  {result.pushed}")
    lines += ["run:", f"  {result.run_command}"]
    return "\n".join(lines)
