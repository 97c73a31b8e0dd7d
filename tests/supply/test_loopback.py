"""Plain HTTP only to this machine: the modelcar's puller and `verify REF` decide by the exact host."""
from __future__ import annotations

import pytest

from packager.supply.pull import loopback


@pytest.mark.parametrize("host", ["127.0.0.1:5000", "127.1.2.3", "localhost:5000", "[::1]:5000", "LOCALHOST"])
def test_loopback_hosts_talk_plain_http(host):
    assert loopback(host)


@pytest.mark.parametrize("host", ["localhost.example.com", "127.0.0.1.nip.io:80", "127.evil.com:5000",
                                  "registry.site:5000", "[::2]:5000", "10.0.2.2:5000"])
def test_every_other_host_gets_https(host):
    assert not loopback(host)
