"""Replay one container's start: its command, args and env as the kubelet would run them, with the
launcher in dry-run mode (PACKAGER_DRY_RUN=1) so it prints its launch record instead of exec.

In the chart's image when the local engine has it (`docker run --network none`, the container's
user, read-only root and volumes), else with the installed packager. A container that does not
start through the launcher is read, not run: its argv is what the kubelet would exec.

On this host nothing the chart supplies may run: a ConfigMap's `sitecustomize.py` on PYTHONPATH,
a `.pth` under HOME, a library in LD_PRELOAD would all execute in the replay. So the host replay
runs the packager that runs the rehearsal, in Python's isolated mode, and hands it only the
launcher's own variables (HOST_ENV_PREFIXES); what it withholds is said in a note, and checks that
need it (the chart's PYTHONPATH for --middleware) are left to a replay inside the image.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from packager.errors import UserError
from packager.rehearse.containers import Container, write_mount_files
import runtimes
from runtimes.launch.launch_record import ENV_PREFIXES, launch_env
from runtimes.layout import ENV_DRY_RUN, ENV_HARDWARE, ENV_PROFILE, REDACTED

LAUNCHER_MODULE = "runtimes.launcher"
TIMEOUT_S = 180
# What the launcher reads (the launch record's prefixes, less XDG_ cache paths); PATH and HOME are
# the host's own (HOME an empty temp dir). PACKAGER_DOCKER names a program: never from a chart.
HOST_ENV_PREFIXES = tuple(p for p in ENV_PREFIXES if p != "XDG_")
HOST_ENV_DENIED = frozenset({"PACKAGER_DOCKER"})
# Python isolated (-I: no PYTHON* variables, no user site, no cwd on sys.path), this packager's code first.
HOST_LAUNCHER = ("import sys; sys.path.insert(0, sys.argv.pop(1)); from runtimes.launch.__main__ import main; "
                 "sys.exit(main())")


@dataclass(frozen=True)
class Replay:
    how: str  # "image" | "installed" | "read": how the start was replayed
    record: dict  # the launch record (read: one built from the container spec)
    exit_code: int | None = None
    log_tail: str = ""
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Engine:
    """The local container engine, when one answers (the same docker CLI `packager build` uses)."""
    docker: str | None

    @classmethod
    def find(cls) -> "Engine":
        from packager.image import docker

        cli = docker.docker_cli()
        return cls(cli if cli and docker.engine_reachable(cli)[0] else None)

    def inspect(self, image: str) -> dict | None:
        if not self.docker or not image:
            return None
        from packager.image import docker

        try:
            return docker.inspect(image, self.docker) or None
        except UserError:  # not in the engine
            return None


def redact(record: dict, c: Container) -> dict:
    """The launcher's own rule redacts by name; values that came from a Secret go whatever their name."""
    env = record.get("env") or {}
    record["env"] = {k: (REDACTED if k in c.secret_names and v else v) for k, v in env.items()}
    return record


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
    return {"schema": 1, "role": c.role, "profile": env.get(ENV_PROFILE), "runtime": None,
            "prelude": prelude, "argv": argv, "env": redact({"env": launch_env(env)}, c)["env"],
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
            env[ENV_PROFILE] = pin
        env_file = root / "env"  # not on the command line: chart Secrets stay out of `ps`
        env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items() if "\n" not in v))
        env_file.chmod(0o600)
        argv = process_argv(c, image_config)
        name = f"packager-rehearse-{uuid.uuid4().hex[:12]}"
        cmd = [engine.docker, "run", "--rm", "--name", name, "--network", "none", "--env-file", str(env_file),
               "--entrypoint", argv[0]]
        if c.run_as_user is not None:
            cmd += ["--user", str(c.run_as_user)]
        if c.read_only_root:
            cmd.append("--read-only")
        for path, d in staged.items():
            cmd += ["-v", f"{d}:{path}"]
        cmd += [c.image, *argv[1:]]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return _no_record(c, image_config, "image", f"the dry run did not finish in {TIMEOUT_S} s")
        finally:  # a killed CLI leaves its container running
            subprocess.run([engine.docker, "rm", "-f", name], capture_output=True, timeout=60)
    record = _parse_record(r.stdout)
    if record is None:
        return _no_record(c, image_config, "image", f"the launcher printed no launch record (exit {r.returncode}): "
                          + _last_line(r.stderr), r.returncode, r.stderr)
    return Replay("image", redact(record, c), r.returncode, r.stderr[-2000:])


