"""The HTTP side of LoRA: adapters as models, vLLM's runtime load/unload endpoints, and a
watched directory of drop-in adapters (NIM's ``NIM_PEFT_SOURCE`` + refresh interval).

- ``/v1/models`` lists each adapter with ``parent`` = the base model's served name, as vLLM.
- ``POST /v1/load_lora_adapter {"lora_name", "lora_path"}`` and ``/v1/unload_lora_adapter
  {"lora_name"}`` exist only when ``VLLM_ALLOW_RUNTIME_LORA_UPDATING`` is true; the server's
  API-key gate (runtimes/api_keys.py) covers them like every non-probe path. A bad adapter is
  a 400 naming the field; an unknown name to unload is a 404, as in vLLM.
- ``--lora-dir`` (env ``PACKAGER_LORA_DIR``): every ``--lora-refresh-interval`` s, each
  subdirectory holding ``adapter_config.json`` is served under its directory name, and one
  that disappears is unloaded. Runtime ``lora_path``s must then lie inside that directory
  (relative ones are taken from it): a path that resolves outside it is refused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import PlainTextResponse

from .adapter import CONFIG, AdapterError
from .manager import LoraManager

log = logging.getLogger(__name__)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}")
TRUE = ("1", "true", "yes", "on")


def runtime_updates_allowed(env=os.environ) -> bool:
    return env.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "").strip().lower() in TRUE


def parse_lora_module(value: str) -> tuple[str, str]:
    """``--lora-modules`` item: ``name=path`` or vLLM's JSON ``{"name", "path", "base_model_name"}``."""
    value = value.strip()
    if value.startswith("{"):
        try:
            d = json.loads(value)
            return str(d["name"]), str(d["path"])
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"--lora-modules {value!r}: JSON form needs \"name\" and \"path\"") from None
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"--lora-modules {value!r}: expected NAME=PATH or a JSON object")
    return name, path


def check_name(name: Any, base_names: list[str]) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise AdapterError("lora_name", "lora_name must be 1-128 characters: letters, digits and ._:/@+- "
                                        "(starting with a letter or digit)")
    if name in base_names:
        raise AdapterError("lora_name", f"lora_name {name!r} is the base model's name")
    return name


def resolve_path(path: Any, root: Path | None) -> Path:
    """Where ``lora_path`` points; inside ``root`` (symlinks resolved) when the server has one."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise AdapterError("lora_path", "lora_path must be a non-empty string")
    p = Path(path)
    if root is None:
        if not p.is_absolute():
            raise AdapterError("lora_path", "lora_path must be absolute (or start the server with --lora-dir)")
        return p
    real_root = root.resolve()
    full = (real_root / p).resolve()
    if full != real_root and real_root not in full.parents:
        raise AdapterError("lora_path", f"lora_path {path!r} is outside the adapter directory {root}")
    return full


def start(manager: LoraManager, args: Any, base_names: list[str]) -> "LoraService":
    """The service for a server's flags: ``--lora-modules`` registered (a bad one stops the
    start, naming it), ``--lora-dir`` scanned once now and then watched."""
    root = Path(args.lora_dir) if args.lora_dir else None
    if root is not None and not root.is_dir():
        raise ValueError(f"--lora-dir {root}: no such directory")
    svc = LoraService(manager, base_names, root)
    for item in args.lora_modules:
        name, path = parse_lora_module(item)
        try:
            svc.manager.register(check_name(name, base_names), Path(path))
        except AdapterError as e:
            raise ValueError(f"--lora-modules {name}: {e.field}: {e}") from None
    if root is not None:
        svc.scan()
        svc.watch(args.lora_refresh_interval, threading.Event())
    return svc


class LoraService:
    """The adapters the server answers to: registration from every source, one place."""

    def __init__(self, manager: LoraManager, base_names: list[str], root: Path | None):
        self.manager, self.base_names, self.root = manager, base_names, root
        self._watched: dict[str, float] = {}  # name -> mtime of its adapter_config.json (from the watch)
        self._refused: dict[str, float] = {}  # dirs that failed, by mtime: logged once, retried when changed

    def __contains__(self, name: object) -> bool:
        return name in self.manager

    def load(self, name: Any, path: Any) -> str:
        name = check_name(name, self.base_names)
        self.manager.register(name, resolve_path(path, self.root))
        return name

    def unload(self, name: Any) -> None:
        if not isinstance(name, str) or name not in self.manager:
            raise LookupError(f"The lora adapter '{name}' cannot be found.")
        self.manager.unregister(name)
        self._watched.pop(name, None)

    def cards(self, created: int, max_model_len: int | None) -> list[dict]:
        parent = self.base_names[0]
        return [{"id": n, "object": "model", "created": created, "owned_by": "packager", "root": n,
                 "parent": parent, "max_model_len": max_model_len} for n in self.manager.names()]

    # -- the watched directory ---------------------------------------------------
    def scan(self) -> None:
        """One pass over --lora-dir: load new or changed adapters, unload vanished ones."""
        if self.root is None:
            return
        present: dict[str, float] = {}
        try:
            entries = sorted(self.root.iterdir())
        except OSError as e:
            log.warning("--lora-dir %s: %s", self.root, e)
            return
        for d in entries:
            try:
                if d.is_dir() and (d / CONFIG).is_file():
                    present[d.name] = (d / CONFIG).stat().st_mtime
            except OSError:
                continue
        for name in [n for n in self._watched if present.get(n) != self._watched[n]]:
            if name in self.manager:
                self.manager.unregister(name)
            del self._watched[name]
        for name, mtime in present.items():
            if name in self._watched or self._refused.get(name) == mtime or name in self.manager:
                continue
            try:
                self.load(name, name)
                self._watched[name] = mtime
                self._refused.pop(name, None)
            except AdapterError as e:
                self._refused[name] = mtime
                log.warning("--lora-dir: adapter %s refused (%s): %s", name, e.field, e)

    def watch(self, interval: float, stop: threading.Event) -> threading.Thread:
        def loop() -> None:
            while not stop.is_set():
                try:
                    self.scan()
                except Exception:  # the watch must outlive any one bad directory
                    log.exception("--lora-dir scan failed")
                stop.wait(interval)

        t = threading.Thread(target=loop, name="lora-watch", daemon=True)
        t.start()
        return t


def add_routes(app: Any, state: Any) -> None:
    """The load/unload endpoints, when VLLM_ALLOW_RUNTIME_LORA_UPDATING allows them."""
    from ..prepare import decode_json
    from ..protocol import APIError

    if not (runtime_updates_allowed() and state.args.enable_lora):
        return

    async def body_of(request: Request) -> dict:
        data = decode_json(await request.body())
        if not isinstance(data, dict):
            raise APIError(400, "the body must be a JSON object")
        return data

    def service() -> LoraService:
        if not state.ready or state.lora is None:
            raise APIError(503, "model is loading", headers={"Retry-After": "5"})
        return state.lora

    @app.post("/v1/load_lora_adapter")
    async def load(request: Request):
        svc, data = service(), await body_of(request)
        try:  # reading safetensors off the event loop: probes keep answering
            name = await asyncio.to_thread(svc.load, data.get("lora_name"), data.get("lora_path"))
        except AdapterError as e:
            raise APIError(400, str(e), e.field) from None
        return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload(request: Request):
        svc, data = service(), await body_of(request)
        try:
            svc.unload(data.get("lora_name"))
        except LookupError as e:
            raise APIError(404, str(e), "lora_name", code="model_not_found") from None
        return PlainTextResponse(f"Success: LoRA adapter '{data['lora_name']}' removed successfully.")
