"""Our BERT encoder (sentence-transformers' embedding models): weights from safetensors, a packed
forward over a batch of mixed lengths.

Padding-free where it pays: the sequences are laid end to end, so the matmuls (all but a few
percent of the work) see only real tokens. Attention alone pads, per batch, to the longest
sequence, with a key mask: for short sentences its cost is small, and SDPA wants a rectangle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from runtimes import st_config

from .linear import Linear, choose_backend, onednn_bf16_available

@dataclass(frozen=True)
class EncoderConfig:
    hidden_size: int
    layers: int
    heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    max_seq_length: int  # sentence-transformers' cap (sentence_bert_config.json), else the positions

    @classmethod
    def from_dir(cls, directory: str | Path) -> "EncoderConfig":
        d = Path(directory)
        cfg = json.loads((d / "config.json").read_text())
        if cfg.get("model_type") != "bert":
            raise ValueError(f"{d}: model_type {cfg.get('model_type')!r} is not an encoder this runtime runs (bert)")
        if cfg.get("hidden_act", "gelu") != "gelu" or cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{d}: only gelu activations and absolute positions are supported")
        max_pos = int(cfg["max_position_embeddings"])
        return cls(
            hidden_size=int(cfg["hidden_size"]), layers=int(cfg["num_hidden_layers"]),
            heads=int(cfg["num_attention_heads"]), intermediate_size=int(cfg["intermediate_size"]),
            vocab_size=int(cfg["vocab_size"]), max_position_embeddings=max_pos,
            type_vocab_size=int(cfg.get("type_vocab_size", 2)), layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
            max_seq_length=min(st_config.max_seq_length(st_config.reader(d)) or max_pos, max_pos),
        )



@dataclass
class _Layer:
    qkv: Linear
    out: Linear
    ln1: tuple[torch.Tensor, torch.Tensor]
    up: Linear
    down: Linear
    ln2: tuple[torch.Tensor, torch.Tensor]


class BertEncoder:
    def __init__(self, cfg: EncoderConfig, weights: dict[str, torch.Tensor], backend: str,
                 compute: torch.dtype = torch.float32):
        """``compute``: the matmuls' dtype. bf16 halves their time on a CPU with native bf16 (AVX512-BF16,
        AMX); embeddings, LayerNorms, residuals and pooling stay fp32, so the vectors keep cosine >= 0.999."""
        self.cfg, self.compute = cfg, compute
        w = {k.removeprefix("bert."): v.float() for k, v in weights.items()}
        mm = {k: (v.to(compute) if k.startswith("encoder.layer.") and "LayerNorm" not in k else v) for k, v in w.items()}
        self.word = w["embeddings.word_embeddings.weight"]
        self.pos = w["embeddings.position_embeddings.weight"]
        self.type0 = w["embeddings.token_type_embeddings.weight"][0]
        self.ln0 = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = []
        for i in range(cfg.layers):
            p = f"encoder.layer.{i}."
            a = p + "attention.self."
            # q, k and v in one matmul: one pass over the activations instead of three.
            qkv_w = torch.cat([mm[a + n + ".weight"] for n in ("query", "key", "value")])
            qkv_b = torch.cat([mm[a + n + ".bias"] for n in ("query", "key", "value")])
            self.layers.append(_Layer(
                qkv=Linear(qkv_w, qkv_b, backend),
                out=Linear(mm[p + "attention.output.dense.weight"], mm[p + "attention.output.dense.bias"], backend),
                ln1=(w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"]),
                up=Linear(mm[p + "intermediate.dense.weight"], mm[p + "intermediate.dense.bias"], backend),
                down=Linear(mm[p + "output.dense.weight"], mm[p + "output.dense.bias"], backend),
                ln2=(w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
            ))

    @classmethod
    def load(cls, directory: str | Path, quantization: str | None = None, dtype: str = "float32") -> "BertEncoder":
        d = Path(directory)
        files = sorted(d.glob("*.safetensors"))
        if not files:
            raise ValueError(f"{d} has no *.safetensors")
        weights: dict[str, torch.Tensor] = {}
        for f in files:
            weights.update(load_file(f))
        # Every encoder row is a prompt row: weight-only int8 would run on an fp32 copy here
        # (no speed) and only cost accuracy, so "auto" keeps fp32; w8a8 is asked for by name.
        quant = None if quantization in (None, "auto", "none") else quantization
        if dtype not in ("float32", "bfloat16"):
            raise ValueError(f"--dtype {dtype}: an encoder on CPU computes in float32 or bfloat16")
        compute = torch.bfloat16 if dtype == "bfloat16" else torch.float32
        backend = choose_backend("cpu", torch.float32, "auto", quant)
        if compute != torch.float32:
            if quant:
                raise ValueError("--quantization applies to fp32 encoders; use --dtype float32 with it")
            # oneDNN prepacks bf16 weights where the CPU has the instructions; elsewhere plain torch runs
            # them (correct, slower than float32: such a CPU has no native bf16 to gain from)
            backend = "onednn" if backend == "onednn" and onednn_bf16_available() else "torch"
        return cls(EncoderConfig.from_dir(d), weights, backend, compute)

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """ids [T] (sequences end to end) -> hidden states [T, H]."""
        cfg = self.cfg
        positions = torch.cat([torch.arange(n) for n in lengths])
        x = self.word[ids] + self.pos[positions] + self.type0
        x = F.layer_norm(x, (cfg.hidden_size,), *self.ln0, cfg.layer_norm_eps)
        scatter = _Scatter(lengths)
        cd = self.compute
        for layer in self.layers:
            attn = self._attention(layer.qkv(x.to(cd)), scatter)
            x = F.layer_norm(layer.out(attn).float() + x, (cfg.hidden_size,), *layer.ln1, cfg.layer_norm_eps)
            h = F.gelu(layer.up(x.to(cd)))  # the wide [T, 4H] activation stays in the compute dtype
            x = F.layer_norm(layer.down(h).float() + x, (cfg.hidden_size,), *layer.ln2, cfg.layer_norm_eps)
        return x

    def _attention(self, qkv: torch.Tensor, s: "_Scatter") -> torch.Tensor:
        cfg = self.cfg
        d = cfg.hidden_size // cfg.heads
        padded = qkv.new_zeros(s.batch * s.longest, 3 * cfg.hidden_size)
        padded[s.rows] = qkv
        q, k, v = padded.view(s.batch, s.longest, 3, cfg.heads, d).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=s.mask)
        return o.transpose(1, 2).reshape(s.batch * s.longest, cfg.hidden_size)[s.rows]


class _Scatter:
    """Where each packed row sits in the [batch, longest] rectangle attention runs on."""

    def __init__(self, lengths: list[int]):
        self.batch, self.longest = len(lengths), max(lengths)
        self.rows = torch.cat([torch.arange(n) + i * self.longest for i, n in enumerate(lengths)])
        if min(lengths) == self.longest:
            self.mask = None
        else:
            keys = torch.arange(self.longest).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
            self.mask = keys[:, None, None, :]  # [B, 1, 1, L]: padded keys get no weight
