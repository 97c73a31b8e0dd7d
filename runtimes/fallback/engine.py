"""The engine: schedule -> run -> postprocess, one step at a time.

Synchronous and single-threaded; ``async_engine.py`` runs it in a background
thread for the server. Tests drive it directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .block_manager import BlockManager
from .config import EngineConfig
from .detokenizer import IncrementalDetokenizer
from .runner import ModelRunner
from .processors import RowProcessor
from .sampling import Logprob, RequestSampler, SamplingParams
from .scheduler import ScheduledStep, Scheduler
from .sequence import Sequence


@dataclass
class RequestOutput:
    request_id: str
    text: str  # new text since the previous output
    token_ids: list[int]  # new tokens since the previous output
    finished: bool = False
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None  # finish_reason "error": this request failed, the others go on
    logprobs: list[Logprob] | None = None  # of token_ids, when the request asked
    # Prompt tokens 1.. (the first has none), on the first output, when asked (echo).
    prompt_logprobs: list[Logprob] | None = None


@dataclass
class StepStats:
    """What one step did, for metrics."""

    prompt_tokens: int = 0
    generation_tokens: int = 0
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    finished_reasons: list[str] = field(default_factory=list)
    # Prefix cache, in prompt tokens: looked up / found (vLLM's counters).
    prefix_queries: int = 0
    prefix_hits: int = 0


@dataclass
class _Extra:
    sampler: RequestSampler
    detok: IncrementalDetokenizer
    params: SamplingParams
    stop_ids: frozenset[int]
    prompt_logprobs: list[Logprob] | None = None  # filled by the runner, chunk by chunk
    prompt_sent: bool = False


class LLMEngine:
    def __init__(self, runner: ModelRunner, tokenizer: Any, cfg: EngineConfig, eos_token_ids: tuple[int, ...] = ()):
        self.runner = runner
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.eos_token_ids = tuple(eos_token_ids)
        self.blocks = BlockManager(cfg.kv_blocks, cfg.block_size, cfg.enable_prefix_caching)
        self.scheduler = Scheduler(cfg.max_num_seqs, cfg.max_model_len, cfg.prefill_chunk, self.blocks, cfg.max_loras)
        self.lora = runner.lora  # lora.manager.LoraManager, or None
        self._seed_counter = cfg.seed
        self.last_stats = StepStats()

    def add_request(self, request_id: str, prompt_ids: list[int], params: SamplingParams, arrival_time: float | None = None) -> None:
        stop_ids = set(params.stop_token_ids)
        if not params.ignore_eos:
            stop_ids.update(self.eos_token_ids)
        # Unseeded random requests draw distinct seeds from the engine seed.
        self._seed_counter += 1
        seq = Sequence(request_id, list(prompt_ids), params.max_tokens)
        if params.lora_name is not None:
            if self.lora is None:
                raise ValueError(f"this server serves no LoRA adapters (model {params.lora_name!r})")
            seq.lora = self.lora.acquire(params.lora_name)  # an AdapterError is a ValueError: a 400
        if arrival_time is not None:
            seq.arrival_time = arrival_time
        processor = None
        if params.processed:
            vocab = self.runner.vocab_size
            matcher = None
            if params.guide is not None:
                from .guided import Matcher

                matcher = Matcher(params.guide, vocab)
            processor = RowProcessor(params, seq.prompt_ids, frozenset(stop_ids), vocab, matcher)
        # Prompt logprobs need every prompt row computed: no prefix-cache hit.
        seq.use_prefix_cache = params.prompt_logprobs is None
        seq.extra = _Extra(
            sampler=RequestSampler(params, self._seed_counter, processor),
            detok=IncrementalDetokenizer(self.tokenizer, params.stop),
            params=params,
            stop_ids=frozenset(stop_ids),
            prompt_logprobs=[] if params.prompt_logprobs is not None else None,
        )
        self.scheduler.add(seq)

    def abort(self, request_id: str) -> RequestOutput | None:
        seq = self.scheduler.abort(request_id)
        if seq is None:
            return None
        return self._output(seq, [])

    def has_work(self) -> bool:
        return self.scheduler.has_work()

    def step(self) -> list[RequestOutput]:
        q0, h0 = self.blocks.queries, self.blocks.hits
        step = self.scheduler.schedule()
        self.last_stats = StepStats(prefix_queries=self.blocks.queries - q0, prefix_hits=self.blocks.hits - h0)
        self.runner.kv.zero_blocks(self.blocks.pop_fresh())
        if step.empty:
            return []
        seqs, tokens = self.runner.run(step)
        return self._postprocess(step, seqs, tokens)

    def _postprocess(self, step: ScheduledStep, seqs: list[Sequence], tokens: list[int]) -> list[RequestOutput]:
        now = time.monotonic()
        stats = self.last_stats
        # Cached prompt tokens count as processed, as in vLLM's prompt_tokens.
        stats.prompt_tokens = sum(c.length for c in step.prefill) + stats.prefix_hits
        self.scheduler.advance(step)
        outputs = []
        for seq, tok in zip(seqs, tokens):
            try:
                outputs.append(self._postprocess_one(seq, tok, now, stats))
            except Exception as e:  # e.g. a tokenizer that cannot decode: fail this request alone
                self.scheduler.finish(seq, "error")
                outputs.append(RequestOutput(seq.request_id, "", [], True, "error", seq.prompt_len,
                                             len(seq.output_ids), error=f"{type(e).__name__}: {e}"))
        return outputs

    def _postprocess_one(self, seq: Sequence, tok: int, now: float, stats: StepStats) -> RequestOutput:
        ex: _Extra = seq.extra
        seq.output_ids.append(tok)
        stats.generation_tokens += 1
        if seq.first_token_time is None:
            seq.first_token_time = now
            stats.ttft.append(now - seq.arrival_time)
        else:
            stats.itl.append(now - seq.last_token_time)
        seq.last_token_time = now
        if not ex.sampler.accept(tok):
            raise ValueError(f"token {tok} is outside the request's grammar")
        reason = None
        if tok in ex.stop_ids:
            reason = "stop"  # its logprob stays listed, as vLLM's (lm-eval drops the last token's)
        else:
            ex.detok.add(tok)
            if ex.detok.stopped or ex.sampler.done:
                reason = "stop"
            elif len(seq.output_ids) >= seq.max_tokens or seq.total_len >= self.cfg.max_model_len:
                reason = "length"
        if reason is not None:
            self.scheduler.finish(seq, reason)
            stats.e2e.append(now - seq.arrival_time)
            stats.finished_reasons.append(reason)
        return self._output(seq, [tok])

    def _output(self, seq: Sequence, new_ids: list[int]) -> RequestOutput:
        ex: _Extra = seq.extra
        logprobs = prompt_logprobs = None
        if ex.params.logprobs is not None:
            logprobs, ex.sampler.logprobs = ex.sampler.logprobs, []
        if ex.prompt_logprobs is not None and not ex.prompt_sent:
            prompt_logprobs, ex.prompt_sent = ex.prompt_logprobs, True
        return RequestOutput(
            request_id=seq.request_id,
            text=ex.detok.take(final=seq.finished),
            token_ids=new_ids,
            finished=seq.finished,
            finish_reason=seq.finish_reason,
            prompt_tokens=seq.prompt_len,
            completion_tokens=len(seq.output_ids),
            logprobs=logprobs,
            prompt_logprobs=prompt_logprobs,
        )

    # -- gauges -------------------------------------------------------------
    @property
    def num_running(self) -> int:
        return self.scheduler.num_running

    @property
    def num_waiting(self) -> int:
        return self.scheduler.num_waiting

    @property
    def num_free_slots(self) -> int:
        """Sequences that could start now, as far as --max-num-seqs goes."""
        return self.cfg.max_num_seqs - self.scheduler.num_running

    def kv_usage(self) -> float:
        """Fraction of KV blocks in use (vllm:kv_cache_usage_perc)."""
        return self.blocks.usage()
