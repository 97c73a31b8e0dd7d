"""The hardware manifest: node pools of accelerators and how Kubernetes schedules onto them."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from packager.manifests.model_schema import SLUG


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AcceleratorSpec(Strict):
    """Explicit specs for a device missing from the catalog."""

    name: str
    vendor: Literal["nvidia", "amd", "intel", "cpu"]
    memory_gib: float = Field(gt=0)
    bandwidth_gbs: float = Field(gt=0)
    bf16_tflops: float | None = Field(None, gt=0)
    fp16_tflops: float | None = Field(None, gt=0)
    fp8_tflops: float | None = Field(None, gt=0)
    compute_capability: float | None = Field(None, gt=0)
    gfx_target: str | None = None
    interconnect_gbs: float = Field(0, ge=0)
    runtimes: list[Literal["vllm", "triton", "cpu"]] = Field(min_length=1)


class KubernetesHints(Strict):
    resource_key: str | None = Field(None, description="Extended resource, e.g. nvidia.com/gpu; defaults by vendor.")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, str | int]] = Field(default_factory=list)


class NodePool(Strict):
    name: str = Field("default", pattern=SLUG)
    accelerator: str | AcceleratorSpec = Field(description="Catalog key (see `packager profiles --help`) or explicit specs.")
    count: int = Field(1, ge=1, le=64, description="Accelerators per node.")
    nodes: int = Field(1, ge=1, le=1024)
    cpu_cores: int | None = Field(None, ge=1)
    memory_gib: float | None = Field(None, gt=0, description="Host memory per node.")
    cloud: Literal["aws", "gcp", "azure", "onprem"] = "onprem"
    kubernetes: KubernetesHints = Field(default_factory=KubernetesHints)


class HardwareManifest(Strict):
    name: str = Field(pattern=SLUG)
    pools: list[NodePool] = Field(min_length=1)
