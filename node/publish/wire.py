"""What goes on the wire: topic names, JSON encoding, the retained `status`/`info` documents and the
MQTT 5 PUBLISH properties (docs/mqtt.md is the contract).

Pure functions with no connection state, so the publisher, its outbox and its connector build
every message the same way, and tests can check the documents without a broker.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from cuas_node import SCHEMA_VERSION, __version__
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

BROKER_STATES = ("connected", "disconnected", "auth_refused", "tls_error", "acl_refused")


class NotConnectedNoiseFilter(logging.Filter):
    """paho 2.x's loop thread logs "Client is not connected" at ERROR once more after every clean
    disconnect; our own logging already reports real losses, so that line is only noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Client is not connected")


# The logger every paho client of the publisher writes to (`Client.enable_logger`).
paho_log = logging.getLogger("cuas_node.publish.paho")
paho_log.addFilter(NotConnectedNoiseFilter())


def topic(root: str, node_id: str, name: str) -> str:
    """`cuas/v1` + `mast-1` + `tracks` → `cuas/v1/mast-1/tracks`."""
    return f"{root.rstrip('/')}/{node_id}/{name}"


def encode(payload: dict[str, Any]) -> bytes:
    """Compact JSON; NaN/Infinity are refused because they are not JSON (consumers would choke)."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def status_payload(state: str, t: float, session: int) -> dict[str, Any]:
    """The retained `status` document (`online` on connect; `offline` as goodbye and Last Will)."""
    return {"type": "status", "state": state, "t": t, "session": session}


def info_payload(
    node_id: str, t: float, position: dict[str, Any] | None, sensors: list[dict[str, str]]
) -> dict[str, Any]:
    """The retained `info` document: who the node is, where it stands and what it senses."""
    info: dict[str, Any] = {
        "type": "info",
        "node_id": node_id,
        "software_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "t": t,
    }
    if position is not None:
        info["position"] = position
    info["sensors"] = list(sensors)
    return info


def publish_properties(expiry: int | None, correlation: bytes | None) -> Properties:
    """MQTT 5 PUBLISH properties: JSON payload, message expiry (stale track updates) and the
    correlation data a commander matches its response with."""
    properties = Properties(PacketTypes.PUBLISH)
    properties.PayloadFormatIndicator = 1
    properties.ContentType = "application/json"
    if expiry is not None:
        properties.MessageExpiryInterval = expiry
    if correlation is not None:
        properties.CorrelationData = correlation
    return properties
