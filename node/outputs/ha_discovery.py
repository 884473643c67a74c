"""Home Assistant MQTT discovery: the retained config documents that make the node one HA device.

Pure functions (no broker, no thread): `discovery` lists (topic, document) for every entity, so
tests validate the very documents the node publishes, and docs/outputs.md shows them.

Where each entity's state comes from, and why:
- **connectivity** reads the node's own retained `status` (`online`/`offline`, docs/mqtt.md):
  the Last Will turns it off when the node dies. It has no `availability` of its own: with
  availability on the same topic it could only ever be "on" or "unavailable", never "off".
- every other entity has its **availability on `status`**: when the node stops or dies (Last
  Will) HA shows them "unavailable" rather than a last value that nobody updates. A sensor's
  state is also unavailable until the node's first `health` names it (a text sensor has no
  "unknown" of its own): a second availability on the state document, both required.
- their **state** comes from one small retained document the node publishes itself
  (`<topic_root>/<node id>/homeassistant`, `ha_state.py`), not from templates over the node's
  `tracks`, `alerts` and `health`: a template cannot hold which alerts are still active (one
  alert clearing while another goes on must not turn the alert off), `tracks` is not retained (a
  restarted HA would show nothing until the next message), and `tracks` arrives up to 10 times a
  second, which would write HA's recorder at that rate. The node counts, measures and
  aggregates in tested Python, sends only changes (rate-limited), and the templates here only
  pick a key.

unique_ids are `cuas_<node id>_<entity key>` (sensor entities: `..._sensor_<sensor id>`), so they
survive restarts and config reloads; discovery topics are
`<prefix>/<component>/<node id>/<entity key>/config` with the ids reduced to the characters HA
allows in a topic's node and object id (`[A-Za-z0-9_-]`). The node id is a whole topic level so
that a broker ACL can confine each node to its own (`pattern write homeassistant/+/%u/+/config`,
systemd/mosquitto-acl.example).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Any

ORIGIN_NAME = "cuas-node"


@dataclass(frozen=True, slots=True)
class HaSettings:
    node_id: str
    topic_root: str
    discovery_prefix: str
    device_name: str
    sensors: tuple[str, ...]  # configured sensor ids, one entity each
    sw_version: str
    qos: int = 1


def topic_id(text: str) -> str:
    """`text` reduced to `[A-Za-z0-9_-]` (HA's rule for discovery topic levels). Two ids that
    reduce alike (`radar.1`, `radar_1`) would share a topic: a reduced id gets a short checksum
    of the original, so it stays distinct and stable."""
    reduced = re.sub(r"[^A-Za-z0-9_-]", "_", text)
    return reduced if reduced == text else f"{reduced}_{zlib.crc32(text.encode()) & 0xFFFF:04x}"


def node_topic(settings: HaSettings, name: str) -> str:
    return f"{settings.topic_root.rstrip('/')}/{settings.node_id}/{name}"


def state_topic(settings: HaSettings) -> str:
    """The node's retained Home Assistant state document (`ha_state.py`)."""
    return node_topic(settings, "homeassistant")


def unique_id(settings: HaSettings, key: str) -> str:
    return f"cuas_{settings.node_id}_{key}"


def device(settings: HaSettings) -> dict[str, Any]:
    return {
        "identifiers": [f"cuas-node_{settings.node_id}"],
        "name": settings.device_name,
        "manufacturer": "cuas-node project",
        "model": "cuas-node",
        "sw_version": settings.sw_version,
    }


def availability(settings: HaSettings) -> list[dict[str, Any]]:
    return [
        {
            "topic": node_topic(settings, "status"),
            "value_template": "{{ value_json.state }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        }
    ]


def _entity(settings: HaSettings, key: str, name: str, **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": name,
        "unique_id": unique_id(settings, key),
        "object_id": f"cuas_{topic_id(settings.node_id)}_{topic_id(key)}",
        "device": device(settings),
        "origin": {"name": ORIGIN_NAME, "sw_version": settings.sw_version},
        "qos": settings.qos,
    }
    doc.update(fields)
    return doc


def _from_state(settings: HaSettings, template: str) -> dict[str, Any]:
    return {
        "state_topic": state_topic(settings),
        "value_template": template,
        "availability": availability(settings),
    }


def entities(settings: HaSettings) -> list[tuple[str, str, dict[str, Any]]]:
    """(component, entity key, config document) for every entity of the node's device."""
    out: list[tuple[str, str, dict[str, Any]]] = [
        (
            "binary_sensor",
            "connectivity",
            _entity(
                settings,
                "connectivity",
                "Connectivity",
                state_topic=node_topic(settings, "status"),
                value_template="{{ value_json.state }}",
                payload_on="online",
                payload_off="offline",
                device_class="connectivity",
                entity_category="diagnostic",
            ),
        ),
        (
            "sensor",
            "drones",
            _entity(
                settings,
                "drones",
                "Drones detected",
                icon="mdi:quadcopter",
                state_class="measurement",
                **_from_state(settings, "{{ value_json.drones }}"),
            ),
        ),
        (
            "sensor",
            "nearest_distance",
            _entity(
                settings,
                "nearest_distance",
                "Nearest drone distance",
                device_class="distance",
                unit_of_measurement="m",
                state_class="measurement",
                suggested_display_precision=0,
                **_from_state(settings, "{{ value_json.nearest_m | default('None') }}"),
            ),
        ),
        (
            "sensor",
            "nearest_bearing",
            _entity(
                settings,
                "nearest_bearing",
                "Nearest drone bearing",
                icon="mdi:compass-outline",
                unit_of_measurement="°",
                suggested_display_precision=0,
                **_from_state(settings, "{{ value_json.nearest_bearing_deg | default('None') }}"),
            ),
        ),
        (
            "binary_sensor",
            "drone_alert",
            _entity(
                settings,
                "drone_alert",
                "Drone alert",
                device_class="safety",
                payload_on="ON",
                payload_off="OFF",
                json_attributes_topic=state_topic(settings),
                json_attributes_template="{{ value_json.alert_detail | tojson }}",
                **_from_state(settings, "{{ 'ON' if value_json.alert else 'OFF' }}"),
            ),
        ),
    ]
    for sensor_id in settings.sensors:
        key = f"sensor_{sensor_id}"
        reported = f"value_json.sensors['{sensor_id}']"
        fields = _from_state(settings, f"{{{{ {reported} | default('unknown') }}}}")
        # Unavailable until the node's first `health` names the sensor (a text sensor has no
        # "unknown" of its own), and whenever the node is offline.
        fields["availability"] = [
            *availability(settings),
            {
                "topic": state_topic(settings),
                "value_template": f"{{{{ 'online' if {reported} is defined else 'offline' }}}}",
                "payload_available": "online",
                "payload_not_available": "offline",
            },
        ]
        fields["availability_mode"] = "all"
        out.append(
            (
                "sensor",
                key,
                _entity(
                    settings,
                    key,
                    f"Sensor {sensor_id}",
                    icon="mdi:access-point",
                    entity_category="diagnostic",
                    **fields,
                ),
            )
        )
    return out


def config_topic(settings: HaSettings, component: str, key: str) -> str:
    return f"{settings.discovery_prefix}/{component}/{topic_id(settings.node_id)}/{topic_id(key)}/config"


def discovery(settings: HaSettings) -> list[tuple[str, dict[str, Any]]]:
    """(config topic, config document) for every entity: what the node publishes, retained."""
    return [(config_topic(settings, component, key), doc) for component, key, doc in entities(settings)]
