"""The launcher's steps as the tests drive them, one import away (the image's entry point,
runtimes/launcher.py, only forwards to runtimes.launch)."""
from __future__ import annotations

from runtimes.launch.decide import decide, image_plan, set_flag  # noqa: F401
from runtimes.launch.engine_env import engine_environment  # noqa: F401
from runtimes.launch.settings import EXIT_NO_FIT, LaunchError, Settings  # noqa: F401
from runtimes.launch.weights import base_dir, ensure, spec_for, target_dir


def ensure_weights(config: dict, env, log=print, profile: dict | None = None, plan: dict | None = None) -> str:
    """The directory holding verified weights for `profile` (default: the image's own checkpoint): the
    launcher's weights step, from the spec to the checked files."""
    spec = spec_for(profile, plan or {}, config, env)
    target = target_dir(spec, base_dir(config, env))
    ensure(spec, target, env, log=log)
    return str(target)
