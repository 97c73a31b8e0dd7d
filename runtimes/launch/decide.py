"""Re-plan within the image's profiles for the hardware found, with the same planner as at
package time (packager.planner.replan), so the image and the plan cannot disagree."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

from packager.errors import UserError
from runtimes.launch.target import describe
from runtimes.launch.settings import EXIT_BAD_INPUT, EXIT_NO_FIT, LaunchError, Settings
from runtimes.layout import MODEL_DIR


@dataclass(frozen=True)
class Decision:
    plan: dict  # the re-plan, as plan.json
    table: str
    argv: tuple[str, ...] | None  # None: nothing fits


Replan = Callable[..., object]


def image_plan(plan: dict, config: dict) -> dict:
    """The plan restricted to profiles this image's engine family can run."""
    runtimes = set(config.get("runtimes") or ())
    keep = [c for c in plan.get("candidates", []) if not runtimes or c.get("runtime") in runtimes]
    out = dict(plan)
    out["candidates"] = keep
    sel = plan.get("selected")
    out["selected"] = sel if sel and sel.get("name") in {c["name"] for c in keep} else (keep[0] if keep else None)
    return out


def set_flag(argv: list[str], flag: str, value: str) -> None:
    """Replace `flag VALUE` / `flag=VALUE` in argv, or append it."""
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            argv[i + 1] = value
            return
        if arg.startswith(flag + "="):
            argv[i] = f"{flag}={value}"
            return
    argv += [flag, value]


def flag_values(argv: list[str] | tuple[str, ...], flag: str) -> list[str]:
    """Every value of `flag VALUE` / `flag=VALUE` in argv."""
    out = []
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif arg.startswith(flag + "="):
            out.append(arg.split("=", 1)[1])
    return out


def model_path(argv: list[str] | tuple[str, ...]) -> str | None:
    """The model the engine is handed: `vllm serve MODEL` or `--model MODEL`."""
    if len(argv) > 2 and argv[0].rsplit("/", 1)[-1] == "vllm" and argv[1] == "serve" and not argv[2].startswith("-"):
        return argv[2]
    found = flag_values(argv, "--model")
    return found[0] if found else None


def engine_argv(profile: dict, settings: Settings, python: str = sys.executable) -> list[str]:
    """The re-planned profile's argv with this container's network settings. The model path and
    --max-model-len are already right: decide() handed both to the planner."""
    argv = [str(a) for a in profile["engine_argv"]]
    if not argv:
        raise LaunchError(f"profile {profile['name']} has an empty engine_argv")
    if argv[0] in ("python", "python3"):  # the fallback runtime: this interpreter, whatever PATH says
        argv[0] = python
    set_flag(argv, "--host", settings.host)
    set_flag(argv, "--port", str(settings.port))
    if settings.served_model_name:
        set_flag(argv, "--served-model-name", settings.served_model_name)
    return argv


def with_unoffered(new: dict, image: dict) -> dict:
    """The re-plan plus the image's profiles it did not even consider on this hardware."""
    seen = {c["name"] for c in new.get("candidates", [])} | {r["name"] for r in new.get("rejected", [])}
    extra = [{"name": c["name"], "reasons": [
        f"built for {c.get('devices', 1)} x {c.get('accelerator', '?')} ({c.get('vendor', '?')}, runtime "
        f"{c.get('runtime', '?')}); this machine has none"]} for c in image.get("candidates", []) if c["name"] not in seen]
    return dict(new, rejected=list(new.get("rejected", [])) + extra)


def format_table(plan: dict) -> str:
    selected = (plan.get("selected") or {}).get("name")
    rows = [("PROFILE", "STATUS", "RUNTIME", "PRECISION", "TPxPP", "MAX LEN", "SEQS", "WHY")]
    for c in plan.get("candidates", []):
        status = "selected" if c["name"] == selected else ("low-memory" if c.get("low_memory") else "compatible")
        rows.append((c["name"], status, c.get("runtime", ""), c.get("precision", ""),
                     f"{c.get('tensor_parallel_size', 1)}x{c.get('pipeline_parallel_size', 1)}",
                     str(c.get("max_model_len", "")), str(c.get("max_num_seqs", "")),
                     "; ".join(c.get("notes", [])[:1])))
    for r in plan.get("rejected", []):
        rows.append((r["name"], "incompatible", "", "", "", "", "", "; ".join(r.get("reasons", []))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1]
                     for row in rows).rstrip()


def no_fit_screen(hardware: dict, plan: dict) -> str:
    lines = ["packager: no profile of this image fits the hardware it runs on.",
             f"  detected: {describe(hardware)}", "  this image's profiles:"]
    for r in plan.get("rejected", []):
        lines.append(f"    - {r['name']}: {'; '.join(r.get('reasons', [])) or 'rejected'}")
    advice = plan.get("advice") or []
    if advice:
        lines.append("  what would fit:")
        lines += [f"    - {a}" for a in advice]
    lines.append("  fix: run this image on hardware listed above, or build an image for this hardware "
                  "(packager build --hardware ...).")
    return "\n".join(lines)


def in_image_ref(plan: dict, fallback: str | None = None) -> str:
    """The plan's model path inside the image. A plan written off the image (an older chart)
    may carry the build host's path or a Hub id: the image's own plan, else the model dir, wins."""
    ref = plan.get("model_ref")
    if isinstance(ref, str) and (ref == MODEL_DIR or ref.startswith(MODEL_DIR + "/")):
        return ref
    return fallback or MODEL_DIR


def decide(plan: dict, config: dict, hardware, settings: Settings, replan: Replan,
           model_dir: str | None = None, model_ref: str | None = None) -> Decision:
    restricted = image_plan(plan, config)
    model_ref = model_ref or in_image_ref(plan)
    try:  # the planner refuses a pinned profile the image lacks (naming those it has) or that cannot run here
        result = replan(restricted, hardware, pinned=settings.profile, model_ref=model_ref,
                        max_model_len=settings.max_model_len)
    except UserError as exc:  # an unknown name is bad input; a known one that cannot run here is "no fit"
        names = {c["name"] for c in restricted.get("candidates", [])}
        raise LaunchError(str(exc), EXIT_NO_FIT if settings.profile in names else EXIT_BAD_INPUT) from None
    new = with_unoffered(result.to_dict() if hasattr(result, "to_dict") else dict(result), restricted)
    table = format_table(new)
    if not new.get("selected"):
        return Decision(new, table, None)
    argv = engine_argv(new["selected"], settings)
    if model_dir and model_dir != MODEL_DIR:
        relocate_model(argv, model_dir)
    return Decision(new, table, tuple(argv))


def relocate_model(argv: list[str], model_dir: str) -> None:
    """Weights mounted or downloaded elsewhere than the image's model dir: the same relative path there
    (the LoRA adapters' directories, in --lora-modules, too: they sit beside the weights)."""
    adapters = MODEL_DIR + "/adapters/"
    for i, arg in enumerate(argv):
        if adapters in arg:
            argv[i] = arg.replace(adapters, model_dir.rstrip("/") + "/adapters/")
    ref = model_path(argv)
    if not ref or not (ref == MODEL_DIR or ref.startswith(MODEL_DIR + "/")):
        return
    new = model_dir.rstrip("/") + ref[len(MODEL_DIR):]
    for i, arg in enumerate(argv):
        if arg == ref:
            argv[i] = new
        elif arg == "--model=" + ref:
            argv[i] = "--model=" + new