def _last_line(text: str) -> str:
    return (text.strip().splitlines() or ["no output"])[-1]


def _no_record(c: Container, image_config: dict | None, how: str, why: str, code: int | None = None,
               log: str = "") -> Replay:
    record = read_record(c, image_config)
    record.update(ok=False, problems=[why])
    return Replay(how, record, code, log[-2000:])


def host_env(c: Container, staged: dict[str, Path]) -> tuple[dict[str, str], list[str]]:
    """(the launcher's variables from the container's env, mount paths moved to their stage; the names
    withheld). A value that points into a mount is moved with it."""
    env, withheld = {}, []
    for k, v in c.env:
        if not k.startswith(HOST_ENV_PREFIXES) or k in HOST_ENV_DENIED:
            withheld.append(k)
            continue
        for path, d in sorted(staged.items(), key=lambda kv: -len(kv[0])):
            if v == path or v.startswith(path.rstrip("/") + "/"):
                v = str(d) + v[len(path.rstrip("/")):]
                break
        env[k] = v
    return env, sorted(set(withheld))


def _without_chart_pythonpath(record: dict, chart_pythonpath: str) -> dict:
    """The chart's PYTHONPATH was withheld: the record shows it as the real start would have it (after the
    launcher's plugins), and the --middleware verdict is left to a replay in the image when it failed."""
    record["pythonpath"] = (record.get("pythonpath") or []) + [p for p in chart_pythonpath.split(os.pathsep) if p]
    if (record.get("checks") or {}).get("middleware_importable") is False:
        record["checks"]["middleware_importable"] = None
        record["problems"] = [x for x in record.get("problems") or [] if "--middleware" not in x]
        record["ok"] = record.get("exit_code") == 0 and not record["problems"]
    return record


def installed(c: Container, hardware: str | None, pin: str | None) -> Replay:
    """The launcher of the packager running this rehearsal, isolated (module docstring), with the
    container's launcher variables and its mounts staged in a temp dir."""
    with tempfile.TemporaryDirectory(prefix="packager-rehearse-") as tmp:
        root = Path(tmp)
        staged = _stage_mounts(c, root)
        env, withheld = host_env(c, staged)
        (root / "home").mkdir()
        env.update({ENV_DRY_RUN: "1", "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root / "home")})
        if hardware:
            env[ENV_HARDWARE] = hardware
        if pin:
            env[ENV_PROFILE] = pin
        code_root = str(Path(runtimes.__file__).resolve().parents[1])
        try:
            r = subprocess.run([sys.executable, "-I", "-c", HOST_LAUNCHER, code_root], capture_output=True,
                               text=True, env=env, cwd=tmp, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return _no_record(c, None, "installed", f"the dry run did not finish in {TIMEOUT_S} s")
        record = _parse_record(r.stdout)
        if record is not None:  # the staged paths meant the container's own: say those
            text = json.dumps(record)
            for path, d in staged.items():
                text = text.replace(str(d), path.rstrip("/"))
            record = json.loads(text)
    if record is None:
        return _no_record(c, None, "installed", f"the launcher printed no launch record (exit {r.returncode}): "
                          + _last_line(r.stderr), r.returncode, r.stderr)
    notes = ["the image is not in the local engine: replayed with the installed packager"]
    if withheld:
        notes.append(f"the replay on this host ran without {', '.join(withheld)}: only the launcher's own variables "
                     "pass, so nothing the chart supplies runs here (load the image into the local engine to replay "
                     "with every variable)")
        chart_pythonpath = dict(c.env).get("PYTHONPATH", "")
        if chart_pythonpath:
            record = _without_chart_pythonpath(record, chart_pythonpath)
    return Replay("installed", redact(record, c), r.returncode, r.stderr[-2000:], tuple(notes))


def describe(argv: list[str], width: int = 60) -> str:
    """argv as a shell line; a multi-line argument (an inline script) is cut to its first line."""
    def one(a: str) -> str:
        return a if "\n" not in a else a.split("\n", 1)[0][:width] + " ..."
    return " ".join(shlex.quote(one(a)) for a in argv)
