"""Which task the served model does, decided once from its files: `embed` for an encoder (BERT
config), else `generate`. A route of the other task answers 404, as OpenAI does for a model sent
to the wrong endpoint (vLLM 0.33 does not register those routes at all)."""

from __future__ import annotations

from pathlib import Path

from runtimes.model_archive import is_archive, read_json

from .encoder import ARCHITECTURES
from .protocol import APIError

GENERATE, EMBED = "generate", "embed"


def _is_encoder_config(cfg: dict | None) -> bool:
    if not isinstance(cfg, dict):
        return False
    return cfg.get("model_type") == "bert" or any(a in ARCHITECTURES for a in cfg.get("architectures") or ())


def model_task(model: str) -> str:
    p = Path(model)
    if is_archive(p):
        return EMBED if _is_encoder_config(read_json(p, "config.json")) else GENERATE
    if p.is_dir() and (p / "config.json").is_file():
        import json

        try:
            return EMBED if _is_encoder_config(json.loads((p / "config.json").read_text())) else GENERATE
        except ValueError:
            return GENERATE
    return GENERATE  # a .gguf file: this runtime's GGUF models are decoders


def refuse_other_task(state, wanted: str, api: str) -> None:
    """A generate route on an embedding model, or an embedding route on an LLM: a 404 naming why."""
    task = getattr(state, "task", GENERATE)
    if task != wanted:
        raise APIError(404, f"The model does not support the {api}: it is served for `{task}`.", "model",
                       code="model_not_supported")
