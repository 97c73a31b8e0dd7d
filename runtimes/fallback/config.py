"""Frozen model and engine configuration objects.

``ModelConfig.from_hf`` is the one place that reads a Hugging Face config, so
the model code never touches HF objects and every quirk (rope parameters moved
between transformers versions, Qwen2's implicit q/k/v bias) is handled here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

# Architectures whose HF config we know how to read, mapped to the family the
# model registry serves them with.
_FAMILY_BY_ARCH = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "llama",
}
_ARCH_BY_MODEL_TYPE = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
}


@dataclass(frozen=True)
class ModelConfig:
    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: Mapping[str, Any] | None
    max_position_embeddings: int
    tie_word_embeddings: bool
    attention_bias: bool
    # Mistral's sliding window; None means full attention.
    sliding_window: int | None = None
    eos_token_ids: tuple[int, ...] = field(default=())

    @classmethod
    def from_hf(cls, hf: Any) -> "ModelConfig":
        """Build from a transformers ``PretrainedConfig`` (or anything with the
        same attributes)."""
        archs = list(getattr(hf, "architectures", None) or [])
        model_type = getattr(hf, "model_type", "")
        arch = next((a for a in archs if a in _FAMILY_BY_ARCH), None)
        if arch is None:
            arch = _ARCH_BY_MODEL_TYPE.get(model_type)
        if arch is None:
            raise ValueError(
                f"unsupported architecture {archs or model_type!r}; "
                f"supported: {sorted(_FAMILY_BY_ARCH)}"
            )
        heads = int(hf.num_attention_heads)
        hidden = int(hf.hidden_size)
        head_dim = getattr(hf, "head_dim", None) or hidden // heads
        # transformers 5 moved rope_theta/rope_scaling into rope_parameters.
        rope = dict(getattr(hf, "rope_parameters", None) or {})
        theta = rope.get("rope_theta", getattr(hf, "rope_theta", 10000.0))
        scaling = getattr(hf, "rope_scaling", None) or rope or None
        if scaling and scaling.get("rope_type", scaling.get("type")) in (None, "default"):
            scaling = None
        # Qwen2 always has q/k/v biases but its config does not say so.
        bias = bool(getattr(hf, "attention_bias", False)) or arch == "Qwen2ForCausalLM"
        window = getattr(hf, "sliding_window", None)
        if not getattr(hf, "use_sliding_window", True):
            window = None
        eos = getattr(hf, "eos_token_id", None)
        eos_ids = tuple(eos) if isinstance(eos, (list, tuple)) else ((eos,) if eos is not None else ())
        return cls(
            architecture=arch,
            vocab_size=int(hf.vocab_size),
            hidden_size=hidden,
            intermediate_size=int(hf.intermediate_size),
            num_layers=int(hf.num_hidden_layers),
            num_heads=heads,
            num_kv_heads=int(getattr(hf, "num_key_value_heads", None) or heads),
            head_dim=int(head_dim),
            rms_norm_eps=float(getattr(hf, "rms_norm_eps", 1e-6)),
            rope_theta=float(theta),
            rope_scaling=dict(scaling) if scaling else None,
            max_position_embeddings=int(getattr(hf, "max_position_embeddings", 2048)),
            tie_word_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
            attention_bias=bias,
            sliding_window=int(window) if window else None,
            eos_token_ids=tuple(int(e) for e in eos_ids),
        )


@dataclass(frozen=True)
class EngineConfig:
    """Limits of one engine instance, from the command line."""

    max_num_seqs: int = 16
    max_model_len: int = 2048
    # Prefill tokens one step may carry besides the decode tokens; prompts are
    # cut into chunks of exactly this size (see scheduler for why fixed).
    prefill_chunk: int = 256
    max_queue_len: int = 128
    seed: int = 0
    # A sequence's bits independent of its batch neighbours (batch.py says how).
    batch_invariant: bool = False
    # Paged KV cache (vLLM's --block-size, --num-gpu-blocks-override,
    # --enable-prefix-caching). num_blocks None: as many as max_num_seqs
    # full-length sequences need, the memory the per-slot cache used to take.
    block_size: int = 16
    num_blocks: int | None = None
    enable_prefix_caching: bool = True
    # LoRA slots (vLLM's --max-loras); 0: no adapters served.
    max_loras: int = 0

    @property
    def kv_blocks(self) -> int:
        per_seq = -(-self.max_model_len // self.block_size)
        return self.num_blocks or self.max_num_seqs * per_seq

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_model_len", "prefill_chunk", "block_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_blocks is not None and self.num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {self.num_blocks}")
        if self.max_queue_len < 0:
            raise ValueError("max_queue_len must be >= 0")
