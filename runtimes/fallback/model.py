"""The decoder-only transformer the fallback runtime serves (Llama, Mistral,
Qwen2: the same block, differing only in config: q/k/v bias, rope, window).

Our own readable model file, gpt-fast style: weights come from an HF state
dict, q/k/v and gate/up are fused into one matmul each at load time, and the
forward pass takes an explicit ``ForwardBatch`` and the KV cache.
"""

from __future__ import annotations

import logging
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .attention import attention
from .batch import ForwardBatch
from .config import ModelConfig
from .kernels import Ops, rope_tables
from .kernels.reference import rope_rows, rotate
from .kv_cache import KVCache

log = logging.getLogger(__name__)
from .linear import choose_backend, linear_maker


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, w: Mapping[str, torch.Tensor], linear: Callable):
        super().__init__()
        self.cfg = cfg
        self.input_norm = w["input_layernorm.weight"]
        self.post_norm = w["post_attention_layernorm.weight"]
        qkv_bias = (
            torch.cat([w["self_attn.q_proj.bias"], w["self_attn.k_proj.bias"], w["self_attn.v_proj.bias"]])
            if cfg.attention_bias
            else None
        )
        qkv = torch.cat([w["self_attn.q_proj.weight"], w["self_attn.k_proj.weight"], w["self_attn.v_proj.weight"]])
        self.qkv = linear(qkv, qkv_bias)
        self.o = linear(w["self_attn.o_proj.weight"])
        self.gate_up = linear(torch.cat([w["mlp.gate_proj.weight"], w["mlp.up_proj.weight"]]))
        self.down = linear(w["mlp.down_proj.weight"])
        self.q_size = cfg.num_heads * cfg.head_dim
        self.kv_size = cfg.num_kv_heads * cfg.head_dim

    def forward(self, x, residual, batch, layer_idx, kv, rope, ops: Ops):
        cfg = self.cfg
        h, residual = ops.rms_norm(x, self.input_norm, cfg.rms_norm_eps, residual)
        groups, wide, lora = batch.row_groups, batch.wide, batch.lora
        qkv = self.qkv(h, groups, wide)
        if lora is not None:  # each row's adapter: base output + scale * (x A^T) B^T (lora/slots.py)
            lora.apply(layer_idx, "qkv", h, qkv)
        t = qkv.shape[0]
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        v = v.view(t, cfg.num_kv_heads, cfg.head_dim)
        if len(rope) == 3:  # torch ops: q and k heads rotated together, with this step's rows
            qk = rotate(qkv[:, : self.q_size + self.kv_size].view(t, -1, cfg.head_dim), rope[2])
            q, k = qk[:, : cfg.num_heads], qk[:, cfg.num_heads :]
        else:
            q = q.view(t, cfg.num_heads, cfg.head_dim)
            k = k.view(t, cfg.num_kv_heads, cfg.head_dim)
            q, k = ops.rotary(q, k, batch.positions, rope[0], rope[1])
        k_cache, v_cache = kv.layer(layer_idx)
        a = attention(batch, q, k, v, k_cache, v_cache, cfg.head_dim**-0.5, ops)
        a = a.view(t, self.q_size)
        x = self.o(a, groups, wide, residual=lora is None)  # an adapter adds into x: it stays fp32 then
        if lora is not None:
            lora.apply(layer_idx, "o", a, x)
        h, residual = ops.rms_norm(x, self.post_norm, cfg.rms_norm_eps, residual)
        gate_up = self.gate_up(h, groups, wide)
        if lora is not None:
            lora.apply(layer_idx, "gate_up", h, gate_up)
        act = ops.silu_and_mul(gate_up)
        x = self.down(act, groups, wide, residual=lora is None)
        if lora is not None:
            lora.apply(layer_idx, "down", act, x)
        return x, residual


class DecoderLM(nn.Module):
    def __init__(self, cfg: ModelConfig, weights: Mapping[str, torch.Tensor], max_positions: int, linear: Callable):
        super().__init__()
        self.cfg = cfg
        self.embed = weights["model.embed_tokens.weight"]
        self.layers = nn.ModuleList(
            DecoderLayer(cfg, _prefixed(weights, f"model.layers.{i}."), linear) for i in range(cfg.num_layers)
        )
        self.norm = weights["model.norm.weight"]
        head = self.embed if cfg.tie_word_embeddings or "lm_head.weight" not in weights else weights["lm_head.weight"]
        self.lm_head = linear(head)
        self.rope_cos, self.rope_sin = rope_tables(
            cfg.head_dim, max_positions, cfg.rope_theta, cfg.rope_scaling, device=self.embed.device
        )

    def forward(self, batch: ForwardBatch, kv: KVCache, ops: Ops) -> torch.Tensor:
        """Returns fp32 logits [batch.num_logits, vocab] for ``batch.logits_rows``."""
        x = F.embedding(batch.input_ids, self.embed)
        residual = None
        rope = (self.rope_cos, self.rope_sin)
        if ops.name == "torch":  # the rows every layer's rotary reads: gathered once per step
            rope += (rope_rows(batch.positions, *rope),)
        for i, layer in enumerate(self.layers):
            x, residual = layer(x, residual, batch, i, kv, rope, ops)
        # Only rows that sample need the norm and the (large) vocab matmul.
        n = batch.num_logits
        rows = batch.logits_rows
        h, _ = ops.rms_norm(x.index_select(0, rows), self.norm, self.cfg.rms_norm_eps, residual.index_select(0, rows))
        # Logits rows: decode rows first, then the rows that end a prompt.
        groups = None if batch.row_groups is None else tuple((i, i + 1, i >= batch.num_decode) for i in range(n))
        return self.lm_head(h, groups, batch.wide).float()


def _prefixed(w: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in w.items() if k.startswith(prefix)}


# Registry keyed by HF architecture name: one builder per architecture.
MODEL_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "LlamaForCausalLM": DecoderLM,
    "MistralForCausalLM": DecoderLM,
    "Qwen2ForCausalLM": DecoderLM,
}


def build_model(
    cfg: ModelConfig,
    weights: Mapping[str, torch.Tensor],
    max_positions: int,
    linear: str = "auto",
    quantization: str | None = None,
) -> nn.Module:
    """``weights`` must already be on the target device and in the target dtype;
    ``quantization`` packs every matmul's weights (not the embedding): "int8",
    "int4", "w8a8", or "auto" (int4 where a matrix is exactly 4-bit, else int8)."""
    try:
        builder = MODEL_REGISTRY[cfg.architecture]
    except KeyError:
        raise ValueError(f"no model registered for {cfg.architecture}") from None
    embed = weights["model.embed_tokens.weight"]
    backend = choose_backend(str(embed.device), embed.dtype, linear, quantization)
    make = linear_maker(backend, auto=quantization == "auto" and linear == "auto")
    model = builder(cfg, weights, max_positions, make).eval()
    log.info("matmul backends: %s", ", ".join(f"{k} x{v}" for k, v in sorted(make.used.items())))
    return model
