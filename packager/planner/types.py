"""The planner's value types: a candidate, its estimates, a profile, a rejection, the plan."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from packager import __version__
from packager.facts import Hardware, ModelFacts, Pool, Variant


@dataclass(frozen=True)
class PlanRequest:
    """Everything one planning run depends on: one frozen object, not a keyword list."""

    model: ModelFacts
    hardware: Hardware
    objective: str  # the objective to rank first
    model_ref: str | None = None  # model path/id written into engine argv (None: derive)
    max_model_len: int | None = None  # override the manifest's context
    only_profiles: tuple[str, ...] | None = None  # re-plan within these names (the image's)


@dataclass(frozen=True)
class Candidate:
    runtime: str  # vllm | triton | cpu
    precision: str  # fp32 | bf16 | fp16 | fp8 | awq-int4 | gptq-int4
    kv_cache_dtype: str  # auto | fp8
    tp: int
    pp: int
    objective: str
    pool: Pool
    variant: Variant | None = None
    pool_suffix: bool = False  # several pools: names carry the pool

    @property
    def devices(self) -> int:
        return self.tp * self.pp

    @property
    def nodes(self) -> int:
        return max(1, -(-self.devices // self.pool.count)) if self.pool.accelerator.is_gpu else 1

    @property
    def name(self) -> str:
        kv = "-kvfp8" if self.kv_cache_dtype == "fp8" else ""
        suffix = f"-{self.pool.name}" if self.pool_suffix else ""
        return f"{self.runtime}-{self.precision}{kv}-tp{self.tp}-pp{self.pp}-{self.objective}{suffix}"


@dataclass(frozen=True)
class Estimates:
    weights_bytes_per_device: int
    kv_cache_bytes_per_token: int  # whole model, one token (vLLM's formula)
    kv_cache_bytes_per_token_per_device: int
    activation_bytes_per_device: int
    memory_budget_bytes_per_device: int
    kv_cache_tokens: int
    concurrent_sequences: int
    decode_tokens_per_s: float  # batch 1
    decode_tokens_per_s_full_batch: float
    full_batch: int
    efficiency: float
    basis: str  # how the numbers were derived, in words
    non_torch_bytes_per_device: int = 0  # CUDA context, cuBLAS/NCCL buffers (vLLM counts them in its budget)
    cuda_graph_bytes_per_device: int = 0
    kv_cache_bytes_per_device: int = 0  # what is left for the KV cache: vLLM's "Available KV cache memory"
    margin_bytes_per_device: int = 0  # a profile fits with KV for one full sequence plus this
    device_memory_bytes: int = 0  # what the utilisation multiplies
    max_num_batched_tokens: int = 0  # the profiling run's token budget (vLLM)
    sequences_per_s: float = 0.0  # embedding models: sequences embedded per second at a full step
    lora_bytes_per_device: int = 0  # LoRA adapter slots (planner/adapters.py)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class NodeFill:
    """How many copies of one instance (tp x pp devices) run on the pool, and what that leaves idle."""

    replicas: int  # instances in the whole pool (pods, or LeaderWorkerSet groups)
    replicas_per_node: int  # 0 where one instance spans several nodes
    devices_in_use: int  # all nodes together
    idle_devices_per_node: int
    tokens_per_s_per_node: float  # replicas on one node x the instance's full-batch estimate
    how: str  # "pods": one pod per replica; "single": one instance (latency, cost)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Profile:
    candidate: Candidate
    max_model_len: int
    max_num_seqs: int
    gpu_memory_utilization: float
    estimates: Estimates
    engine: str
    engine_argv: tuple[str, ...]
    low_memory: bool = False
    notes: tuple[str, ...] = ()
    max_num_batched_tokens: int | None = None  # vLLM's prefill token budget (set in argv on low-memory profiles)
    fill: NodeFill | None = None  # set by the fill stage (planner/fill.py)

    @property
    def name(self) -> str:
        return self.candidate.name

    @property
    def runtime(self) -> str:
        return self.candidate.runtime

    def to_dict(self) -> dict:
        c = self.candidate
        return {
            "name": c.name, "runtime": c.runtime, "vendor": c.pool.accelerator.vendor, "pool": c.pool.name,
            "accelerator": c.pool.accelerator.key, "precision": c.precision, "kv_cache_dtype": c.kv_cache_dtype,
            "quantized_variant": c.variant.name if c.variant else None,
            # A variant's own checkpoint, pinned; no local path (the plan leaves this machine).
            "weights_source": ({k: v for k, v in c.variant.source.items() if k != "path"} if c.variant else None),
            "tensor_parallel_size": c.tp, "pipeline_parallel_size": c.pp, "nodes": c.nodes,
            "devices_per_node": c.devices if c.nodes == 1 else c.pool.count, "devices": c.devices,
            "max_model_len": self.max_model_len, "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "gpu_memory_utilization": self.gpu_memory_utilization, "objective": c.objective,
            "engine": self.engine, "engine_argv": list(self.engine_argv), "estimates": self.estimates.to_dict(),
            "low_memory": self.low_memory, "notes": list(self.notes),
            "fill": self.fill.to_dict() if self.fill else None,
        }


@dataclass(frozen=True)
class Rejection:
    name: str
    reasons: tuple[str, ...]
    candidate: Candidate | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class Plan:
    request: PlanRequest
    candidates: tuple[Profile, ...]  # ranked
    rejected: tuple[Rejection, ...]
    advice: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    why: str = ""  # one sentence: why the selected profile won

    @property
    def selected(self) -> Profile | None:
        return self.candidates[0] if self.candidates else None

    def profile(self, name: str) -> Profile | None:
        return next((p for p in self.candidates if p.name == name), None)

    def to_dict(self) -> dict:
        sel = self.selected
        return {
            "schema_version": 1,
            "packager_version": __version__,
            "objective": self.request.objective,
            "model_ref": self.request.model_ref,
            "model": self.request.model.to_dict(),
            "hardware": self.request.hardware.to_dict(),
            "selected": sel.to_dict() if sel else None,
            "why": self.why,
            "candidates": [p.to_dict() for p in self.candidates],
            "rejected": [r.to_dict() for r in self.rejected],
            "advice": list(self.advice),
            "notes": list(self.notes),
        }
