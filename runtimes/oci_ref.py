"""OCI image references and registry hosts: the one rule packager and the in-image code share.

Standard library only: the modelcar puller and the launcher import it inside images that
carry no packager dependencies, and the rule must not fork between package time and start time.

    [registry/]repository[:tag][@sha256:digest]

The first path component is a registry host only when the reference has another component
after it and it looks like a host (a dot, a port, or exactly `localhost`): Docker's rule, so
`packager/m:1` is a repository on the default registry and `127.0.0.1:5000/packager/m:1` is not.
Plain HTTP is spoken only to a loopback host (127.0.0.0/8, ::1, exactly `localhost`); a prefix
test let `localhost.example.com` and `127.0.0.1.nip.io` through once.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class ImageRef:
    registry: str  # host[:port], "" when the reference names none
    repository: str  # the path under the registry, as its /v2/ API names it
    tag: str  # "" when none
    digest: str  # "sha256:...", "" when none

    @property
    def name(self) -> str:
        """registry/repository: what `docker tag` and the chart's image.repository take."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository


def is_registry_host(component: str) -> bool:
    """Whether a reference's first path component names a registry rather than a repository."""
    return "." in component or ":" in component or component == "localhost"


def _split(ref: str) -> tuple[str, str, str]:
    """(name, tag, digest): a colon is a tag only in the last path component, never a host's port."""
    name, _, digest = ref.partition("@")
    tag = ""
    if ":" in name.rsplit("/", 1)[-1]:
        name, _, tag = name.rpartition(":")
    return name, tag, digest


def parse(ref: str) -> ImageRef:
    """Split a reference as Docker reads it. No validation: callers check what they need."""
    name, tag, digest = _split(ref)
    first, slash, rest = name.partition("/")
    if slash and is_registry_host(first):
        return ImageRef(first, rest, tag, digest)
    return ImageRef("", name, tag, digest)


def parse_remote(ref: str) -> ImageRef:
    """`HOST[:PORT]/REPOSITORY[:TAG][@DIGEST]` handed to a registry client: the first component
    is the registry whatever it looks like (the caller already chose the registry)."""
    host, _, rest = ref.partition("/")
    name, tag, digest = _split(rest)
    return ImageRef(host, name, tag, digest)


def without_registry(ref: str) -> str:
    """`127.0.0.1:5000/packager/m:1` -> `packager/m:1`; a reference naming no registry is unchanged."""
    first, slash, rest = ref.partition("/")
    return rest if slash and is_registry_host(first) else ref


def host_name(hostport: str) -> str:
    """`host[:port]` -> host: `[::1]:5000` and `[::1]` -> `::1`; a bare IPv6 address stays whole."""
    if hostport.startswith("["):
        return hostport[1:].partition("]")[0]
    if hostport.count(":") == 1:
        return hostport.partition(":")[0]
    return hostport


def is_loopback_name(host: str) -> bool:
    """A bare host name or address (no port) that is this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback(hostport: str) -> bool:
    """`host[:port]` names this machine exactly: the only place plain HTTP goes unasked."""
    return is_loopback_name(host_name(hostport))

