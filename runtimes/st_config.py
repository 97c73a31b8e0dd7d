"""What a sentence-transformers model's files say, read from a directory or a zip of one: is it an
encoder (embed) or not, its pooling, its `max_seq_length`. Standard library only: the planner (package
time) and the fallback runtime read the same files through this one module."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from runtimes.model_archive import is_archive, read_json

ENCODER_ARCHITECTURES = ("BertModel", "BertForMaskedLM", "BertForPreTraining")
POOLING_MODES = ("mean", "cls", "last")
_ST_KEYS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_lasttoken": "last"}

Reader = Callable[[str], Any]  # member path -> parsed JSON, or None when absent or unreadable


def reader(model: str | Path) -> Reader:
    p = Path(model)
    if is_archive(p):
        def from_zip(member: str):
            try:
                return read_json(p, member)
            except ValueError:
                return None
        return from_zip
    base = p if p.is_dir() else p.parent

    def from_dir(member: str):
        try:
            return json.loads((base / member).read_text())
        except (OSError, ValueError):
            return None
    return from_dir


def is_encoder(read: Reader) -> bool:
    cfg = read("config.json")
    if not isinstance(cfg, dict):
        return False
    return cfg.get("model_type") == "bert" or any(a in ENCODER_ARCHITECTURES for a in cfg.get("architectures") or ())


def pooling(read: Reader) -> tuple[str, bool]:
    """(mode, normalize) from modules.json and the Pooling module's config; no sentence-transformers
    config: mean and normalised, vLLM's default for an embedding model. ValueError on a mode we do not run."""
    modules = read("modules.json")
    if not isinstance(modules, list):
        return "mean", True
    types = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in modules if isinstance(m, dict)}
    mode = "mean"
    if "Pooling" in types:
        cfg = read(f"{types['Pooling'].get('path') or '1_Pooling'}/config.json") or {}
        on = [mine for key, mine in _ST_KEYS.items() if cfg.get(key)]
        others = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v and k not in _ST_KEYS]
        if others or len(on) > 1:
            raise ValueError(f"pooling {others or on} is not supported (one of {', '.join(POOLING_MODES)})")
        mode = on[0] if on else "mean"
    return mode, "Normalize" in types


def max_seq_length(read: Reader) -> int | None:
    st = read("sentence_bert_config.json")
    value = st.get("max_seq_length") if isinstance(st, dict) else None
    return value if isinstance(value, int) and value > 0 else None
