"""Which adapters the server knows, which are loaded, which sit in the active slots.

Three tiers, as vLLM's: *registered* names (``--lora-modules``, the load endpoint, the
watched directory) map to a path; up to ``--max-cpu-loras`` of them are *loaded* (CPU
tensors, least recently used evicted first and read again from disk when asked for); up
to ``--max-loras`` are *active*, copied into the stacked slots the batch multiplies by.
The scheduler admits a sequence only while its adapter is active or a slot can be freed,
so a step never needs more slots than there are.

A request holds its ``Adapter`` object from admission to finish, so unloading a name
mid-request neither fails nor changes that request; every load gets a fresh ``uid``,
which keys both the slots and the prefix cache (a reloaded name never meets its old
blocks).

Thread-safe: the HTTP thread registers and lists, the engine thread acquires and activates.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .adapter import Adapter, AdapterError, Shapes, load_adapter
from .slots import SlotWeights

log = logging.getLogger(__name__)
_uids = itertools.count(1)


@dataclass(frozen=True)
class LoraConfig:
    """vLLM's flags: ``--max-loras`` slots, ``--max-lora-rank``, ``--max-cpu-loras`` loaded."""

    max_loras: int = 1
    max_lora_rank: int = 16
    max_cpu_loras: int | None = None  # None: max_loras, as vLLM

    def __post_init__(self) -> None:
        if self.max_loras < 1 or self.max_lora_rank < 1:
            raise ValueError("--max-loras and --max-lora-rank must be >= 1")
        if self.cpu_loras < self.max_loras:
            raise ValueError(f"--max-cpu-loras ({self.cpu_loras}) must be >= --max-loras ({self.max_loras})")

    @property
    def cpu_loras(self) -> int:
        return self.max_cpu_loras if self.max_cpu_loras is not None else self.max_loras


class LoraManager:
    def __init__(self, shapes: Shapes, cfg: LoraConfig, dtype: torch.dtype = torch.float32, device: str = "cpu"):
        self.shapes, self.cfg = shapes, cfg
        self.slots = SlotWeights(shapes, cfg.max_loras, cfg.max_lora_rank, dtype, device)
        self._lock = threading.RLock()
        self._paths: dict[str, str] = {}  # registered name -> directory
        self._loaded: OrderedDict[str, Adapter] = OrderedDict()  # LRU, most recent last
        self._slot_uid: list[int | None] = [None] * cfg.max_loras
        self._slot_used: OrderedDict[int, None] = OrderedDict((i, None) for i in range(cfg.max_loras))

    # -- the registry (HTTP thread) ------------------------------------------
    def register(self, name: str, path: str | Path) -> Adapter:
        """Load and check ``path`` now (a bad adapter fails here, not in a request) and serve it
        as ``name``; a name already registered is refused (unload it first, as vLLM)."""
        with self._lock:
            if name in self._paths:
                raise AdapterError("lora_name", f"an adapter named {name!r} is already loaded")
        adapter = self._read(name, str(path))
        with self._lock:
            if name in self._paths:
                raise AdapterError("lora_name", f"an adapter named {name!r} is already loaded")
            self._paths[name] = adapter.path
            self._remember(adapter)
        log.info("LoRA adapter %s: rank %d, %s (%s)", name, adapter.rank, "/".join(adapter.target_modules), adapter.path)
        return adapter

    def unregister(self, name: str) -> None:
        with self._lock:
            if self._paths.pop(name, None) is None:
                raise AdapterError("lora_name", f"no adapter named {name!r} is loaded")
            self._loaded.pop(name, None)
        log.info("LoRA adapter %s unloaded", name)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._paths)

    def path(self, name: str) -> str | None:
        with self._lock:
            return self._paths.get(name)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._paths

    # -- the engine thread -----------------------------------------------------
    def acquire(self, name: str) -> Adapter:
        """The loaded adapter for ``name`` (read again from disk if the CPU LRU let it go)."""
        with self._lock:
            path = self._paths.get(name)
            if path is None:
                raise AdapterError("model", f"The model `{name}` does not exist.")
            hit = self._loaded.get(name)
            if hit is not None:
                self._loaded.move_to_end(name)
                return hit
        adapter = self._read(name, path)
        with self._lock:
            if self._paths.get(name) == path:
                self._remember(adapter)
        return adapter

    def activate(self, adapters: list[Adapter]) -> dict[int, int]:
        """Put every adapter of the coming step into a slot; returns uid -> slot. Slots whose
        adapter the step does not use are reused, least recently used first."""
        want = {a.uid: a for a in adapters}
        if len(want) > self.cfg.max_loras:
            raise RuntimeError(f"a step with {len(want)} adapters exceeds --max-loras {self.cfg.max_loras}")
        out: dict[int, int] = {}
        for uid in want:
            if uid in self._slot_uid:
                out[uid] = self._slot_uid.index(uid)
        for uid, adapter in want.items():
            if uid in out:
                continue
            slot = next(s for s in self._slot_used if self._slot_uid[s] not in want)
            self.slots.write(slot, adapter)
            self._slot_uid[slot] = uid
            out[uid] = slot
        for slot in out.values():
            self._slot_used.move_to_end(slot)
        return out

    # -- internals -------------------------------------------------------------
    def _read(self, name: str, path: str) -> Adapter:
        adapter = load_adapter(name, path, self.shapes)
        if adapter.rank > self.cfg.max_lora_rank:
            raise AdapterError("r", f"adapter {name} has rank {adapter.rank}, above this server's "
                                    f"--max-lora-rank {self.cfg.max_lora_rank}")
        return replace(adapter, uid=next(_uids))

    def _remember(self, adapter: Adapter) -> None:
        self._loaded[adapter.name] = adapter
        self._loaded.move_to_end(adapter.name)
        while len(self._loaded) > self.cfg.cpu_loras:
            old, _ = self._loaded.popitem(last=False)
            log.info("LoRA adapter %s evicted from memory (--max-cpu-loras %d)", old, self.cfg.cpu_loras)

    @property
    def num_loaded(self) -> int:
        with self._lock:
            return len(self._loaded)
