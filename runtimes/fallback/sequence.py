"""State of one request inside the engine. Pure Python: no torch import."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any


class Status(enum.Enum):
    WAITING = "waiting"  # queued, no KV blocks yet
    PREFILLING = "prefilling"  # has its blocks, prompt partly in the cache
    DECODING = "decoding"  # prompt in the cache, generating
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    request_id: str
    prompt_ids: list[int]
    max_tokens: int
    output_ids: list[int] = field(default_factory=list)
    status: Status = Status.WAITING
    block_table: list[int] | None = None  # the BlockManager's list for it, while running
    num_computed: int = 0  # tokens whose K/V are in the cache
    finish_reason: str | None = None
    arrival_time: float = field(default_factory=time.monotonic)
    first_token_time: float | None = None
    last_token_time: float | None = None
    use_prefix_cache: bool = True  # False when every prompt row must be computed (prompt logprobs)
    lora: Any = None  # the LoRA adapter it runs (lora.adapter.Adapter), None for the base model
    # Engine-side per-request helpers (sampler, detokenizer); opaque here.
    extra: Any = None

    @property
    def prompt_len(self) -> int:
        return len(self.prompt_ids)

    @property
    def total_len(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def last_token(self) -> int:
        return self.output_ids[-1] if self.output_ids else self.prompt_ids[-1]

    @property
    def cache_salt(self) -> bytes | None:
        """What its prefix-cache blocks are keyed by besides the tokens: the adapter's load."""
        return None if self.lora is None else f"lora:{self.lora.uid}".encode()

    @property
    def finished(self) -> bool:
        return self.status is Status.FINISHED
