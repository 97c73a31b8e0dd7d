"""LoRA adapters in a profile: how many slots, of which rank, how much device memory, which flags.

vLLM keeps ``--max-loras`` adapters on each device in slots of ``--max-lora-rank`` (the smallest
rank vLLM accepts that holds the largest adapter) for every targeted linear of every layer; the
rest wait in host memory (``--max-cpu-loras``). Under tensor parallelism each slot is sharded as
the base linear is: column-parallel modules (q/k/v, gate/up) keep A whole and split B's output,
row-parallel ones (o, down) split A's input and keep B whole; pipeline stages hold their layers.
This planner serves every declared adapter in one batch: max_loras = max_cpu_loras = their count.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from packager.facts import ModelFacts
from packager.planner.types import Candidate
from packager.vllm.serve_argv import LoraSpec, lora_rank_for
from runtimes.layout import adapter_dir
from runtimes.lora_config import module_dims

_ROW_PARALLEL = ("o_proj", "down_proj")


@dataclass(frozen=True)
class AdapterPlan:
    max_loras: int
    max_lora_rank: int
    max_cpu_loras: int
    bytes_per_device: int


def adapter_plan(model: ModelFacts, c: Candidate, dtype_bytes: int) -> AdapterPlan | None:
    """None without adapters; raises nothing: a rank above vLLM's largest is a manifest error."""
    if not model.adapters:
        return None
    largest = max(a.rank for a in model.adapters)
    rank = (lora_rank_for(largest) or largest) if c.runtime == "vllm" else largest
    dims = module_dims(model.hidden_size, model.intermediate_size, model.attention_heads, model.kv_heads, model.head_dim)
    targets = sorted({m for a in model.adapters for m in a.target_modules})
    per_layer = 0
    for m in targets:
        d_in, d_out = dims[m]
        if m in _ROW_PARALLEL:
            per_layer += math.ceil(d_in / c.tp) + d_out
        else:
            per_layer += d_in + math.ceil(d_out / c.tp)
    n = len(model.adapters)
    per_slot = per_layer * rank * math.ceil(model.layers / c.pp) * dtype_bytes
    return AdapterPlan(max_loras=n, max_lora_rank=rank, max_cpu_loras=n, bytes_per_device=n * per_slot)


def lora_modules(model: ModelFacts, in_image: bool) -> tuple[tuple[str, str], ...]:
    """(name, where the engine reads it): the image's adapter directory (packager.adapter_files puts them
    there: baked, in the weights artifact, or downloaded into the claim), else this machine's copy or the Hub repo."""
    out = []
    for a in model.adapters:
        s = a.source
        where = adapter_dir(a.name) if in_image else (a.local_path or s.get("repo") or s.get("path") or s.get("oci"))
        out.append((a.name, where))
    return tuple(out)


def lora_spec(model: ModelFacts, plan: AdapterPlan | None, in_image: bool) -> LoraSpec | None:
    if plan is None:
        return None
    return LoraSpec(lora_modules(model, in_image), plan.max_loras, plan.max_lora_rank, plan.max_cpu_loras)
