"""Replay one container's start: its command, args and env as the kubelet would run them, with the
launcher in dry-run mode (PACKAGER_DRY_RUN=1) so it prints its launch record instead of exec.

In the chart's image when the local engine has it (`docker run --network none`, the container's
user, read-only root and volumes), else with the installed packager. A container that does not
start through the launcher is read, not run: its argv is what the kubelet would exec.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from packager.errors import UserError
from packager.rehearse.containers import Container, write_mount_files
from runtimes.layout import ENV_DRY_RUN, ENV_HARDWARE, REDACTED

LAUNCHER_MODULE = "runtimes.launcher"
TIMEOUT_S = 180
_SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")


@dataclass(frozen=True)
class Replay:
    how: str  # "image" | "installed" | "read": how the start was replayed
    record: dict  # the launch record (read: one built from the container spec)
    exit_code: int | None = None
    log_tail: str = ""
    notes: tuple[str, ...] = field(default=())
    # --middleware modules not importable from the engine's PYTHONPATH as the launcher left it
    # (None: not checked in this replay)
    not_importable: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Engine:
    """The local container engine, when one answers (the same docker CLI `packager build` uses)."""
    docker: str | None

    @classmethod
    def find(cls) -> "Engine":
        from packager.build import engine

        cli = engine.docker_cli()
        return cls(cli if cli and engine.engine_reachable(cli)[0] else None)

    def inspect(self, image: str) -> dict | None:
        if not self.docker or not image:
            return None
        from packager.build import engine

        try:
            return engine.inspect(image, self.docker) or None
        except UserError:  # not in the engine
            return None


def redact(env: dict[str, str]) -> dict[str, str]:
    return {k: (REDACTED if any(w in k.upper() for w in _SECRET_WORDS) and v else v) for k, v in env.items()}


def starts_launcher(c: Container, entrypoint: list[str] | None) -> bool:
    argv = list(c.command) if c.command is not None else list(entrypoint or [])
    if c.command is None and entrypoint is None:
        return True  # not here to look at: packager's images all start the launcher
    return any(LAUNCHER_MODULE in a or a.endswith("packager-launcher") for a in argv)


def process_argv(c: Container, image_config: dict | None) -> list[str]:
    """What the kubelet execs: command replaces ENTRYPOINT; args replace CMD."""
    cfg = image_config or {}
    command = list(c.command) if c.command is not None else list(cfg.get("Entrypoint") or [])
    args = list(c.args) if c.args is not None else ([] if c.command is not None else list(cfg.get("Cmd") or []))
    return command + args


def engine_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(prelude, the engine's argv): `sh -c 'SCRIPT; exec "$@"' NAME ARGS...` runs SCRIPT, then ARGS."""
    if len(argv) >= 3 and Path(argv[0]).name in ("sh", "bash") and argv[1] == "-c":
        script = argv[2]
        if 'exec "$@"' in script and len(argv) > 4:
            return [script], argv[4:]
        return [script], []
    return [], argv


def read_record(c: Container, image_config: dict | None) -> dict:
    """The record of a container that does not start through the launcher: nothing runs."""
    env = dict(c.env)
    prelude, argv = engine_argv(process_argv(c, image_config))
    middleware = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--middleware"]
    return {"schema": 1, "role": c.role, "profile": env.get("PACKAGER_PROFILE"), "runtime": None,
            "prelude": prelude, "argv": argv, "env": redact(env),
            "pythonpath": [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p],
            "middleware": middleware, "checks": {}, "model_path": None, "weights": None,
            "ok": None, "problems": [], "launcher": False}


def _stage_mounts(c: Container, root: Path) -> dict[str, Path]:
    """A directory per volume mount: a ConfigMap's or Secret's files, else empty and writable."""
    staged = {}
    for i, m in enumerate(c.mounts):
        d = root / f"mount{i}"
        d.mkdir()
        write_mount_files(m, d)
        os.chmod(d, 0o777)  # the container's non-root user writes emptyDirs and claims
        for p in d.rglob("*"):
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        staged[m.path] = d
    return staged


def _parse_record(stdout: str) -> dict | None:
    text = stdout.strip()
    start = text.find("{")
    try:
        return json.loads(text[start:]) if start >= 0 else None
    except json.JSONDecodeError:
        return None


