"""The image's entrypoint (`python -m runtimes.launcher`, the images' ENTRYPOINT): forwards to
the runtimes.launch package, where each step has its own module."""
from __future__ import annotations

import sys

from runtimes.launch.__main__ import main  # noqa: F401
from runtimes.launch.decide import Decision, decide, engine_argv, format_table, image_plan, set_flag  # noqa: F401
from runtimes.launch.engine_env import engine_environment, vllm_plugin_path  # noqa: F401
from runtimes.launch.hardware import describe as describe_hardware  # noqa: F401
from runtimes.launch.settings import EXIT_BAD_INPUT, EXIT_NO_FIT, LaunchError, Settings  # noqa: F401
from runtimes.launch.weights import base_dir, ensure, spec_for, target_dir  # noqa: F401


def ensure_weights(config: dict, env, log=print, profile: dict | None = None, plan: dict | None = None) -> str:
    """The directory holding verified weights for `profile` (default: the image's own checkpoint)."""
    spec = spec_for(profile, plan or {}, config, env)
    target = target_dir(spec, base_dir(config, env))
    ensure(spec, target, env, log=log)
    return str(target)


if __name__ == "__main__":
    sys.exit(main())
