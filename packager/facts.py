"""Resolved, complete facts the planner works from: manifests after validation and completion."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from packager.catalog import Accelerator

DEFAULT_RESOURCE_KEYS = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu", "intel": "gpu.intel.com/i915", "cpu": None}


@dataclass(frozen=True)
class Variant:
    """A pre-quantized checkpoint the planner may choose instead of the base weights."""

    name: str
    method: str  # awq | gptq | fp8
    bits: int
    source: dict


@dataclass(frozen=True)
class AdapterFacts:
    """A LoRA adapter, completed: its rank and modules known, where it is on this machine if it is."""

    name: str
    source: dict
    rank: int
    target_modules: tuple[str, ...]
    local_path: str | None = None


@dataclass(frozen=True)
class ModelFacts:
    name: str
    api_name: str
    license: str | None
    source: dict
    format: str
    family: str
    parameters: int
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    context_length: int
    objective: str
    precisions: tuple[str, ...]
    runtime_preference: str
    weight_dtype: str = "bfloat16"
    experts: int | None = None
    active_experts: int | None = None
    tie_word_embeddings: bool = False
    max_num_seqs: int | None = None
    variants: tuple[Variant, ...] = ()
    local_path: str | None = None  # weights on this machine (file or dir), when known
    task: str = "generate"  # generate | embed (an encoder: no KV cache, pooled vectors out)
    pooling: str | None = None  # embed: mean | cls | last
    normalize: bool = False  # embed: L2-normalised vectors
    adapters: tuple[AdapterFacts, ...] = ()  # LoRA adapters (manifests/adapters.py)

    @property
    def is_moe(self) -> bool:
        return bool(self.experts and self.experts > 1)

    @property
    def active_parameters(self) -> int:
        """Parameters touched per token: all but the idle experts' MLPs."""
        if not self.is_moe:
            return self.parameters
        expert_params = 3 * self.hidden_size * self.intermediate_size * self.layers
        idle = (self.experts - (self.active_experts or 1)) * expert_params
        return max(self.parameters - idle, 1)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "served_model_name": self.api_name,
            "license": self.license,
            "source": self.source,
            "format": self.format,
            "local_path": self.local_path,
            "architecture": {
                "family": self.family, "parameters": self.parameters, "layers": self.layers,
                "hidden_size": self.hidden_size, "attention_heads": self.attention_heads,
                "kv_heads": self.kv_heads, "head_dim": self.head_dim,
                "intermediate_size": self.intermediate_size, "vocab_size": self.vocab_size,
                "max_position_embeddings": self.max_positions, "experts": self.experts,
                "active_experts": self.active_experts, "weight_dtype": self.weight_dtype,
                "tie_word_embeddings": self.tie_word_embeddings,
            },
            "context_length": self.context_length,
            "task": self.task,
            "pooling": {"mode": self.pooling, "normalize": self.normalize} if self.task == "embed" else None,
            "serving": {
                "objective": self.objective, "precisions": list(self.precisions),
                "runtime": self.runtime_preference, "max_num_seqs": self.max_num_seqs,
                "quantized_variants": [asdict(v) for v in self.variants],
            },
            # Only when there are some: plans without adapters keep their exact old shape.
            **({"adapters": [{**asdict(a), "target_modules": list(a.target_modules)} for a in self.adapters]}
               if self.adapters else {}),
        }


@dataclass(frozen=True)
class Pool:
    name: str
    accelerator: Accelerator
    count: int
    nodes: int
    memory_gib: float
    cpu_cores: int | None
    cloud: str
    resource_key: str | None
    node_selector: dict = field(default_factory=dict)
    tolerations: tuple = ()

    @property
    def device_memory_gib(self) -> float:
        """Memory one device brings; a CPU 'device' is the node's host memory."""
        return self.accelerator.memory_gib or self.memory_gib

    def to_dict(self) -> dict:
        return {
            "name": self.name, "accelerator": self.accelerator.to_dict(), "count_per_node": self.count,
            "nodes": self.nodes, "cloud": self.cloud, "cpu_cores": self.cpu_cores, "memory_gib": self.memory_gib,
            "kubernetes": {"resource_key": self.resource_key, "node_selector": dict(self.node_selector),
                           "tolerations": [dict(t) for t in self.tolerations]},
        }


@dataclass(frozen=True)
class Hardware:
    name: str
    pools: tuple[Pool, ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "pools": [p.to_dict() for p in self.pools]}


def model_facts_from_dict(d: dict) -> ModelFacts:
    """Inverse of ModelFacts.to_dict (reads a plan.json's `model`)."""
    a, s = d["architecture"], d.get("serving", {})
    return ModelFacts(
        name=d["name"], api_name=d.get("served_model_name") or d["name"], license=d.get("license"),
        source=d.get("source", {}), format=d.get("format", "safetensors"), family=a.get("family") or "llama",
        parameters=a["parameters"], layers=a["layers"], hidden_size=a["hidden_size"],
        attention_heads=a["attention_heads"], kv_heads=a["kv_heads"], head_dim=a["head_dim"],
        intermediate_size=a["intermediate_size"], vocab_size=a["vocab_size"],
        max_positions=a["max_position_embeddings"], context_length=d["context_length"],
        objective=s.get("objective", "throughput"), precisions=tuple(s.get("precisions", ("bf16", "fp16", "fp32"))),
        runtime_preference=s.get("runtime", "auto"), weight_dtype=a.get("weight_dtype") or "bfloat16",
        experts=a.get("experts"), active_experts=a.get("active_experts"),
        tie_word_embeddings=bool(a.get("tie_word_embeddings")), max_num_seqs=s.get("max_num_seqs"),
        variants=tuple(Variant(v["name"], v["method"], v["bits"], v["source"]) for v in s.get("quantized_variants", [])),
        local_path=d.get("local_path"), task=d.get("task") or "generate",
        pooling=(d.get("pooling") or {}).get("mode"), normalize=bool((d.get("pooling") or {}).get("normalize")),
        adapters=tuple(AdapterFacts(a["name"], a["source"], a["rank"], tuple(a["target_modules"]), a.get("local_path"))
                       for a in d.get("adapters", [])),
    )