def in_image(c: Container, engine: Engine, image_config: dict, hardware: str | None, pin: str | None) -> Replay:
    with tempfile.TemporaryDirectory(prefix="packager-rehearse-") as tmp:
        root = Path(tmp)
        staged = _stage_mounts(c, root)
        env = dict(c.env, **{ENV_DRY_RUN: "1"})
        if hardware:
            env[ENV_HARDWARE] = hardware
        if pin:
            env["PACKAGER_PROFILE"] = pin
        env_file = root / "env"  # not on the command line: chart Secrets stay out of `ps`
        env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items() if "\n" not in v))
        env_file.chmod(0o600)
        argv = process_argv(c, image_config)
        cmd = [engine.docker, "run", "--rm", "--network", "none", "--env-file", str(env_file),
               "--entrypoint", argv[0]]
        if c.run_as_user is not None:
            cmd += ["--user", str(c.run_as_user)]
        if c.read_only_root:
            cmd.append("--read-only")
        for path, d in staged.items():
            cmd += ["-v", f"{d}:{path}"]
        cmd += [c.image, *argv[1:]]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    record = _parse_record(r.stdout)
    if record is None:
        record = read_record(c, image_config)
        record["ok"] = False
        record["problems"] = [f"the launcher printed no launch record (exit {r.returncode})"]
    return Replay("image", record, r.returncode, r.stderr[-2000:])


def installed(c: Container, hardware: str | None, pin: str | None) -> Replay:
    """The launcher of the installed packager, with the container's env and its mounts staged
    in a temp dir (paths in env values that point into a mount are moved there with it)."""
    with tempfile.TemporaryDirectory(prefix="packager-rehearse-") as tmp:
        root = Path(tmp)
        staged = _stage_mounts(c, root)
        env = {}
        for k, v in c.env:
            for path, d in sorted(staged.items(), key=lambda kv: -len(kv[0])):
                if v == path or v.startswith(path.rstrip("/") + "/"):
                    v = str(d) + v[len(path.rstrip("/")):]
                    break
            env[k] = v
        env.update({ENV_DRY_RUN: "1", "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        if hardware:
            env[ENV_HARDWARE] = hardware
        if pin:
            env["PACKAGER_PROFILE"] = pin
        r = subprocess.run([sys.executable, "-m", LAUNCHER_MODULE], capture_output=True, text=True, env=env,
                           cwd=tmp, timeout=TIMEOUT_S)
        record = _parse_record(r.stdout)
        missing = None
        if record is not None and record.get("middleware"):  # the plugin dir the launcher wrote is still here
            missing = tuple(not_importable(record["middleware"], record.get("pythonpath") or []))
        if record is not None:  # the staged paths meant the container's own: say those
            text = json.dumps(record)
            for path, d in staged.items():
                text = text.replace(str(d), path.rstrip("/"))
            record = json.loads(text)
    if record is None:
        record = read_record(c, None)
        record["ok"] = False
        record["problems"] = [f"the launcher printed no launch record (exit {r.returncode}): "
                              + (r.stderr.strip().splitlines() or ["no output"])[-1]]
    notes = ("the image is not in the local engine: replayed with the installed packager",)
    return Replay("installed", record, r.returncode, r.stderr[-2000:], notes, missing)


def not_importable(modules: list[str], paths: list[str]) -> list[str]:
    """The modules that no entry of `paths` provides. -I -S: none of this machine's site-packages,
    as in vLLM's environment, which lacks packager's modules."""
    code = ("import importlib.util, sys; sys.path[:0] = sys.argv[2:]; "
            "sys.exit(0 if importlib.util.find_spec(sys.argv[1]) else 1)")
    return [m for m in modules
            if subprocess.run([sys.executable, "-I", "-S", "-c", code, m, *paths], capture_output=True,
                              timeout=30).returncode != 0]


def describe(argv: list[str], width: int = 60) -> str:
    """argv as a shell line; a multi-line argument (an inline script) is cut to its first line."""
    def one(a: str) -> str:
        return a if "\n" not in a else a.split("\n", 1)[0][:width] + " ..."
    return " ".join(shlex.quote(one(a)) for a in argv)
