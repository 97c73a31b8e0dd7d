"""What the engine inherits: vLLM gets our middleware on its import path and the API key as
VLLM_API_KEY (never --api-key, which ps shows); the fallback runtime runs in our venv as is."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Mapping

from runtimes.launch.decide import flag_values
from runtimes.launch.settings import LaunchError
from runtimes.layout import CACHE_DIR


# What the launcher needed to fetch the weights and the engine never does (it is handed a local path,
# HF_HUB_OFFLINE=1): a process that serves requests should not hold a download token where its
# /proc/PID/environ, a crash report or a plugin can read it. HF_TOKEN_PATH names the mounted token file
# that huggingface_hub would read on its own.
DOWNLOAD_SECRETS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "PACKAGER_WEIGHTS_TOKEN")


def is_vllm(argv) -> bool:
    return bool(argv) and Path(argv[0]).name == "vllm"


def middleware(argv) -> list[str]:
    """The modules vLLM imports for --middleware (the value is module.attribute)."""
    return [m.rsplit(".", 1)[0] for m in flag_values(argv, "--middleware")]


def vllm_plugin_path(cache_dir: str) -> str:
    """A directory holding only our vLLM middleware, for vLLM's own Python to import.

    vLLM runs in the upstream image's environment, not our venv; putting our whole
    site-packages on its path would mix two sets of packages. The middleware and the
    key rule it shares with the fallback server import only the standard library.
    """
    import runtimes.api_keys as keys
    import runtimes.vllm_health as health

    target = Path(cache_dir) / "vllm-plugins" / "runtimes"
    target.mkdir(parents=True, exist_ok=True)
    (target / "__init__.py").write_text("")
    for module in (health, keys):
        (target / Path(module.__file__).name).write_text(Path(module.__file__).read_text())
    return str(target.parent)


def engine_environment(argv: list[str], env: Mapping[str, str], cache_dir: str | None = None) -> dict[str, str]:
    """Environment for the engine, without the download tokens. `cache_dir`: where the vLLM plugin directory is written
    (default PACKAGER_CACHE_DIR or the image's cache; the dry run passes a temp dir)."""
    if any(a == "--api-key" or a.startswith("--api-key=") for a in argv):
        raise LaunchError("the engine command line holds --api-key, which ps shows to every process\n"
                          "  fix: drop it from the argv and set PACKAGER_API_KEY from a Secret")
    out = {k: v for k, v in env.items() if k not in DOWNLOAD_SECRETS}
    key = env.get("PACKAGER_API_KEY") or env.get("VLLM_API_KEY")
    if key:
        out["VLLM_API_KEY"] = key
    if is_vllm(argv) and middleware(argv):
        plugins = vllm_plugin_path(cache_dir or env.get("PACKAGER_CACHE_DIR") or CACHE_DIR)
        out["PYTHONPATH"] = os.pathsep.join(p for p in (plugins, env.get("PYTHONPATH", "")) if p)
    return out


def engine_python(argv, env: Mapping[str, str]) -> str | None:
    """The interpreter the engine runs under: its script's shebang (vllm), or argv[0] itself."""
    if not argv:
        return None
    exe = shutil.which(argv[0], path=env.get("PATH")) if "/" not in argv[0] else argv[0]
    if not exe or not os.path.isfile(exe):
        return None
    if Path(exe).name.startswith("python"):
        return exe
    try:
        with open(exe, "rb") as f:
            first = f.readline(256).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    parts = first[2:].split()
    if parts and Path(parts[0]).name == "env" and len(parts) > 1:
        return shutil.which(parts[1], path=env.get("PATH"))
    return parts[0] if parts else None


def middleware_importable(argv, engine_env: Mapping[str, str]) -> tuple[bool | None, str]:
    """Import every --middleware target with the engine's interpreter and PYTHONPATH.
    (None, why) when that interpreter is not here (a rehearsal outside the image)."""
    targets = flag_values(argv, "--middleware")
    if not targets:
        return True, ""
    python = engine_python(argv, engine_env)
    if python is None:  # a rehearsal outside the image: at least the modules must be on PYTHONPATH alone
        return _on_path_alone(targets, engine_env)
    code = ("import importlib, sys\n"
            "for t in sys.argv[1:]:\n"
            "    mod, _, attr = t.rpartition('.')\n"
            "    getattr(importlib.import_module(mod), attr)\n")
    env = {k: v for k, v in engine_env.items() if isinstance(v, str)}
    # cwd "/": `-c` puts the working directory on sys.path; the engine does not run from ours
    proc = subprocess.run([python, "-c", code, *targets], env=env, capture_output=True, text=True, timeout=120, cwd="/")
    if proc.returncode == 0:
        return True, ""
    last = (proc.stderr.strip().splitlines() or ["exit " + str(proc.returncode)])[-1]
    return False, f"--middleware {' '.join(targets)} does not import under {python}: {last}"


def middleware_findable(argv, engine_env: Mapping[str, str]) -> tuple[bool, str]:
    """Every --middleware target's module on the engine's PYTHONPATH, found without running anything
    (a rehearsal reading a container's spec on this host)."""
    targets = flag_values(argv, "--middleware")
    return _on_path_alone(targets, engine_env) if targets else (True, "")


def _on_path_alone(targets: list[str], engine_env: Mapping[str, str]) -> tuple[bool, str]:
    """Without the engine's interpreter: find (never import: a package's __init__ is code, and on this
    host it may be a chart's) each target's module under the engine's PYTHONPATH entries only, as
    vLLM's environment, which lacks packager's modules, would."""
    paths = [p for p in engine_env.get("PYTHONPATH", "").split(os.pathsep) if p]
    missing = [t for t in targets if not any(_module_file(t.rpartition(".")[0], p) for p in paths)]
    if not missing:
        return True, ""
    return False, (f"--middleware {' '.join(missing)} is not on the engine's PYTHONPATH "
                   f"({':'.join(paths) or 'unset'}); vLLM's environment does not have packager's modules")


def _module_file(module: str, root: str) -> bool:
    """`a.b` under `root`: a/b.py, a/b/ (a package, or a namespace), or an extension a/b.*.so, every
    parent a directory (a namespace package when it has no __init__.py)."""
    parts = module.split(".")
    if not module or not all(p.isidentifier() for p in parts):
        return False
    parent = Path(root, *parts[:-1])
    leaf = parts[-1]
    return parent.is_dir() and ((parent / f"{leaf}.py").is_file() or (parent / leaf).is_dir()
                                or any(parent.glob(f"{leaf}.*.so")))
