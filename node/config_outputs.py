"""The `[outputs]` section: the node's standard outputs beside MQTT (docs/outputs.md).

Each output is optional and off unless configured (`[outputs.sapient]` and
`[outputs.homeassistant]` are one table each: the node is one SAPIENT ASM and one Home Assistant
device); `[[outputs.cot]]` is a list because a node may feed several TAK destinations at once (a
local ATAK multicast group and a TAK server). Every key is documented in docs/config.md with its
environment variable.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from cuas_node.config_sensors import IDENT_PATTERN, Section

# host: a name, an IPv4 address, or an IPv6 literal in brackets (with an optional `%zone`)
COT_URL_PATTERN = r"^(udp|tcp|tls)://([A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?\]):[0-9]{1,5}$"


class CotOutput(Section):
    """One Cursor-on-Target destination (ATAK/WinTAK multicast, or a TAK server)."""

    name: str | None = Field(default=None, pattern=IDENT_PATTERN, description="in health and logs")
    enabled: bool = True
    url: str = Field(
        pattern=COT_URL_PATTERN,
        description="udp://239.2.3.1:6969 (SA multicast), tcp://host:8087 or tls://host:8089; "
        "an IPv6 address in brackets: tcp://[2001:db8::5]:8087, udp://[ff02::1%eth0]:6969",
    )
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None
    affiliation: Literal["p", "u", "a", "f", "n", "s", "h", "j", "k", "o"] = Field(
        default="u", description="CoT affiliation of drone tracks (u unknown, s suspect, h hostile, ...)"
    )
    track_rate_hz: float = Field(default=1.0, gt=0, le=20, description="events per track per second, at most")
    node_marker_interval_s: float = Field(default=30.0, ge=1, le=3600)
    uid_prefix: str = Field(default="cuas", pattern=IDENT_PATTERN)
    queue_size: int = Field(default=256, ge=1, le=100000)

    @model_validator(mode="after")
    def _tls_needs_a_client_certificate(self) -> CotOutput:
        host, port_text = self.url.split("://", 1)[1].rsplit(":", 1)
        if not 1 <= int(port_text) <= 65535:
            raise ValueError("url: the port must be 1..65535")
        if host.startswith("[") and not _is_ipv6(host[1:-1]):
            raise ValueError(f"url: {host} is not an IPv6 address")
        if host.startswith("[") and needs_zone(host[1:-1]):
            example = self.url.replace("]", "%eth0]", 1)
            raise ValueError(f"url: {host} is link-local: name the interface, e.g. {example}")
        if self.url.startswith("tls://") and (self.tls_cert_file is None or self.tls_key_file is None):
            raise ValueError("a tls:// url needs tls_cert_file and tls_key_file (TAK servers use mutual TLS)")
        return self


def _is_ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False


def needs_zone(address: str) -> bool:
    """An IPv6 link-local (or interface-local) address without its `%zone`: the system cannot
    connect a socket to it without knowing the interface (ff02::1 exists on every link)."""
    ip = ipaddress.IPv6Address(address)
    if ip.scope_id:
        return False
    return ip.is_link_local or (ip.is_multicast and ip.packed[1] & 0x0F in (1, 2))


UUID4_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
HOST_PATTERN = r"^[A-Za-z0-9_.:%-]+$"  # a name, IPv4, or IPv6 (no brackets; `%zone`)


class SapientOutput(Section):
    """The node as a SAPIENT (BSI Flex 335 v2.0) ASM, connected to a middleware or fusion node."""

    enabled: bool = True
    host: str = Field(
        pattern=HOST_PATTERN,
        description="the SAPIENT middleware (e.g. Apex) or fusion node: a name, an IPv4 or IPv6 address",
    )
    port: int = Field(ge=1, le=65535, description="its port for ASMs (Apex: the Child connection)")
    node_id: str | None = Field(
        default=None,
        pattern=UUID4_PATTERN,
        description="lower-case UUID v4; None: derived stably from node.id",
    )
    status_interval_s: float = Field(default=5.0, ge=1, le=3600, description="status report period")
    tls: bool = Field(default=False, description="TLS to the peer (server certificate verified)")
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    queue_size: int = Field(default=256, ge=1, le=100000)

    @model_validator(mode="after")
    def _client_certificate_pairs(self) -> SapientOutput:
        if (":" in self.host or "%" in self.host) and not _is_ipv6(self.host):
            raise ValueError(f"host: {self.host!r} is neither a host name nor an IPv4 or IPv6 address")
        if ":" in self.host and needs_zone(self.host):
            raise ValueError(f"host: {self.host} is link-local: name the interface, e.g. {self.host}%eth0")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together (a client certificate and its key)")
        return self


DISCOVERY_PREFIX_PATTERN = r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$"


class HomeAssistantOutput(Section):
    """Home Assistant MQTT discovery: the node as one HA device, on the broker it publishes to."""

    enabled: bool = Field(default=True, description="false removes the node's entities from Home Assistant")
    discovery_prefix: str = Field(
        default="homeassistant",
        pattern=DISCOVERY_PREFIX_PATTERN,
        description="Home Assistant's MQTT discovery prefix (its MQTT integration's setting)",
    )
    device_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="the device's name in HA; None: cuas-node <node id>",
    )
    drone_classes: tuple[Literal["multirotor", "fixed_wing", "unknown", "bird", "aircraft"], ...] = Field(
        default=("multirotor", "fixed_wing", "unknown"),
        min_length=1,
        description="class labels of confirmed tracks counted as drones (and for the nearest drone)",
    )
    state_interval_s: float = Field(
        default=1.0,
        ge=0.1,
        le=3600,
        description="the HA state document is sent on change, at most this often",
    )
    queue_size: int = Field(default=256, ge=1, le=100000)

    @model_validator(mode="after")
    def _distinct_classes(self) -> HomeAssistantOutput:
        if len(set(self.drone_classes)) != len(self.drone_classes):
            raise ValueError("drone_classes: each class once")
        return self


class OutputsSection(Section):
    cot: list[CotOutput] = Field(default_factory=list)
    sapient: SapientOutput | None = None
    homeassistant: HomeAssistantOutput | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> OutputsSection:
        names = [c.name for c in self.cot if c.name is not None]
        shared = sorted({n for n in names if names.count(n) > 1})
        if shared:
            raise ValueError(f"[[outputs.cot]] names must differ: {', '.join(shared)} used more than once")
        return self
