"""runtimes.oci_ref: the one reading of image references and loopback hosts, for every case the
spellings it replaced handled (chart values, rehearse, publish, the modelcar puller, verify REF,
the weights artifact's repository, the launcher's downloads)."""
from __future__ import annotations

import pytest

from runtimes import digests, oci_ref
from runtimes.oci_ref import ImageRef

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("ref, want", [
    ("packager/m:1", ImageRef("", "packager/m", "1", "")),
    ("packager/m", ImageRef("", "packager/m", "", "")),
    ("ubuntu", ImageRef("", "ubuntu", "", "")),
    ("127.0.0.1:5000/packager/m:0.1.0-cpu", ImageRef("127.0.0.1:5000", "packager/m", "0.1.0-cpu", "")),
    ("127.0.0.1:5000/packager/m", ImageRef("127.0.0.1:5000", "packager/m", "", "")),  # a port is not a tag
    ("localhost/m:2", ImageRef("localhost", "m", "2", "")),
    ("registry.example.com/team/model:1.0", ImageRef("registry.example.com", "team/model", "1.0", "")),
    ("[::1]:5000/m:1", ImageRef("[::1]:5000", "m", "1", "")),
    (f"reg.io:443/a/b@{D}", ImageRef("reg.io:443", "a/b", "", D)),
    (f"reg.io/a/b:1@{D}", ImageRef("reg.io", "a/b", "1", D)),
    ("team/model:1", ImageRef("", "team/model", "1", "")),  # `team` has no dot or port: a Hub namespace
])
def test_parse_reads_references_as_docker_does(ref, want):
    assert oci_ref.parse(ref) == want


def test_name_keeps_the_registry():
    assert oci_ref.parse("127.0.0.1:5000/packager/m:1").name == "127.0.0.1:5000/packager/m"
    assert oci_ref.parse(f"packager/m@{D}").name == "packager/m"


@pytest.mark.parametrize("component, host", [
    ("127.0.0.1:5000", True), ("registry.example.com", True), ("localhost", True), ("reg:5000", True),
    ("packager", False), ("team", False), ("LOCALHOSTX", False),
])
def test_a_registry_host_has_a_dot_a_port_or_is_localhost(component, host):
    assert oci_ref.is_registry_host(component) is host


@pytest.mark.parametrize("ref, bare", [
    ("127.0.0.1:5000/packager/m:1", "packager/m:1"), ("packager/m:1", "packager/m:1"),
    ("localhost/m", "m"), ("m", "m"),
])
def test_without_registry_drops_only_a_host(ref, bare):
    assert oci_ref.without_registry(ref) == bare


@pytest.mark.parametrize("ref, want", [
    (f"127.0.0.1:5000/models/m-weights@{D}", ImageRef("127.0.0.1:5000", "models/m-weights", "", D)),
    ("127.0.0.1:5000/packager/m:1-signatures", ImageRef("127.0.0.1:5000", "packager/m", "1-signatures", "")),
    ("myreg/packager/m:1", ImageRef("myreg", "packager/m", "1", "")),  # the caller chose the registry
])
def test_parse_remote_takes_the_first_component_as_the_registry(ref, want):
    assert oci_ref.parse_remote(ref) == want


@pytest.mark.parametrize("host", ["127.0.0.1:5000", "127.1.2.3", "127.9.8.7", "localhost:5000", "LOCALHOST",
                                  "localhost", "[::1]:5000", "[::1]", "::1"])
def test_loopback_hosts(host):
    assert oci_ref.is_loopback(host)


def test_ipv6_loopback_without_a_port_is_loopback():
    # rehearse's own spelling stripped `[::1]` to `:` and sent HTTPS to this machine's registry
    assert oci_ref.is_loopback("[::1]") and oci_ref.is_loopback("::1")


@pytest.mark.parametrize("host", ["localhost.example.com", "localhost.example.com:5000", "127.evil.com:5000",
                                  "127.0.0.1.nip.io", "127.0.0.1.nip.io:80", "registry.site:5000", "[::2]:5000",
                                  "10.0.2.2:5000", "0.0.0.0:5000", ""])
def test_every_other_host_is_not_loopback(host):
    assert not oci_ref.is_loopback(host)


@pytest.mark.parametrize("name, loop", [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                        ("huggingface.co", False), ("10.0.0.1", False), ("", False)])
def test_loopback_names_without_a_port(name, loop):
    assert oci_ref.is_loopback_name(name) is loop


def test_oci_digests(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"hello")
    want = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert digests.oci_digest(b"hello") == want == digests.oci_digest_file(path)
