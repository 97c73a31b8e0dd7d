"""Plain HTTP to a registry only on loopback (127.0.0.0/8, ::1, localhost
exactly) or with --insecure-registry: a prefix test used to let
`localhost.example.com` and `127.evil.com` through (issue 9, item 7)."""
from __future__ import annotations

import pytest

from packager.publish import is_loopback, parse_registry

LOOPBACK = ["127.0.0.1:5000", "oci://127.0.0.1:5000/charts", "127.9.8.7", "localhost:5000", "LOCALHOST",
            "[::1]:5000", "::1"]
REMOTE = ["localhost.example.com", "localhost.example.com:5000", "127.evil.com:5000", "127.0.0.1.nip.io",
          "registry.example.com/team", "10.0.0.1:5000", "[::2]:5000", "0.0.0.0:5000"]


@pytest.mark.parametrize("ref", LOOPBACK)
def test_loopback_registries_speak_plain_http(ref):
    assert parse_registry(ref).plain_http


@pytest.mark.parametrize("ref", REMOTE)
def test_other_registries_need_tls_unless_insecure_is_asked_for(ref):
    reg = parse_registry(ref)
    assert not reg.plain_http and not is_loopback(reg.host)
    assert parse_registry(ref, insecure=True).plain_http


def test_publish_takes_insecure_registry(run_cli):
    code, out, err = run_cli("publish", "--help")
    assert code == 0 and "--insecure-registry" in out
