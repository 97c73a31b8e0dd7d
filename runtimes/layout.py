"""File-layout conventions shared by the build (packager) and the runtime. No heavy imports."""
from __future__ import annotations

APP_DIR = "/opt/packager"
MODEL_DIR = f"{APP_DIR}/model"
PLAN_PATH = f"{APP_DIR}/plan.json"
IMAGE_CONFIG_PATH = f"{APP_DIR}/image.json"
CACHE_DIR = "/var/cache/packager"  # writable by the image's user (UID 1000)


def variant_dir(name: str) -> str:
    """Where a quantized variant's checkpoint lives in an image (baked) or on its volume (downloaded)."""
    return f"{MODEL_DIR}/variants/{name}"


def gguf_tokenizer_dir(gguf_file: str) -> str:
    """Beside `model.gguf`, `model.tokenizer/` holds its tokenizer converted once at build time.

    transformers rebuilds a tokenizer from GGUF metadata in ~3 s; from the saved files in ~0.2 s.
    """
    return gguf_file.removesuffix(".gguf") + ".tokenizer"
