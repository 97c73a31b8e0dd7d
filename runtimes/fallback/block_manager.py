"""Paged KV-cache bookkeeping with prefix caching. Pure Python: no torch import.

The cache is ``num_blocks`` blocks of ``block_size`` token positions; a
sequence owns a block table (its blocks in order). A block whose positions are
all computed gets a content hash chained from its parent's (vLLM's scheme), so
a later prompt with the same prefix (system prompt, few-shot examples, the
earlier turns of a chat) maps the same blocks and skips their prefill.

Freed blocks keep their hash and wait in an LRU queue: they are reused on a
hit and evicted, oldest first, only when a fresh block is needed.

Admission reserves every block a sequence may need (prompt + max_tokens, capped
by the context), so a running sequence never runs out and nothing is
preempted; sharing cached blocks is what lets more sequences in.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field


def block_hash(parent: bytes | None, tokens: tuple[int, ...]) -> bytes:
    h = hashlib.blake2b(parent or b"", digest_size=16)
    h.update(b",".join(str(t).encode() for t in tokens))
    return h.digest()


@dataclass
class Block:
    id: int
    ref_count: int = 0
    hash: bytes | None = None


@dataclass
class Allocation:
    """One sequence's share of the cache."""

    table: list[int] = field(default_factory=list)
    reserved: int = 0  # blocks promised but not yet taken
    hashes: list[bytes] = field(default_factory=list)  # of its full, registered blocks
    salt: bytes | None = None  # the first block's parent (match_prefix)


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        if num_blocks < 1 or block_size < 1:
            raise ValueError("num_blocks and block_size must be >= 1")
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        # Blocks with ref_count 0, least recently freed first. Lowest ids
        # first at the start, so a lone sequence gets consecutive blocks.
        self._free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self._cached: dict[bytes, int] = {}
        self._reserved = 0
        self.seqs: dict[str, Allocation] = {}
        # Prefix-cache counters in tokens, as vLLM's prefix_cache_queries/hits.
        self.queries = 0
        self.hits = 0
        # Blocks handed out since the last ``pop_fresh``: the runner zeros
        # them, so a sequence's unwritten positions hold zeros, never stale
        # (possibly non-finite) K/V, and decode attention needs no V mask.
        self._fresh: list[int] = []

    # -- sizes --------------------------------------------------------------
    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    @property
    def num_free(self) -> int:
        """Blocks not promised to anyone (cached-but-unused ones count: evictable)."""
        return len(self._free) - self._reserved

    def usage(self) -> float:
        used = self.num_blocks - len(self._free)
        return used / self.num_blocks

    # -- admission ----------------------------------------------------------
    def match_prefix(self, prompt: list[int], salt: bytes | None = None) -> list[int]:
        """Cached blocks for the longest prefix of whole blocks, leaving at
        least the last prompt token to compute (its logits are needed).
        ``salt`` seeds the hash chain: a LoRA adapter's blocks hold other K/V
        than the base model's for the same tokens, so they never match them."""
        if not self.caching:
            return []
        found: list[int] = []
        parent = salt
        bs = self.block_size
        for i in range((len(prompt) - 1) // bs):
            h = block_hash(parent, tuple(prompt[i * bs : (i + 1) * bs]))
            bid = self._cached.get(h)
            if bid is None:
                break
            found.append(bid)
            parent = h
        return found

    def admit(self, seq_id: str, prompt: list[int], max_total_tokens: int, hit: list[int] | None = None,
              salt: bytes | None = None) -> int | None:
        """Map cached prefix blocks (``hit``: ``match_prefix(prompt)`` if the
        caller has it) and reserve the rest for ``seq_id``. Returns the number
        of prompt tokens already in the cache, or None (nothing changed) when
        the blocks are not there."""
        if hit is None:
            hit = self.match_prefix(prompt, salt)
        need = self.blocks_for(max_total_tokens) - len(hit)
        # Hit blocks sitting in the free queue stop being evictable.
        idle_hits = sum(1 for b in hit if self.blocks[b].ref_count == 0)
        if need > self.num_free - idle_hits:
            return None
        alloc = Allocation(salt=salt)
        for bid in hit:
            blk = self.blocks[bid]
            if blk.ref_count == 0:
                del self._free[bid]
            blk.ref_count += 1
            alloc.table.append(bid)
            alloc.hashes.append(blk.hash)  # type: ignore[arg-type]
        alloc.reserved = need
        self._reserved += need
        self.seqs[seq_id] = alloc
        if self.caching:
            self.queries += len(prompt)
            self.hits += len(hit) * self.block_size
        return len(hit) * self.block_size

    def ensure(self, seq_id: str, num_tokens: int) -> list[int]:
        """Grow ``seq_id``'s table to hold ``num_tokens`` positions (from its reservation)."""
        alloc = self.seqs[seq_id]
        while len(alloc.table) * self.block_size < num_tokens:
            if alloc.reserved == 0:
                raise RuntimeError(f"{seq_id} outgrew its reservation")
            alloc.reserved -= 1
            self._reserved -= 1
            alloc.table.append(self._take(alloc.table[-1] + 1 if alloc.table else None))
        return alloc.table

    def _take(self, after: int | None = None) -> int:
        """A free block: ``after`` (the block following the table's last one)
        when it is free and holds no cached prefix, so a sequence's table
        stays consecutive and a lone decode reads its K/V as a view; else the
        least recently freed one."""
        blk = self.blocks[after] if after is not None and after < self.num_blocks else None
        if blk is not None and blk.ref_count == 0 and blk.hash is None and after in self._free:
            del self._free[after]
            bid = after
        else:
            bid, _ = self._free.popitem(last=False)  # least recently freed
        blk = self.blocks[bid]
        if blk.hash is not None:  # evict: its content is about to be overwritten
            if self._cached.get(blk.hash) == bid:
                del self._cached[blk.hash]
            blk.hash = None
        blk.ref_count = 1
        self._fresh.append(bid)
        return bid

    def pop_fresh(self) -> list[int]:
        """Blocks handed out since the last call (to be zeroed before they are read)."""
        fresh, self._fresh = self._fresh, []
        return fresh

    # -- after a step -------------------------------------------------------
    def register(self, seq_id: str, tokens: list[int], num_computed: int) -> None:
        """Hash the blocks that ``num_computed`` positions have filled, so later
        prompts can share them. ``tokens``: the sequence's tokens so far."""
        if not self.caching:
            return
        alloc = self.seqs[seq_id]
        bs = self.block_size
        while len(alloc.hashes) < num_computed // bs:
            i = len(alloc.hashes)
            parent = alloc.hashes[-1] if alloc.hashes else alloc.salt
            h = block_hash(parent, tuple(tokens[i * bs : (i + 1) * bs]))
            alloc.hashes.append(h)
            bid = alloc.table[i]
            if h not in self._cached and self.blocks[bid].hash is None:
                self.blocks[bid].hash = h
                self._cached[h] = bid

    def free(self, seq_id: str) -> None:
        alloc = self.seqs.pop(seq_id, None)
        if alloc is None:
            return
        self._reserved -= alloc.reserved
        # Last blocks first into the queue: a prefix's head outlives its tail.
        for bid in reversed(alloc.table):
            blk = self.blocks[bid]
            blk.ref_count -= 1
            if blk.ref_count == 0:
                self._free[bid] = None
                if blk.hash is None:  # nothing worth keeping: reuse it first
                    self._free.move_to_end(bid, last=False)

    def needs_register(self, seq_id: str, num_computed: int) -> bool:
        """Whether ``register`` would hash a block now (lets callers skip building the token list)."""
        return self.caching and num_computed // self.block_size > len(self.seqs[seq_id].hashes)

    def table(self, seq_id: str) -> list[int]:
        return self.seqs[seq_id].table
