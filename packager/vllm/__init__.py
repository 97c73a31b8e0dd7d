"""vLLM 0.33.0 integration: argv builder, contract check, defaults as data.

Nothing here imports vllm or torch; the real-parser check runs only under
`python -m packager.vllm.contract --real` inside a separate vLLM venv.
"""

from packager.vllm.serve_argv import (
    VLLM_VERSION,
    VllmImage,
    VllmServeSpec,
    build_vllm_argv,
    spec_problems,
    vllm_image,
    vllm_images,
)

__all__ = [
    "VLLM_VERSION",
    "VllmImage",
    "VllmServeSpec",
    "build_vllm_argv",
    "spec_problems",
    "vllm_image",
    "vllm_images",
]
