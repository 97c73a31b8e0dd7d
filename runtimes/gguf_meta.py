"""Read a GGUF file's metadata and tensor shapes without loading weights (no numpy, no torch).

Only the header is read: key/value pairs and tensor infos, enough for the
architecture facts the planner needs. Standard library only, and under runtimes/: the
manifest loader and the fallback runtime's GGUF reader both use it, and runtime code
never imports packager.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GGUFError(ValueError):
    pass


@dataclass(frozen=True)
class TensorInfo:
    dims: tuple[int, ...]  # GGUF order: innermost first (numpy shape is reversed)
    ggml_type: int
    offset: int  # from the start of the data section


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    metadata: dict
    tensor_shapes: dict[str, tuple[int, ...]]
    tensors: dict[str, TensorInfo]
    data_offset: int  # where tensor data starts in the file (aligned)

    @property
    def parameter_count(self) -> int:
        total = 0
        for shape in self.tensor_shapes.values():
            n = 1
            for d in shape:
                n *= d
            total += n
        return total


def _read(f: BinaryIO, fmt: str):
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise GGUFError("truncated GGUF header")
    return struct.unpack(fmt, data)[0]


def _read_str(f: BinaryIO) -> str:
    n = _read(f, "<Q")
    if n > 1 << 24:
        raise GGUFError("implausible string length in GGUF header")
    return f.read(n).decode("utf-8", errors="replace")


def _read_value(f: BinaryIO, vtype: int, keep_arrays: bool):
    if vtype in _SCALARS:
        return _read(f, _SCALARS[vtype])
    if vtype == _STRING:
        return _read_str(f)
    if vtype == _ARRAY:
        itype = _read(f, "<I")
        count = _read(f, "<Q")
        if itype in _SCALARS and not keep_arrays:
            f.seek(struct.calcsize(_SCALARS[itype]) * count, 1)  # skip without decoding
            return _ArrayLen(count)
        items = [_read_value(f, itype, keep_arrays) for _ in range(count)]
        return items if keep_arrays else _ArrayLen(count)
    raise GGUFError(f"unknown GGUF value type {vtype}")


class _ArrayLen(int):
    """Stands in for a large array (token lists): only its length is kept."""


def read_gguf_header(path: str | Path) -> GGUFHeader:
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise GGUFError("not a GGUF file (bad magic)")
        version = _read(f, "<I")
        if version < 2:
            raise GGUFError(f"GGUF version {version} is too old (need 2 or later)")
        n_tensors = _read(f, "<Q")
        n_kv = _read(f, "<Q")
        meta: dict = {}
        for _ in range(n_kv):
            key = _read_str(f)
            vtype = _read(f, "<I")
            meta[key] = _read_value(f, vtype, keep_arrays=False)
        shapes: dict[str, tuple[int, ...]] = {}
        tensors: dict[str, TensorInfo] = {}
        for _ in range(n_tensors):
            name = _read_str(f)
            n_dims = _read(f, "<I")
            dims = tuple(_read(f, "<Q") for _ in range(n_dims))
            ggml_type = _read(f, "<I")
            offset = _read(f, "<Q")
            shapes[name] = dims
            tensors[name] = TensorInfo(dims, ggml_type, offset)
        align = int(meta.get("general.alignment", 32) or 32)
        data_offset = -(-f.tell() // align) * align
    return GGUFHeader(version=version, metadata=meta, tensor_shapes=shapes, tensors=tensors, data_offset=data_offset)


def architecture_from_gguf(path: str | Path) -> dict:
    """Architecture facts in the manifest's vocabulary."""
    return architecture_from_header(read_gguf_header(path))


def architecture_from_header(h: GGUFHeader) -> dict:
    """Architecture facts of a header already read (the runtime's GGUF loader uses them too)."""
    m = h.metadata
    arch = m.get("general.architecture", "llama")

    def get(name):
        return m.get(f"{arch}.{name}")

    heads = get("attention.head_count")
    hidden = get("embedding_length")
    head_dim = get("attention.key_length") or get("rope.dimension_count") or (hidden // heads if hidden and heads else None)
    vocab = get("vocab_size") or m.get("tokenizer.ggml.tokens")
    tied = "output.weight" not in h.tensor_shapes
    facts = {
        "family": arch,
        "parameters": h.parameter_count,
        "layers": get("block_count"),
        "hidden_size": hidden,
        "attention_heads": heads,
        "kv_heads": get("attention.head_count_kv") or heads,
        "head_dim": head_dim,
        "intermediate_size": get("feed_forward_length"),
        "vocab_size": int(vocab) if vocab is not None else None,
        "max_position_embeddings": get("context_length"),
        "experts": get("expert_count") or None,
        "active_experts": get("expert_used_count") or None,
        "tie_word_embeddings": tied,
    }
    return {k: (int(v) if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in facts.items() if v is not None}
