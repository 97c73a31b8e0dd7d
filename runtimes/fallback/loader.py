"""Load a model for the fallback runtime: HF safetensors directories and GGUF
files (dequantised through transformers' GGUF reader), plus the tokenizer and
chat template shipped with the model. Checks sha256 digests first when given.

Only the weights and config come from transformers; the module that runs is
our own (``model.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from runtimes.layout import gguf_tokenizer_dir

from . import gguf_fast
from .config import ModelConfig

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ModelSource:
    """Where the weights are: a directory, and the GGUF file in it if any."""

    directory: Path
    gguf_file: str | None

    @classmethod
    def resolve(cls, model: str) -> "ModelSource":
        p = Path(model).expanduser()
        if p.is_file() and p.suffix == ".gguf":
            return cls(p.parent, p.name)
        if p.is_dir():
            if any(p.glob("*.safetensors")):
                return cls(p, None)
            ggufs = sorted(x.name for x in p.glob("*.gguf"))
            if len(ggufs) == 1:
                return cls(p, ggufs[0])
            if ggufs:
                raise ValueError(f"{p} holds several .gguf files {ggufs}; pass one as --model")
            raise ValueError(f"{p} has neither *.safetensors nor a .gguf file")
        raise ValueError(f"--model {model!r}: no such directory or .gguf file")


# -- digests ----------------------------------------------------------------
def parse_sha256_args(values: list[str]) -> dict[str, str]:
    """``--sha256 FILE=HEX`` (repeatable) or ``--sha256 sums.json`` holding
    ``{"FILE": "HEX"}`` (the shape of plan.json's model.source.sha256)."""
    out: dict[str, str] = {}
    for v in values:
        if "=" in v:
            name, _, hexd = v.partition("=")
            out[name] = hexd
        else:
            data = json.loads(Path(v).read_text())
            if not isinstance(data, dict):
                raise ValueError(f"{v}: expected a JSON object of file -> sha256")
            out.update({str(k): str(h) for k, h in data.items()})
    for name, hexd in out.items():
        if len(hexd) != 64 or any(c not in "0123456789abcdefABCDEF" for c in hexd):
            raise ValueError(f"--sha256 {name}: {hexd!r} is not a 64-digit hex digest")
    return out


# -- weights ----------------------------------------------------------------
@dataclass
class LoadedModel:
    config: ModelConfig
    weights: dict[str, torch.Tensor]
    tokenizer: Any
    eos_token_ids: tuple[int, ...]


def load(model: str, tokenizer: str | None = None, dtype: str = "float32") -> LoadedModel:
    import transformers

    src = ModelSource.resolve(model)
    torch_dtype = DTYPES[dtype]
    fast = gguf_fast.try_load(str(src.directory / src.gguf_file)) if src.gguf_file else None
    if fast is not None:  # llama-layout GGUF: one header read, mmap dequantisation (~0.5 s instead of ~12 s)
        hf_cfg, weights = fast
    else:
        kw = {"gguf_file": src.gguf_file} if src.gguf_file else {}
        hf_cfg = transformers.AutoConfig.from_pretrained(src.directory, **kw)
        weights = _load_gguf(src, hf_cfg) if src.gguf_file else _load_safetensors(src.directory)
    cfg = ModelConfig.from_hf(hf_cfg)
    weights = {k: v.to(torch_dtype).contiguous() for k, v in weights.items()}
    tok = load_tokenizer(tokenizer or model)
    eos = set(cfg.eos_token_ids)
    gen_path = src.directory / "generation_config.json"
    if gen_path.is_file():
        g = json.loads(gen_path.read_text()).get("eos_token_id")
        eos.update(g if isinstance(g, list) else [g] if g is not None else [])
    if tok.eos_token_id is not None:
        eos.add(int(tok.eos_token_id))
    return LoadedModel(cfg, weights, tok, tuple(sorted(eos)))


def load_tokenizer(path: str) -> Any:
    """Tokenizer (with its chat template) from a model directory or a .gguf file."""
    import transformers

    p = Path(path).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        saved = p.parent / gguf_tokenizer_dir(p.name)
        if (saved / "tokenizer.json").is_file():  # converted at build time: ~0.2 s instead of ~3 s
            return transformers.AutoTokenizer.from_pretrained(saved)
        cached = _tokenizer_cache(p)
        if cached is not None and (cached / "tokenizer.json").is_file():
            return transformers.AutoTokenizer.from_pretrained(cached)
        tok = transformers.AutoTokenizer.from_pretrained(p.parent, gguf_file=p.name)
        if cached is not None:
            _save_tokenizer(tok, cached)
        return tok
    if p.is_dir() and not (p / "tokenizer.json").is_file() and not (p / "tokenizer_config.json").is_file():
        src = ModelSource.resolve(path)
        if src.gguf_file:
            return transformers.AutoTokenizer.from_pretrained(src.directory, gguf_file=src.gguf_file)
    return transformers.AutoTokenizer.from_pretrained(p)


def _tokenizer_cache(gguf: Path) -> Path | None:
    """Where a GGUF's tokenizer is kept once converted, when no build put it beside the file (``packager
    serve``, a mounted volume): the user's cache, keyed by the file's path, size and mtime, so a changed
    file is converted again."""
    try:
        st = gguf.stat()
    except OSError:
        return None
    where = hashlib.sha256(str(gguf.resolve()).encode()).hexdigest()[:16]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "packager" / "tokenizers" / f"{gguf.stem}-{where}-{st.st_size}-{st.st_mtime_ns}"


def _save_tokenizer(tok: Any, target: Path) -> None:
    """Best effort (a read-only home just converts again next time); whole or not at all: written aside,
    then renamed into place, so a concurrent start never reads half a tokenizer."""
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    try:
        tok.save_pretrained(tmp)
        tmp.rename(target)
    except OSError as e:
        log.debug("tokenizer not cached at %s: %s", target, e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_safetensors(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    weights: dict[str, torch.Tensor] = {}
    for f in sorted(directory.glob("*.safetensors")):
        weights.update(load_file(f))
    return weights


def _load_gguf(src: ModelSource, hf_cfg: Any) -> dict[str, torch.Tensor]:
    # transformers' GGUF reader dequantises and renames tensors to HF names
    # (undoing llama.cpp's q/k permutation); it needs a model to learn the
    # names from, so build HF's module on the meta device (no memory, never run).
    import transformers
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    with torch.device("meta"):
        skeleton = transformers.AutoModelForCausalLM.from_config(hf_cfg)
    result = load_gguf_checkpoint(str(src.directory / src.gguf_file), return_tensors=True, model_to_load=skeleton)
    return {k: torch.as_tensor(v) for k, v in result["tensors"].items()}
