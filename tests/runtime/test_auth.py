"""API keys (issue 9, item 1; issue 20, item 5): where they come from, how they are compared,
which paths need them (one rule for the fallback server and the vLLM middleware)."""
from __future__ import annotations

import pytest

from runtimes.fallback.args import parse_args
from runtimes.api_keys import authorized, needs_key, resolve_keys


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


def test_probes_and_metrics_stay_open_and_every_other_path_needs_the_key():
    assert not any(needs_key(p) for p in ("/v1/health/live", "/v1/health/ready", "/health", "/ping", "/metrics"))
    for p in ("/v1/models", "/v1/chat/completions", "/v1/completions", "/invocations", "/tokenize", "/docs",
              "/openapi.json", "/v1/health/other", "/metrics/", "/health/", "//health", "/", ""):
        assert needs_key(p), p
