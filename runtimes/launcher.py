"""The image's entrypoint: detect the hardware, re-plan within the image's
profiles, make sure the weights are there, then exec the engine.

`python -m runtimes.launcher` (exec-form ENTRYPOINT). It execs, so the server
becomes PID 1 and receives the container's signals directly. The decision is
made by the same planner as at package time (packager.planner.replan), so the
image and the package-time plan cannot disagree about what a profile means.

Environment: PACKAGER_PROFILE (pin a profile by name), PACKAGER_HOST
(default 0.0.0.0), PACKAGER_PORT, PACKAGER_MAX_MODEL_LEN,
PACKAGER_SERVED_MODEL_NAME; volume weights: PACKAGER_MODEL_DIR,
PACKAGER_WEIGHTS_URL, PACKAGER_WEIGHTS_TOKEN (or HF_TOKEN, or a file at HF_TOKEN_PATH),
PACKAGER_VERIFY_WEIGHTS=0;
PACKAGER_API_KEY (or VLLM_API_KEY): the engine's API key, handed on as VLLM_API_KEY.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from packager.errors import UserError
from runtimes import download
from runtimes.digests import verify_digests
from runtimes.layout import CACHE_DIR, IMAGE_CONFIG_PATH, MODEL_DIR, PLAN_PATH

EXIT_NO_FIT = 3
EXIT_BAD_INPUT = 2


class LaunchError(Exception):
    """A clear, one-screen reason not to start; printed without a traceback."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Settings:
    profile: str | None
    host: str
    port: int
    max_model_len: int | None
    served_model_name: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str], default_port: int = 8000) -> "Settings":
        def integer(key: str) -> int | None:
            raw = env.get(key, "").strip()
            if not raw:
                return None
            try:
                value = int(raw)
            except ValueError:
                raise LaunchError(f"{key}={raw!r}: expected a positive integer") from None
            if value <= 0:
                raise LaunchError(f"{key}={raw!r}: expected a positive integer")
            return value

        return cls(profile=env.get("PACKAGER_PROFILE", "").strip() or None,
                   host=env.get("PACKAGER_HOST", "").strip() or "0.0.0.0",
                   port=integer("PACKAGER_PORT") or default_port,
                   max_model_len=integer("PACKAGER_MAX_MODEL_LEN"),
                   served_model_name=env.get("PACKAGER_SERVED_MODEL_NAME", "").strip() or None)


@dataclass(frozen=True)
class Decision:
    plan: dict  # the re-plan, as plan.json
    table: str
    argv: tuple[str, ...] | None  # None: nothing fits


# -- which profiles this image can run -------------------------------------------------

def image_plan(plan: dict, config: dict) -> dict:
    """The plan restricted to profiles this image's engine family can run."""
    runtimes = set(config.get("runtimes") or ())
    keep = [c for c in plan.get("candidates", []) if not runtimes or c.get("runtime") in runtimes]
    out = dict(plan)
    out["candidates"] = keep
    sel = plan.get("selected")
    out["selected"] = sel if sel and sel.get("name") in {c["name"] for c in keep} else (keep[0] if keep else None)
    return out


# -- the engine's command line ------------------------------------------------------------

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


# -- what the user sees -------------------------------------------------------------------

def describe_hardware(hardware: dict) -> str:
    parts = []
    for pool in hardware.get("pools", []):
        acc = pool.get("accelerator") or {}
        n = pool.get("count_per_node") or pool.get("count") or 1
        label = acc.get("name") or acc.get("key") or "?"
        mem = acc.get("memory_gib")
        parts.append(f"{n} x {label}" + (f" ({mem} GiB)" if mem and acc.get("vendor") != "cpu" else "")
                     + f", {pool.get('cpu_cores', '?')} cores, {pool.get('memory_gib', '?')} GiB RAM")
    return "; ".join(parts) or "unknown"


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
             f"  detected: {describe_hardware(hardware)}", "  this image's profiles:"]
    for r in plan.get("rejected", []):
        lines.append(f"    - {r['name']}: {'; '.join(r.get('reasons', [])) or 'rejected'}")
    advice = plan.get("advice") or []
    if advice:
        lines.append("  what would fit:")
        lines += [f"    - {a}" for a in advice]
    lines.append("  fix: run this image on hardware listed above, or build an image for this hardware "
                  "(packager build --hardware ...).")
    return "\n".join(lines)


