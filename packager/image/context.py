"""The one frozen object every template renders from.

Templates see only this object (as `ctx`): no globals, no helper calls, so a
template cannot reach the filesystem or the plan behind the build's back, and a
missing field fails the render (StrictUndefined) instead of producing `FROM `.
"""
from __future__ import annotations

from dataclasses import dataclass

from runtimes.layout import APP_DIR, CACHE_DIR, IMAGE_CONFIG_PATH, MODEL_DIR, PLAN_PATH

VENV = f"{APP_DIR}/venv"
LAUNCHER = (f"{VENV}/bin/python", "-m", "runtimes.launcher")  # every image's ENTRYPOINT
UID = 1000
USER = "packager"
DEFAULT_PORT = 8000
LABEL_PREFIX = "dev.packager"


@dataclass(frozen=True)
class ImageContext:
    family: str
    template: str
    base_image: str
    python: str  # the base image's interpreter that creates the venv
    weights_mode: str  # baked | volume
    weights: tuple[tuple[str, str], ...]  # (relative path, sha256); empty under volume
    project_wheel: str  # file name under context/dist/
    labels: tuple[tuple[str, str], ...]
    env: tuple[tuple[str, str], ...]
    groups: tuple[str, ...]
    secrets: tuple[str, ...]  # BuildKit secret ids the build mounts (never stored)
    healthcheck_start_period_s: int
    packager_version: str
    port: int = DEFAULT_PORT
    # A baked GGUF file whose tokenizer is converted once at build (saves ~3 s per start); "" when none.
    gguf_tokenizer: str = ""
    gguf_tokenizer_dir: str = ""  # runtimes.layout.gguf_tokenizer_dir of it
    uid: int = UID
    user: str = USER
    app_dir: str = APP_DIR
    venv: str = VENV
    model_dir: str = MODEL_DIR
    cache_dir: str = CACHE_DIR
    plan_path: str = PLAN_PATH
    image_config_path: str = IMAGE_CONFIG_PATH
    entrypoint: tuple[str, ...] = LAUNCHER


def startup_budget_s(weights_bytes: int) -> int:
    """Health/startup grace: KAITO's 15 min plus 18 s per GiB of weights."""
    return int(900 + 18 * weights_bytes / 2**30)
