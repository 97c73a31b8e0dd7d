"""What decides whether a replayed container would start. Each check is True (passes), False
(the pod would not start: exit 1) or None (could not be checked here, with the reason)."""
from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import PurePosixPath

from packager.rehearse.replay import Engine, Replay
from runtimes import oci_ref

_MANIFESTS = ", ".join(("application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.docker.distribution.manifest.v2+json",
                        "application/vnd.docker.distribution.manifest.list.v2+json"))


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None
    detail: str


def split_image(ref: str) -> tuple[str | None, str, str]:
    """(registry host or None, repository, tag or digest)."""
    parsed = oci_ref.parse(ref)
    return parsed.registry or None, parsed.repository, parsed.digest if "@" in ref else parsed.tag or "latest"


def in_registry(host: str, repo: str, ref: str) -> bool | None:
    scheme = "http" if oci_ref.is_loopback(host) else "https"
    req = urllib.request.Request(f"{scheme}://{host}/v2/{repo}/manifests/{ref}", method="HEAD",
                                 headers={"Accept": _MANIFESTS})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status == 200
    except urllib.error.HTTPError as exc:
        return False if exc.code == 404 else None
    except (urllib.error.URLError, OSError):
        return None


def image(ref: str, engine: Engine, registry: str | None, found_locally: bool) -> Check:
    if not ref:
        return Check("image", False, "the container names no image")
    if found_locally:
        return Check("image", True, f"{ref} is in the local engine")
    host, repo, tag = split_image(ref)
    target = host or registry
    if target:
        found = in_registry(target, repo, tag)
        if found is None:
            return Check("image", None, f"registry {target} did not answer for {repo}:{tag}")
        where = f"registry {target}"
        return Check("image", found, f"{repo}:{tag} {'is' if found else 'does not exist'} in {where}"
                     + ("" if found else (" or the local engine" if engine.docker else "")))
    if engine.docker:
        return Check("image", None, f"{ref} is not in the local engine; pass --registry HOST:PORT to look there")
    return Check("image", None, "no container engine answers and no --registry was given")


def vllm_argv(argv: list[str]) -> Check | None:
    """vLLM 0.33.0's own parser when vLLM is importable here, else the pinned snapshot of it."""
    if not argv or PurePosixPath(argv[0]).name != "vllm":
        return None
    from packager.vllm import contract

    try:
        from packager.vllm.real_parser import real_check  # imports vllm: ImportError where it is absent

        problems = real_check([argv])[0]
        how = "vLLM's parser"
    except (ImportError, RuntimeError):
        problems = contract.check_argv(argv)
        how = f"the vLLM {contract.VLLM_VERSION} parser snapshot"
    if problems:
        return Check("vllm-argv", False, f"{how}: " + "; ".join(problems))
    return Check("vllm-argv", True, f"parsed by {how}")


def middleware(rec: dict, replay: Replay) -> Check | None:
    """Every --middleware module importable from the engine's PYTHONPATH alone: vLLM runs in its
    image's own environment, where packager's modules are not installed."""
    mods = rec.get("middleware") or []
    if not mods:
        return None
    names = ", ".join(mods)
    launcher = (rec.get("checks") or {}).get("middleware_importable")
    if launcher is not None and replay.how != "read":
        where = "inside the image" if replay.how == "image" else "from the engine's PYTHONPATH alone"
        problem = next((x for x in rec.get("problems") or [] if "--middleware" in x), "")
        return Check("middleware", bool(launcher), problem or f"{names}: the launcher's check finds it {where}")
    paths = rec.get("pythonpath") or []
    if not paths:
        return Check("middleware", False, f"{names} not importable: the engine's PYTHONPATH is empty and "
                     "vLLM's environment lacks packager's modules (start the container through the launcher)")
    if replay.how != "read":
        return Check("middleware", None, "PYTHONPATH entries live in the image; not checked here")
    from runtimes.launch.engine_env import middleware_findable

    # Found, never imported: the paths and module names are the chart's, and this is not its image.
    ok, why = middleware_findable(rec.get("argv") or [], {"PYTHONPATH": os.pathsep.join(paths)})
    if ok is False:
        return Check("middleware", False, why)
    return Check("middleware", True, f"{names} importable from PYTHONPATH={':'.join(paths)} alone")


def weights(rec: dict, replay: Replay) -> Check | None:
    w = rec.get("weights")
    if not isinstance(w, dict):
        return None
    if w.get("present"):
        return Check("weights", True, f"{w.get('mode', '?')}: present at {w.get('dir')}")
    if replay.how == "installed" and w.get("mode") == "baked":
        return Check("weights", None, f"baked into the image at {w.get('dir')}; the image is not here to look in")
    source = w.get("would_download_from")
    if source:
        return Check("weights", True, f"{w.get('mode', '?')}: not yet at {w.get('dir')}; the pod downloads them from "
                     f"{source} into the volume")
    missing = ", ".join(w.get("missing") or []) or "the weights"
    return Check("weights", False, f"{w.get('mode', '?')}: {missing} missing at {w.get('dir')} and no source to "
                 "download from")


def starts(rec: dict, replay: Replay) -> Check | None:
    if replay.how == "read":
        return None
    problems = "; ".join(rec.get("problems") or [])
    if rec.get("ok"):
        return Check("starts", True, f"the launcher would exec {rec.get('argv', ['?'])[0]}"
                     + (f" (profile {rec['profile']})" if rec.get("profile") else ""))
    return Check("starts", False, problems or f"the launcher would exit {replay.exit_code}")


def launcher_checks(rec: dict, seen: set[str]) -> list[Check]:
    """The launcher's own checks (runtimes.launch), under its names, where ours did not cover them."""
    out = []
    for name, ok in sorted((rec.get("checks") or {}).items()):
        if name in seen or name.split("_")[0] in seen:  # middleware_importable: reported as `middleware`
            continue
        detail = ok if isinstance(ok, str) else json.dumps(ok)
        out.append(Check(f"launcher:{name}", ok if isinstance(ok, bool) or ok is None else bool(ok), detail))
    return out


def executable(argv: list[str], engine: Engine, image_ref: str) -> Check | None:
    """A container that runs something other than the launcher: its program exists in the image."""
    if not argv:
        return Check("command", False, "nothing to run: no command, args or image ENTRYPOINT")
    if not engine.docker:
        return None
    r = subprocess.run([engine.docker, "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image_ref,
                        "-c", 'command -v "$0"', argv[0]], capture_output=True, text=True, timeout=60)
    if r.returncode == 0:
        return Check("command", True, f"{argv[0]} is {r.stdout.strip()} in the image")
    return Check("command", False, f"{argv[0]} is not in the image's PATH")