# -- the decision -------------------------------------------------------------------------

Replan = Callable[..., object]


def decide(plan: dict, config: dict, hardware, settings: Settings, replan: Replan,
           model_dir: str | None = None) -> Decision:
    restricted = image_plan(plan, config)
    model_ref = plan.get("model_ref")
    if model_dir and model_ref and model_ref.startswith(MODEL_DIR) and model_dir != MODEL_DIR:
        # weights mounted or downloaded elsewhere; a Hub repo id replaces the path outright
        model_ref = model_dir + model_ref[len(MODEL_DIR):] if model_dir.startswith("/") else model_dir
    try:  # the planner refuses a pinned profile the image lacks (naming those it has) or that cannot run here
        result = replan(restricted, hardware, pinned=settings.profile, model_ref=model_ref,
                        max_model_len=settings.max_model_len)
    except UserError as exc:
        raise LaunchError(str(exc)) from None
    new = with_unoffered(result.to_dict() if hasattr(result, "to_dict") else dict(result), restricted)
    table = format_table(new)
    if not new.get("selected"):
        return Decision(new, table, None)
    return Decision(new, table, tuple(engine_argv(new["selected"], settings)))


# -- weights (volume mode) ----------------------------------------------------------------

def ensure_weights(config: dict, env: Mapping[str, str], log=print) -> str:
    """The directory holding verified weights: baked, mounted, or downloaded to the cache."""
    w = config.get("weights", {})
    files: dict = w.get("files", {})
    if w.get("mode", "baked") == "baked":
        return w.get("dir", MODEL_DIR)  # verified by sha256sum when the image was built
    verify = env.get("PACKAGER_VERIFY_WEIGHTS", "1") != "0"
    mounted = Path(env.get("PACKAGER_MODEL_DIR") or w.get("dir", MODEL_DIR))
    if files and all((mounted / rel).is_file() for rel in files):
        if verify:
            try:
                verify_digests(mounted, {rel: want for rel, want in files.items() if want})
            except ValueError as exc:
                raise LaunchError(f"mounted weights at {mounted}: {exc}") from None
        log(f"weights: mounted at {mounted}")
        return str(mounted)
    if not files:  # no checksums recorded (e.g. a Hub repo planned without downloading it)
        if mounted.is_dir() and any(mounted.iterdir()):
            log(f"weights: mounted at {mounted} (no checksums recorded)")
            return str(mounted)
        src = w.get("source", {})
        if src.get("kind") == "huggingface" and "vllm" in config.get("runtimes", ()):
            log(f"weights: vLLM downloads {src['repo']} into $HF_HOME (HF_TOKEN from the environment)")
            return src["repo"]
    src = w.get("source", {})
    hub = src.get("kind") == "huggingface" and src.get("repo") and not env.get("PACKAGER_WEIGHTS_URL")
    url = env.get("PACKAGER_WEIGHTS_URL", "").rstrip("/")
    if not files or not (hub or url):
        raise LaunchError(f"weights mode is volume but {mounted} does not hold {sorted(files)}.\n"
                          f"  fix: mount the weights there (-v DIR:{MODEL_DIR}:ro), or set PACKAGER_WEIGHTS_URL "
                          "(and PACKAGER_WEIGHTS_TOKEN) to download them into the cache dir")
    dest = Path(config.get("cache_dir", CACHE_DIR)) / "model"
    try:
        token = env.get("PACKAGER_WEIGHTS_TOKEN") or env.get("HF_TOKEN") or download.token_file(env.get("HF_TOKEN_PATH"))
        if hub:  # the Hub's own client: pinned revision, its redirect and token rules, HF_ENDPOINT honoured
            download.from_hub(src["repo"], src.get("revision") or "main", files, dest, token,
                              env.get("HF_ENDPOINT") or download.HUB, log)
        else:  # a plain mirror: resumable across restarts
            for rel, want in files.items():
                download.from_url(f"{url}/{rel}", dest / rel, want, token, log)
    except download.DownloadError as exc:
        raise LaunchError(str(exc)) from None
    return str(dest)


