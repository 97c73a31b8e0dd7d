"""API keys (issue 9, item 1): where they come from and how they are compared."""
from __future__ import annotations

import pytest

from runtimes.fallback.args import parse_args
from runtimes.fallback.auth import authorized, needs_key, resolve_keys


def test_flags_win_over_the_environment_and_repeat_for_rotation():
    a = parse_args(["--model", "m", "--api-key", "old", "--api-key", "new"])
    keys = resolve_keys(a.api_key, {"PACKAGER_API_KEY": "env"})
    assert keys == (b"old", b"new")
    for k in ("old", "new"):  # both accepted while clients move over
        assert authorized(f"Bearer {k}".encode(), keys)
    assert not authorized(b"Bearer env", keys)


@pytest.mark.parametrize("env,want", [({"PACKAGER_API_KEY": "a"}, (b"a",)), ({"VLLM_API_KEY": "b"}, (b"b",)),
                                      ({"PACKAGER_API_KEY": " "}, ()), ({}, ())])
def test_keys_from_the_environment(env, want):
    assert resolve_keys([], env) == want


@pytest.mark.parametrize("header", [None, b"", b"Bearer", b"Bearer ", b"bearer wrong", b"Basic k", b"k", b"Bearer k2"])
def test_wrong_or_missing_keys_are_refused(header):
    assert not authorized(header, (b"k",))
    assert authorized(b"bearer k", (b"k",)) and authorized(b"Bearer k", (b"k",))


def test_probes_and_metrics_stay_open():
    assert needs_key("/v1/models") and needs_key("/v1/chat/completions") and needs_key("/v1/completions")
    assert not any(needs_key(p) for p in ("/v1/health/live", "/v1/health/ready", "/health", "/metrics"))
