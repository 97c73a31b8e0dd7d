"""The launcher's settings, read once from the environment; bad values are one clear line (exit 2)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from runtimes import layout

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_NO_FIT = 3


class LaunchError(Exception):
    """A clear, one-screen reason not to start; printed without a traceback."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.code = code


def _integer(env: Mapping[str, str], key: str) -> int | None:
    raw = env.get(key, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise LaunchError(f"{key}={raw!r}: expected a positive integer") from None
    if value <= 0:
        raise LaunchError(f"{key}={raw!r}: expected a positive integer")
    return value


def _choice(env: Mapping[str, str], key: str, allowed: tuple[str, ...]) -> str | None:
    raw = env.get(key, "").strip().lower()
    if raw and raw not in allowed:
        raise LaunchError(f"{key}={raw!r}: expected one of {', '.join(allowed)}")
    return raw or None


def role_from_env(env: Mapping[str, str]) -> str:
    """PACKAGER_ROLE, else the LeaderWorkerSet's own variables (worker index 0 is the leader)."""
    explicit = _choice(env, layout.ENV_ROLE, layout.ROLES)
    if explicit:
        return explicit
    index = env.get(layout.LWS_WORKER_INDEX, "").strip()
    if index and env.get(layout.LWS_LEADER_ADDRESS):
        return "leader" if index == "0" else "worker"
    return "server"


@dataclass(frozen=True)
class Settings:
    profile: str | None
    host: str
    port: int
    max_model_len: int | None
    served_model_name: str | None
    role: str = "server"
    dry_run: bool = False
    hardware: str | None = None  # PACKAGER_HARDWARE shorthand
    device: str | None = None  # PACKAGER_DEVICE
    group_size: int = 1  # LWS_GROUP_SIZE
    leader_address: str | None = None  # LWS_LEADER_ADDRESS
    ray_port: int = 6379
    ray_join_timeout_s: int = 900

    @classmethod
    def from_env(cls, env: Mapping[str, str], default_port: int = 8000) -> "Settings":
        return cls(profile=env.get(layout.ENV_PROFILE, "").strip() or None,
                   host=env.get("PACKAGER_HOST", "").strip() or "0.0.0.0",
                   port=_integer(env, "PACKAGER_PORT") or default_port,
                   max_model_len=_integer(env, "PACKAGER_MAX_MODEL_LEN"),
                   served_model_name=env.get("PACKAGER_SERVED_MODEL_NAME", "").strip() or None,
                   role=role_from_env(env),
                   dry_run=env.get(layout.ENV_DRY_RUN, "").strip().lower() in ("1", "true", "yes"),
                   hardware=env.get(layout.ENV_HARDWARE, "").strip() or None,
                   device=_choice(env, layout.ENV_DEVICE, layout.DEVICES),
                   group_size=_integer(env, layout.LWS_GROUP_SIZE) or 1,
                   leader_address=env.get(layout.LWS_LEADER_ADDRESS, "").strip() or None,
                   ray_port=_integer(env, layout.ENV_RAY_PORT) or 6379,
                   ray_join_timeout_s=_integer(env, layout.ENV_RAY_JOIN_TIMEOUT) or 900)
