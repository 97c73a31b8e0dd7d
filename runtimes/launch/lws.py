"""A LeaderWorkerSet group: the leader starts the Ray head, waits until the whole group has
joined, then execs the engine; every worker joins the leader's Ray cluster and blocks.

This is vLLM's multi-node recipe (examples/online_serving/multi-node-serving.sh, used by
LWS's docs/examples/vllm/GPU/lws.yaml): `ray start --head --port=6379`, poll until
sum(node["Alive"] for node in ray.nodes()) == LWS_GROUP_SIZE, then `vllm serve ...
--distributed-executor-backend ray` on the leader; `ray start --address=$LWS_LEADER_ADDRESS:6379
--block` on each worker. The launcher runs it so every pod starts the same way (weights, plan,
import path and all), instead of a shell line in the chart.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time

from runtimes.launch.settings import LaunchError, Settings

COUNT_NODES = "import ray; ray.init(address='auto', logging_level='ERROR'); print(sum(n['Alive'] for n in ray.nodes()))"


def head_argv(settings: Settings) -> list[str]:
    return ["ray", "start", "--head", f"--port={settings.ray_port}", "--disable-usage-stats"]


def count_argv(python: str) -> list[str]:
    return [python, "-c", COUNT_NODES]


def worker_argv(settings: Settings) -> list[str]:
    if not settings.leader_address:
        raise LaunchError("a LeaderWorkerSet worker needs LWS_LEADER_ADDRESS (set by the LWS controller)")
    return ["ray", "start", f"--address={settings.leader_address}:{settings.ray_port}", "--block",
            "--disable-usage-stats"]


def start_head(settings: Settings, python: str, log=print, sleep=time.sleep) -> None:
    """Ray head up, then wait until LWS_GROUP_SIZE nodes are alive (the leader counts as one)."""
    try:
        proc = subprocess.run(head_argv(settings), stdout=sys.stderr, stderr=sys.stderr)
    except FileNotFoundError:
        raise LaunchError("`ray` is not installed in this image: a multi-node profile needs vLLM's image, "
                          "which brings it") from None
    if proc.returncode != 0:
        raise LaunchError(f"`{' '.join(head_argv(settings))}` failed (exit {proc.returncode})")
    deadline = time.monotonic() + settings.ray_join_timeout_s
    while True:
        out = subprocess.run(count_argv(python), capture_output=True, text=True)
        last = out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else ""
        alive = int(last) if last.isdigit() else 0  # ray may print a warning last: count it as not yet
        if alive >= settings.group_size:
            log(f"ray: {alive}/{settings.group_size} nodes alive; starting the engine")
            return
        if time.monotonic() > deadline:
            raise LaunchError(f"ray: only {alive} of {settings.group_size} nodes joined within "
                              f"{settings.ray_join_timeout_s} s (PACKAGER_RAY_JOIN_TIMEOUT)", code=1)
        log(f"ray: waiting for the group: {alive}/{settings.group_size} nodes alive")
        sleep(5)


def wait_for_leader(settings: Settings, log=print, sleep=time.sleep) -> None:
    """Block until the leader's Ray port accepts connections, so the exec'd `ray start` joins first try."""
    deadline = time.monotonic() + settings.ray_join_timeout_s
    while True:
        try:
            with socket.create_connection((settings.leader_address, settings.ray_port), timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise LaunchError(f"ray: the leader {settings.leader_address}:{settings.ray_port} did not come up "
                                  f"within {settings.ray_join_timeout_s} s", code=1) from None
            log(f"ray: waiting for the leader at {settings.leader_address}:{settings.ray_port}")
            sleep(5)
