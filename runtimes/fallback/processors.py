"""Per-request logits processing: logit bias, presence/frequency/repetition
penalties (vLLM's definitions), min_tokens and a grammar's token mask.

Built only for requests that ask (``SamplingParams.processed``); the sampler
applies it to that request's row alone, in place, before the draw.
"""

from __future__ import annotations

from typing import Any

import torch

from .sampling import SamplingParams


class RowProcessor:
    def __init__(self, params: SamplingParams, prompt_ids: list[int], stop_ids: frozenset[int], vocab_size: int,
                 matcher: Any = None):
        self.p = params
        self.vocab_size = vocab_size
        self.prompt_ids = prompt_ids
        self.matcher = matcher  # guided.Matcher or None
        self.generated = 0
        self.counts: torch.Tensor | None = None  # output token counts, when a penalty needs them
        self.seen: torch.Tensor | None = None  # prompt + output tokens, for the repetition penalty
        self.stop = torch.tensor(sorted(t for t in stop_ids if 0 <= t < vocab_size), dtype=torch.long)
        if params.logit_bias:
            self.bias_ids = torch.tensor([t for t, _ in params.logit_bias], dtype=torch.long)
            self.bias = torch.tensor([b for _, b in params.logit_bias], dtype=torch.float32)

    def apply(self, row: torch.Tensor) -> None:
        p = self.p
        if p.logit_bias:
            row.index_add_(0, self.bias_ids.to(row.device), self.bias.to(row.device))
        if p.repetition_penalty != 1:
            seen = self._seen().to(row.device)
            picked = row[seen]
            row[seen] = torch.where(picked > 0, picked / p.repetition_penalty, picked * p.repetition_penalty)
        if p.frequency_penalty or p.presence_penalty:
            counts = self._counts().to(row.device)
            row -= p.frequency_penalty * counts + p.presence_penalty * (counts > 0).float()
        if self.matcher is not None:
            self.matcher.mask(row)
        if self.generated < p.min_tokens and self.stop.numel():
            stop = self.stop.to(row.device)
            kept = row[stop].clone()
            row[stop] = float("-inf")
            if self.matcher is not None and not bool(torch.isfinite(row).any()):
                row[stop] = kept  # the grammar can only end here: it wins over min_tokens

    def _counts(self) -> torch.Tensor:
        if self.counts is None:
            self.counts = torch.zeros(self.vocab_size, dtype=torch.float32)
        return self.counts

    def _seen(self) -> torch.Tensor:
        if self.seen is None:
            self.seen = torch.zeros(self.vocab_size, dtype=torch.bool)
            ids = torch.tensor(self.prompt_ids, dtype=torch.long)
            self.seen[ids[(ids >= 0) & (ids < self.vocab_size)]] = True
        return self.seen

    def accept(self, token: int) -> bool:
        self.generated += 1
        if 0 <= token < self.vocab_size:
            if self.counts is not None:
                self.counts[token] += 1
            if self.seen is not None:
                self.seen[token] = True
        return self.matcher is None or self.matcher.accept(token)

    @property
    def done(self) -> bool:
        return self.matcher is not None and self.matcher.done
