"""Slot allocator for the per-slot KV cache. Pure Python: no torch import."""

from __future__ import annotations


class SlotPool:
    def __init__(self, num_slots: int):
        # Lowest slot first, so a lone request always lands in slot 0.
        self._free = list(range(num_slots - 1, -1, -1))
        self._used: set[int] = set()
        self.num_slots = num_slots

    def allocate(self) -> int | None:
        if not self._free:
            return None
        slot = self._free.pop()
        self._used.add(slot)
        return slot

    def free(self, slot: int) -> None:
        if slot not in self._used:
            raise ValueError(f"slot {slot} is not allocated")
        self._used.remove(slot)
        self._free.append(slot)
        self._free.sort(reverse=True)

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return len(self._used)

    def usage(self) -> float:
        return self.num_used / self.num_slots if self.num_slots else 0.0
