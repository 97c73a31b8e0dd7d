"""Fast GGUF loading for llama-architecture files (Llama, SmolLM, Mistral in llama.cpp's layout).

transformers' GGUF path parses the whole file three times (config, weights,
tokenizer) and rebuilds its tensor-name map per tensor: ~12 s of a 17 s start
for SmolLM2-135M. Here the header is read once (packager's pure-Python reader),
tensors are dequantised straight from an mmap with gguf's own kernels, and
llama.cpp's names and q/k row order are mapped back to Hugging Face's.
Anything unusual (other architectures, rope scaling tensors) returns None so the
caller takes transformers' path; tests check both paths give identical weights.
"""
from __future__ import annotations

import math
import re
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from runtimes.gguf_meta import GGUFHeader, architecture_from_header, read_gguf_header

_LAYER = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}
_GLOBAL = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
           "output.weight": "lm_head.weight"}
_BLOCK = re.compile(r"^blk\.(\d+)\.(\w+)\.(weight|bias)$")


def supported(header: GGUFHeader) -> bool:
    meta = header.metadata
    return (meta.get("general.architecture") == "llama" and "rope_freqs.weight" not in header.tensors
            and "llama.rope.scaling.type" not in meta and all(
                n in _GLOBAL or (_BLOCK.match(n) and _BLOCK.match(n)[2] in _LAYER) for n in header.tensors))


def hf_config(header: GGUFHeader) -> Any:
    """The attributes ModelConfig.from_hf reads, named as in a transformers LlamaConfig."""
    a = architecture_from_header(header)  # the packager's reading of the same header
    m = header.metadata
    return SimpleNamespace(
        architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=a["vocab_size"],
        hidden_size=a["hidden_size"], intermediate_size=a["intermediate_size"], num_hidden_layers=a["layers"],
        num_attention_heads=a["attention_heads"], num_key_value_heads=a["kv_heads"], head_dim=a["head_dim"],
        rms_norm_eps=float(m.get("llama.attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(m.get("llama.rope.freq_base", 10000.0)), rope_scaling=None,
        max_position_embeddings=a.get("max_position_embeddings", 2048),
        tie_word_embeddings=a["tie_word_embeddings"], attention_bias=False,
        eos_token_id=m.get("tokenizer.ggml.eos_token_id"),
    )


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's q/k row interleave (its rotary layout) back to HF's rotate-half order."""
    rows, cols = w.shape
    return w.reshape(heads, rows // heads // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def load_weights(path: str, header: GGUFHeader, cfg: Any) -> dict[str, torch.Tensor]:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import dequantize

    data = np.memmap(path, dtype=np.uint8, mode="r")
    out: dict[str, torch.Tensor] = {}
    for name, info in header.tensors.items():
        qtype = GGMLQuantizationType(info.ggml_type)
        block, size = GGML_QUANT_SIZES[qtype]
        shape = tuple(reversed(info.dims))
        nbytes = math.prod(shape) // block * size
        start = header.data_offset + info.offset
        raw = np.asarray(data[start:start + nbytes]).reshape(-1, shape[-1] // block * size)
        w = dequantize(raw, qtype).reshape(shape).astype(np.float32, copy=False)
        match = _BLOCK.match(name)
        if match:
            layer, part, kind = match.groups()
            if part == "attn_q":
                w = _unpermute(w, cfg.num_attention_heads)
            elif part == "attn_k":
                w = _unpermute(w, cfg.num_key_value_heads)
            hf = f"model.layers.{layer}.{_LAYER[part]}.{kind}"
        else:
            hf = _GLOBAL[name]
        # Unquantised tensors come back as views of the read-only mmap: copy
        # them (torch warns on, and must not write through, a read-only array).
        w = np.ascontiguousarray(w)
        out[hf] = torch.from_numpy(w if w.flags.writeable else w.copy())
    return out


def try_load(path: str) -> tuple[Any, dict[str, torch.Tensor]] | None:
    """(HF-like config, HF-named fp32 weights), or None when this file needs transformers' path."""
    header = read_gguf_header(path)
    if not supported(header):
        return None
    cfg = hf_config(header)
    return cfg, load_weights(path, header, cfg)
