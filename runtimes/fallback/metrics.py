"""Prometheus metrics with vLLM's names, in a registry of our own so several
servers in one process (tests) do not collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .engine import StepStats

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
_E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0)


class Metrics:
    def __init__(self, model_name: str):
        self.registry = CollectorRegistry()
        r, labels = self.registry, ["model_name"]
        self.running = Gauge("vllm:num_requests_running", "Requests in the running batch.", labels, registry=r).labels(model_name)
        self.waiting = Gauge("vllm:num_requests_waiting", "Requests waiting for a KV slot.", labels, registry=r).labels(model_name)
        self.kv_usage = Gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage: fraction of KV blocks in use (1 = full).", labels, registry=r
        ).labels(model_name)
        self.prefix_queries = Counter(
            "vllm:prefix_cache_queries", "Prompt tokens looked up in the prefix cache.", labels, registry=r
        ).labels(model_name)
        self.prefix_hits = Counter(
            "vllm:prefix_cache_hits", "Prompt tokens found in the prefix cache.", labels, registry=r
        ).labels(model_name)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Prefill tokens processed.", labels, registry=r).labels(model_name)
        self.generation_tokens = Counter("vllm:generation_tokens", "Tokens generated.", labels, registry=r).labels(model_name)
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds", "Time to first token.", labels, buckets=_LATENCY_BUCKETS, registry=r
        ).labels(model_name)
        self.itl = Histogram(
            "vllm:inter_token_latency_seconds", "Time between generated tokens.", labels, buckets=_LATENCY_BUCKETS, registry=r
        ).labels(model_name)
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds", "Request latency from arrival to finish.", labels, buckets=_E2E_BUCKETS, registry=r
        ).labels(model_name)
        self._success = Counter(
            "vllm:request_success", "Finished requests by reason.", ["model_name", "finished_reason"], registry=r
        )
        self._model_name = model_name
        # vLLM's LoRA gauge: one label set, the time of the last update as its value.
        self._lora = Gauge("vllm:lora_requests_info", "Running stats on LoRA requests.",
                           ["max_lora", "running_lora_adapters", "waiting_lora_adapters"], registry=r)

    def record_cache_config(self, block_size: int, num_gpu_blocks: int, cache_dtype: str, prefix_caching: bool) -> None:
        """vLLM's `vllm:cache_config_info`: an info gauge (value 1) whose labels
        are the KV cache's shape. The endpoint picker reads block_size and
        num_gpu_blocks from it to size its KV-cache and prefix scorers; set
        once, when the engine has built its cache (vLLM sets it at start too)."""
        labels = {"block_size": str(block_size), "num_gpu_blocks": str(num_gpu_blocks),
                  "cache_dtype": cache_dtype, "enable_prefix_caching": str(prefix_caching), "engine": "0"}
        Gauge("vllm:cache_config_info", "Information of the LLMEngine CacheConfig", list(labels),
              registry=self.registry).labels(**labels).set(1)

    def record_step(self, stats: StepStats, running: int, waiting: int, kv_usage: float) -> None:
        self.running.set(running)
        self.waiting.set(waiting)
        self.kv_usage.set(kv_usage)
        if stats.prompt_tokens:
            self.prompt_tokens.inc(stats.prompt_tokens)
        if stats.prefix_queries:
            self.prefix_queries.inc(stats.prefix_queries)
            self.prefix_hits.inc(stats.prefix_hits)
        if stats.generation_tokens:
            self.generation_tokens.inc(stats.generation_tokens)
        for v in stats.ttft:
            self.ttft.observe(v)
        for v in stats.itl:
            self.itl.observe(v)
        for v in stats.e2e:
            self.e2e.observe(v)
        for reason in stats.finished_reasons:
            self._success.labels(self._model_name, reason).inc()

    def record_finish(self, reason: str) -> None:
        """Aborted ("abort") and failed ("error") requests, which no step
        finishes: vLLM counts them under the same counter by reason."""
        self._success.labels(self._model_name, reason).inc()

    def record_lora(self, max_lora: int, running: list[str], waiting: list[str]) -> None:
        import time

        self._lora.clear()
        self._lora.labels(str(max_lora), ",".join(running), ",".join(waiting)).set(time.time())

    def render(self) -> bytes:
        return generate_latest(self.registry)