# -- main ---------------------------------------------------------------------------------

def _load(path: str, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LaunchError(f"cannot read the image's {what} at {path}: {exc}") from None


def vllm_plugin_path(cache_dir: str) -> str:
    """A directory holding only our vLLM middleware, for vLLM's own Python to import.

    vLLM runs in the upstream image's environment, not our venv; putting our whole
    site-packages on its path would mix two sets of packages. The module imports
    nothing but what vLLM's server already has (starlette).
    """
    import runtimes.vllm_health as health

    target = Path(cache_dir) / "vllm-plugins" / "runtimes"
    target.mkdir(parents=True, exist_ok=True)
    (target / "__init__.py").write_text("")
    (target / "vllm_health.py").write_text(Path(health.__file__).read_text())
    return str(target.parent)


def engine_environment(argv: list[str], env: Mapping[str, str], hub_model: bool = False) -> dict[str, str]:
    """Environment for the engine: vLLM gets our middleware on PYTHONPATH, and
    the API key as VLLM_API_KEY (vLLM's own variable; the fallback runtime
    reads it too), never as --api-key, which any process could read with ps."""
    if any(a == "--api-key" or a.startswith("--api-key=") for a in argv):
        raise LaunchError("the engine command line holds --api-key, which ps shows to every process\n"
                          "  fix: drop it from the argv and set PACKAGER_API_KEY from a Secret")
    out = dict(env)
    if hub_model:  # the engine downloads a Hub repo itself: the chart's HF_HUB_OFFLINE=1 would forbid it
        out["HF_HUB_OFFLINE"] = "0"
    key = env.get("PACKAGER_API_KEY") or env.get("VLLM_API_KEY")
    if key:
        out["VLLM_API_KEY"] = key
    if argv and Path(argv[0]).name == "vllm" and "--middleware" in argv:
        cache = env.get("PACKAGER_CACHE_DIR", CACHE_DIR)
        plugins = vllm_plugin_path(cache)
        out["PYTHONPATH"] = os.pathsep.join(p for p in (plugins, env.get("PYTHONPATH", "")) if p)
    return out


def main(env: Mapping[str, str] | None = None, execvp=os.execvp) -> int:
    env = os.environ if env is None else env
    try:
        plan = _load(env.get("PACKAGER_PLAN", PLAN_PATH), "plan")
        config = _load(env.get("PACKAGER_IMAGE_CONFIG", IMAGE_CONFIG_PATH), "launcher config")
        settings = Settings.from_env(env, default_port=int(config.get("port", 8000)))
        from packager.detect import detect_hardware
        from packager.planner import replan

        hw = detect_hardware()
        hw_dict = hw.to_dict() if hasattr(hw, "to_dict") else dict(hw)
        print(f"packager launcher: detected {describe_hardware(hw_dict)}", flush=True)
        model_dir = ensure_weights(config, env, log=lambda m: print(m, flush=True))
        decision = decide(plan, config, hw, settings, replan, model_dir=model_dir)
        print(decision.table, flush=True)
        if decision.argv is None:
            print(no_fit_screen(hw_dict, decision.plan), file=sys.stderr, flush=True)
            return EXIT_NO_FIT
    except LaunchError as exc:
        print(f"packager launcher: {exc}", file=sys.stderr, flush=True)
        return exc.code
    argv = list(decision.argv)
    try:
        engine_env = engine_environment(argv, env, hub_model=not model_dir.startswith("/"))
    except LaunchError as exc:
        print(f"packager launcher: {exc}", file=sys.stderr, flush=True)
        return exc.code
    except OSError as exc:
        print(f"packager launcher: cannot prepare the engine: {exc}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    os.environ.update(engine_env)  # execvp passes os.environ on
    print("exec: " + " ".join(argv), flush=True)
    execvp(argv[0], argv)
    return 0  # only reached when execvp is replaced (tests)


if __name__ == "__main__":
    sys.exit(main())
