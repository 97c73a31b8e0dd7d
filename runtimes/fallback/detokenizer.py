"""Incremental detokenization and stop-string handling for one request.

Text is decoded over a short window of tokens (a prefix already emitted plus
the new ones) so multi-byte characters and leading-space rules come out right
without re-decoding the whole output each step. Stop strings are searched in
the text produced so far; text that could still become a stop string is held
back from the stream until it is decided.
"""

from __future__ import annotations

from typing import Any


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Any, stop: tuple[str, ...] = ()):
        self.tok = tokenizer
        self.stop = tuple(s for s in stop if s)
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0
        self.text = ""  # all decoded text (may run past a stop string)
        self.emitted = 0  # characters of text already handed out
        self.stopped = False

    def _decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def add(self, token_id: int) -> None:
        """Append one token; sets ``stopped`` when a stop string appears."""
        self.ids.append(token_id)
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.ids[self.prefix_offset :])
        # An incomplete UTF-8 sequence decodes to U+FFFD: wait for more tokens.
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            before = len(self.text)
            self.text += full[len(prefix) :]
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            if self.stop:
                self._check_stop(before)

    def _check_stop(self, before: int) -> None:
        longest = max(len(s) for s in self.stop)
        start = max(0, before - longest + 1)
        hits = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self.stopped = True

    def _holdback(self) -> int:
        """How many trailing characters might be the start of a stop string."""
        if self.stopped or not self.stop:
            return 0
        keep = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(self.text)), 0, -1):
                if self.text.endswith(s[:n]):
                    keep = max(keep, n)
                    break
        return keep

    def take(self, final: bool = False) -> str:
        """Text not yet handed out; on ``final`` everything that is left."""
        if final and not self.stopped and self.read_offset < len(self.ids):
            # Tokens still waiting to complete a character: emit what they are.
            prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
            full = self._decode(self.ids[self.prefix_offset :])
            self.text += full[len(prefix) :]
            self.prefix_offset = self.read_offset = len(self.ids)
        end = len(self.text) if final else len(self.text) - self._holdback()
        if end <= self.emitted:
            return ""
        out = self.text[self.emitted : end]
        self.emitted = end
        return out
