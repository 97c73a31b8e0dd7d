"""The decoder-only transformer the fallback runtime serves (Llama, Mistral,
Qwen2: the same block, differing only in config: q/k/v bias, rope, window).

Our own readable model file, gpt-fast style: weights come from an HF state
dict, q/k/v and gate/up are fused into one matmul each at load time, and the
forward pass takes an explicit ``ForwardBatch`` and the KV cache.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .attention import attention
from .batch import ForwardBatch, padded
from .config import ModelConfig
from .kernels import Ops, rope_tables
from .kv_cache import KVCache


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, w: Mapping[str, torch.Tensor]):
        super().__init__()
        self.cfg = cfg
        p = lambda t: nn.Parameter(t, requires_grad=False)  # noqa: E731
        self.input_norm = p(w["input_layernorm.weight"])
        self.post_norm = p(w["post_attention_layernorm.weight"])
        self.qkv = p(torch.cat([w["self_attn.q_proj.weight"], w["self_attn.k_proj.weight"], w["self_attn.v_proj.weight"]]))
        self.qkv_bias = (
            p(torch.cat([w["self_attn.q_proj.bias"], w["self_attn.k_proj.bias"], w["self_attn.v_proj.bias"]]))
            if cfg.attention_bias
            else None
        )
        self.o = p(w["self_attn.o_proj.weight"])
        self.gate_up = p(torch.cat([w["mlp.gate_proj.weight"], w["mlp.up_proj.weight"]]))
        self.down = p(w["mlp.down_proj.weight"])
        self.q_size = cfg.num_heads * cfg.head_dim
        self.kv_size = cfg.num_kv_heads * cfg.head_dim

    def forward(self, x, residual, batch, layer_idx, kv, rope, ops: Ops):
        cfg = self.cfg
        h, residual = ops.rms_norm(x, self.input_norm, cfg.rms_norm_eps, residual)
        qkv = F.linear(h, self.qkv, self.qkv_bias)
        t = qkv.shape[0]
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = q.view(t, cfg.num_heads, cfg.head_dim)
        k = k.view(t, cfg.num_kv_heads, cfg.head_dim)
        v = v.view(t, cfg.num_kv_heads, cfg.head_dim)
        q, k = ops.rotary(q, k, batch.positions, rope[0], rope[1])
        k_cache, v_cache = kv.layer(layer_idx)
        a = attention(batch, q, k, v, k_cache, v_cache, cfg.head_dim**-0.5, ops)
        x = F.linear(a.view(t, self.q_size), self.o)
        h, residual = ops.rms_norm(x, self.post_norm, cfg.rms_norm_eps, residual)
        x = F.linear(ops.silu_and_mul(F.linear(h, self.gate_up)), self.down)
        return x, residual


class DecoderLM(nn.Module):
    def __init__(self, cfg: ModelConfig, weights: Mapping[str, torch.Tensor], max_positions: int):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Parameter(weights["model.embed_tokens.weight"], requires_grad=False)
        self.layers = nn.ModuleList(
            DecoderLayer(cfg, _prefixed(weights, f"model.layers.{i}.")) for i in range(cfg.num_layers)
        )
        self.norm = nn.Parameter(weights["model.norm.weight"], requires_grad=False)
        if cfg.tie_word_embeddings or "lm_head.weight" not in weights:
            self.lm_head = self.embed
        else:
            self.lm_head = nn.Parameter(weights["lm_head.weight"], requires_grad=False)
        cos, sin = rope_tables(cfg.head_dim, max_positions, cfg.rope_theta, cfg.rope_scaling, device=self.embed.device)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, batch: ForwardBatch, kv: KVCache, ops: Ops) -> torch.Tensor:
        """Returns fp32 logits [batch.num_logits, vocab] for ``batch.logits_rows``."""
        x = F.embedding(batch.input_ids, self.embed)
        residual = None
        rope = (self.rope_cos, self.rope_sin)
        for i, layer in enumerate(self.layers):
            x, residual = layer(x, residual, batch, i, kv, rope, ops)
        # Only rows that sample need the norm and the (large) vocab matmul;
        # pad them to the row alignment for batch-invariant numerics.
        n = batch.num_logits
        rows = batch.logits_rows
        if padded(n) != n:
            rows = torch.cat([rows, rows.new_zeros(padded(n) - n)])
        h, _ = ops.rms_norm(x.index_select(0, rows), self.norm, self.cfg.rms_norm_eps, residual.index_select(0, rows))
        return F.linear(h, self.lm_head)[:n].float()


def _prefixed(w: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in w.items() if k.startswith(prefix)}


# Registry keyed by HF architecture name: one builder per architecture.
MODEL_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "LlamaForCausalLM": DecoderLM,
    "MistralForCausalLM": DecoderLM,
    "Qwen2ForCausalLM": DecoderLM,
}


def build_model(cfg: ModelConfig, weights: Mapping[str, torch.Tensor], max_positions: int) -> nn.Module:
    try:
        builder = MODEL_REGISTRY[cfg.architecture]
    except KeyError:
        raise ValueError(f"no model registered for {cfg.architecture}") from None
    return builder(cfg, weights, max_positions).eval()
