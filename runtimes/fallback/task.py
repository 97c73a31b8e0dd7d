"""Which task the served model does, decided once from its files: `embed` for an encoder (BERT
config), else `generate`. A route of the other task answers 404, as OpenAI does for a model sent
to the wrong endpoint (vLLM 0.33 does not register those routes at all)."""

from __future__ import annotations

from pathlib import Path

from runtimes.st_config import is_encoder, reader

GENERATE, EMBED = "generate", "embed"


def model_task(model: str) -> str:
    p = Path(model)
    if p.suffix == ".gguf":
        return GENERATE  # this runtime's GGUF models are decoders
    return EMBED if is_encoder(reader(p)) else GENERATE


def refuse_other_task(state, wanted: str, api: str) -> None:
    """A generate route on an embedding model, or an embedding route on an LLM: a 404 naming why."""
    from .protocol import APIError  # here, not above: model_task runs before torch is imported (threads.py)

    task = getattr(state, "task", GENERATE)
    if task != wanted:
        raise APIError(404, f"The model does not support the {api}: it is served for `{task}`.", "model",
                       code="model_not_supported")
