"""Per-request sampling parameters and the sampler.

Greedy (temperature 0, or below 1e-5) is an argmax over fp32 logits. Otherwise temperature,
then top-k, then top-p, then min-p, then a draw from a per-request ``torch.Generator`` so a
request with a seed gets the same text whatever else is running.

Rows that ask for logit bias, penalties, min_tokens or a grammar are changed
in place first (``processors.py``), only those rows: the plain batch path is
the one argmax it always was. Logprobs are of the raw logits (as vLLM's
default), taken before any of that, for the rows that ask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

# Temperatures below this sample greedily, as in vLLM: dividing logits by a
# vanishing temperature overflows to inf and makes the draw fail.
_GREEDY_BELOW = 1e-5
# The sampler compares top_p with fp32 probabilities: a top_p that rounds to
# 0 in fp32 (below about 7e-46) would drop every token and fail the draw.
MIN_TOP_P = float(torch.finfo(torch.float32).tiny)


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1  # -1 or 0: disabled
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    min_p: float = 0.0
    min_tokens: int = 0  # eos and stop_token_ids are masked until this many tokens
    logit_bias: tuple[tuple[int, float], ...] = ()
    logprobs: int | None = None  # alternatives per sampled token (0: the token's own only)
    prompt_logprobs: int | None = None  # the same for every prompt token (echo)
    guide: Any = field(default=None, compare=False)  # a compiled grammar (guided.py)
    # The LoRA adapter to run (vLLM's LoRARequest); here so the request path needs no new argument.
    lora_name: str | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError("temperature must be a finite number >= 0")
        if not (math.isfinite(self.top_p) and MIN_TOP_P <= self.top_p <= 1):
            raise ValueError(f"top_p must be in [{MIN_TOP_P:.3g}, 1]")
        if self.top_k < -1:
            raise ValueError("top_k must be -1 (disabled) or >= 0")
        if not (math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0):
            raise ValueError("repetition_penalty must be a finite number > 0")
        for name in ("presence_penalty", "frequency_penalty"):
            if not (math.isfinite(getattr(self, name)) and -2 <= getattr(self, name) <= 2):
                raise ValueError(f"{name} must be in [-2, 2]")
        if not (math.isfinite(self.min_p) and 0 <= self.min_p <= 1):
            raise ValueError("min_p must be in [0, 1]")
        if not 0 <= self.min_tokens <= self.max_tokens:
            raise ValueError("min_tokens must be in [0, max_tokens]")

    @property
    def processed(self) -> bool:
        """Whether this request changes its logits before the draw."""
        return bool(self.presence_penalty or self.frequency_penalty or self.repetition_penalty != 1
                    or self.min_tokens or self.logit_bias or self.guide is not None)

    @property
    def greedy(self) -> bool:
        return self.temperature < _GREEDY_BELOW


Logprob = tuple[int, float, list[tuple[int, float]]]  # token, its logprob, the top alternatives


def logprob_entry(logprobs: torch.Tensor, token: int, k: int) -> Logprob:
    """``token``'s logprob in one row of log-softmaxed logits, and the top ``k``."""
    top = torch.topk(logprobs, k) if k else None
    alts = list(zip(top.indices.tolist(), top.values.tolist())) if top is not None else []
    return token, float(logprobs[token]), alts


class RequestSampler:
    """Holds the generator of one request, its logits processor (None for
    plain requests) and the logprobs of tokens drawn but not yet reported."""

    def __init__(self, params: SamplingParams, fallback_seed: int, processor: Any = None):
        self.params = params
        self.processor = processor
        self.logprobs: list[Logprob] = []
        self.generator: torch.Generator | None = None
        if not params.greedy:
            self.generator = torch.Generator(device="cpu")
            self.generator.manual_seed(params.seed if params.seed is not None else fallback_seed)

    def sample(self, logits: torch.Tensor) -> int:
        """logits: fp32 [vocab] for one sequence."""
        p = self.params
        if p.greedy:
            return int(torch.argmax(logits))
        logits = logits / p.temperature
        if p.top_k > 0 and p.top_k < logits.shape[-1]:
            kth = torch.topk(logits, p.top_k).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if not bool(torch.isfinite(probs).all()):  # NaN logits: no distribution to draw from
            return int(torch.argmax(torch.nan_to_num(logits, nan=float("-inf"))))
        if p.top_p < 1.0:
            sorted_probs, idx = torch.sort(probs, descending=True)
            cum = torch.cumsum(sorted_probs, dim=-1)
            # Keep the smallest prefix whose mass reaches top_p (at least one).
            drop = (cum - sorted_probs) >= p.top_p
            drop[0] = False  # the most likely token always stays: the draw cannot be empty
            sorted_probs = sorted_probs.masked_fill(drop, 0.0)
            if p.min_p > 0:
                sorted_probs = sorted_probs.masked_fill(sorted_probs < p.min_p * sorted_probs[0], 0.0)
            choice = torch.multinomial(sorted_probs, 1, generator=self.generator)
            return int(idx[choice])
        if p.min_p > 0:
            probs = probs.masked_fill(probs < p.min_p * probs.max(), 0.0)
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def record(self, logprobs: torch.Tensor, token: int) -> None:
        """Keep the drawn token's raw logprob and the top alternatives."""
        self.logprobs.append(logprob_entry(logprobs, token, self.params.logprobs or 0))

    def accept(self, token: int) -> bool:
        """After the draw: the processor's state moves on; False when its
        grammar refuses the token (the request then fails alone)."""
        return self.processor is None or self.processor.accept(token)

    @property
    def done(self) -> bool:
        """The grammar is complete: nothing more may follow."""
        return self.processor is not None and self.processor.done


def sample_batch(logits: torch.Tensor, samplers: list[RequestSampler]) -> list[int]:
    """One token per row. Greedy rows share one argmax over the batch."""
    want = [i for i, s in enumerate(samplers) if s.params.logprobs is not None]
    raw = torch.log_softmax(logits[want], dim=-1) if want else None
    for i, s in enumerate(samplers):
        if s.processor is not None:
            try:
                s.processor.apply(logits[i])  # a view: changes this row in place
            except Exception as e:  # this request's processor failed: it alone fails
                _failures.append((s.params, e))
    out = _draw(logits, samplers)
    for k, i in enumerate(want):
        samplers[i].record(raw[k], out[i])
    return out


def _draw(logits: torch.Tensor, samplers: list[RequestSampler]) -> list[int]:
    greedy = [i for i, s in enumerate(samplers) if s.params.greedy]
    out = [0] * len(samplers)
    if greedy:
        if len(greedy) == len(samplers):
            return torch.argmax(logits, dim=-1).tolist()
        ids = torch.argmax(logits[greedy], dim=-1).tolist()
        for i, t in zip(greedy, ids):
            out[i] = t
    for i, s in enumerate(samplers):
        if not s.params.greedy:
            row = logits[i].cpu()  # the generators live on the CPU
            try:
                out[i] = s.sample(row)
            except Exception as e:  # one request's draw failed: it alone fails (see take_failures)
                _failures.append((s.params, e))
                out[i] = int(torch.argmax(torch.nan_to_num(row, nan=float("-inf"))))
    return out


# Draws that failed since the last take_failures(), by the request's params
# object (the engine thread samples and takes; no lock needed).
_failures: list[tuple[SamplingParams, Exception]] = []


def take_failures() -> list[tuple[SamplingParams, Exception]]:
    """The requests whose draw failed in the steps since the last call; the
    async engine fails each of them alone instead of the whole batch."""
    out = list(_failures)
    _failures.clear()
    return out
