"""Derive docs/schemas/homeassistant-discovery.schema.json from Home Assistant's own MQTT discovery
schemas, for the components the node publishes (`binary_sensor`, `sensor`).

Runs in the Home Assistant venv (`.venv-ha`, the pinned `homeassistant` of docs/outputs.md):
    .venv-ha/bin/python scripts/ha_discovery_schema.py [--check]

The structure follows HA's voluptuous schemas (mqtt/config.py MQTT_RO_SCHEMA, mqtt/mixins.py
MQTT_ENTITY_COMMON_SCHEMA and the availability and device schemas, mqtt/discovery.py origin
schema, mqtt/binary_sensor.py and mqtt/sensor.py DISCOVERY_SCHEMA); every enumeration (device
classes, state classes, entity categories, availability modes, units per device class) is read
from the installed HA, and this script checks that each key it writes is one HA's schema knows
and each key HA's schema knows is written, so the JSON Schema cannot drift from HA silently.
Two deliberate differences, both stricter: HA's discovery schemas *drop* unknown keys
(`REMOVE_EXTRA`), the JSON Schema refuses them (a misspelt key would otherwise vanish without a
word), and where HA coerces (`"1"` to a QoS of 1) the JSON Schema wants the JSON type itself.
`--check` fails if the committed file differs from what HA derives.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import voluptuous as vol
from homeassistant.components.binary_sensor import BinarySensorDeviceClass
from homeassistant.components.mqtt import binary_sensor as mqtt_binary_sensor
from homeassistant.components.mqtt import sensor as mqtt_sensor
from homeassistant.components.mqtt.mixins import AVAILABILITY_MODES, MQTT_ENTITY_DEVICE_INFO_SCHEMA
from homeassistant.components.sensor import (
    DEVICE_CLASS_STATE_CLASSES,
    DEVICE_CLASS_UNITS,
    SensorDeviceClass,
    SensorStateClass,
)
from homeassistant.const import EntityCategory
from homeassistant.const import __version__ as HA_VERSION
from homeassistant.helpers.config_validation import CONFIGURATION_URL_PROTOCOL_SCHEMA_LIST

OUT = Path(__file__).resolve().parent.parent / "docs" / "schemas" / "homeassistant-discovery.schema.json"

# valid_topic / valid_subscribe_topic (mqtt/util.py): UTF-8, 1..65535 bytes, no NUL or control
# characters, no non-characters; `+` fills a whole level, `#` only as the last level.
_CHAR = r"[^\u0000-\u001f\u007f-\u009f\ufdd0-\ufdef\ufffe\uffff#+/]"
SUBSCRIBE_TOPIC = {
    "type": "string",
    "minLength": 1,
    "maxLength": 65535,
    "pattern": rf"^(?:(?:\+|{_CHAR}*)/)*(?:\+|#|{_CHAR}*)$",
}
TEMPLATE = {"type": "string", "description": "a Jinja2 template (cv.template)"}
STRING = {"type": "string"}
POSITIVE_INT = {"type": "integer", "minimum": 0}
URL = {
    "type": "string",
    "pattern": "^(" + "|".join(sorted(p.value for p in CONFIGURATION_URL_PROTOCOL_SCHEMA_LIST)) + "):",
}


def keys(schema: Any) -> set[str]:
    """The keys a voluptuous schema (or vol.All of schemas) knows."""
    found: set[str] = set()
    if isinstance(schema, vol.All):
        for inner in schema.validators:
            found |= keys(inner)
    elif isinstance(schema, vol.Schema) and isinstance(schema.schema, dict):
        found |= {str(k) for k in schema.schema}
    return found


def common() -> dict[str, Any]:
    """MQTT_BASE_SCHEMA + MQTT_ENTITY_COMMON_SCHEMA (availability, device, origin, ...)."""
    availability_item = {
        "type": "object",
        "required": ["topic"],
        "additionalProperties": False,
        "properties": {
            "topic": SUBSCRIBE_TOPIC,
            "payload_available": STRING,
            "payload_not_available": STRING,
            "value_template": TEMPLATE,
        },
    }
    device = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "identifiers": {"anyOf": [STRING, {"type": "array", "items": STRING}]},
            "connections": {
                "type": "array",
                "items": {"type": "array", "items": STRING, "minItems": 2, "maxItems": 2},
            },
            **{
                k: STRING
                for k in (
                    "manufacturer",
                    "model",
                    "name",
                    "hw_version",
                    "serial_number",
                    "sw_version",
                    "via_device",
                    "suggested_area",
                )
            },
            "configuration_url": URL,
        },
        "anyOf": [
            {"required": ["identifiers"], "properties": {"identifiers": {"minLength": 1, "minItems": 1}}},
            {"required": ["connections"], "properties": {"connections": {"minItems": 1}}},
        ],
    }
    device_keys = set(device["properties"]) | {"via_hub"}  # via_hub: deprecated alias
    assert keys(MQTT_ENTITY_DEVICE_INFO_SCHEMA) <= device_keys, keys(MQTT_ENTITY_DEVICE_INFO_SCHEMA)
    return {
        "qos": {"type": "integer", "enum": [0, 1, 2]},
        "encoding": STRING,
        "availability_topic": SUBSCRIBE_TOPIC,
        "availability_template": TEMPLATE,
        "payload_available": STRING,
        "payload_not_available": STRING,
        "availability_mode": {"enum": sorted(AVAILABILITY_MODES)},
        "availability": {"anyOf": [availability_item, {"type": "array", "items": availability_item}]},
        "device": device,
        "origin": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {"name": STRING, "sw_version": STRING, "support_url": URL},
        },
        "enabled_by_default": {"type": "boolean"},
        "entity_category": {"enum": [c.value for c in EntityCategory]},
        "icon": {"type": "string", "pattern": ":", "description": "prefix:name (cv.icon)"},
        "json_attributes_topic": SUBSCRIBE_TOPIC,
        "json_attributes_template": TEMPLATE,
        "object_id": STRING,
        "unique_id": STRING,
        "state_topic": SUBSCRIBE_TOPIC,
        "value_template": TEMPLATE,
        "name": {"type": ["string", "null"]},
        "expire_after": POSITIVE_INT,
        "force_update": {"type": "boolean"},
    }


def binary_sensor() -> dict[str, Any]:
    props = {
        **common(),
        "device_class": {"enum": [*(c.value for c in BinarySensorDeviceClass), None]},
        "off_delay": POSITIVE_INT,
        "payload_on": STRING,
        "payload_off": STRING,
    }
    check(props, mqtt_binary_sensor.DISCOVERY_SCHEMA, "binary_sensor")
    return {
        "type": "object",
        "required": ["state_topic"],
        "not": {"required": ["availability", "availability_topic"]},  # vol.Exclusive
        "additionalProperties": False,
        "properties": props,
    }


def sensor() -> dict[str, Any]:
    props = {
        **common(),
        "device_class": {"enum": [*(c.value for c in SensorDeviceClass), None]},
        "last_reset_value_template": TEMPLATE,
        "suggested_display_precision": POSITIVE_INT,
        "state_class": {"enum": [*(c.value for c in SensorStateClass), None]},
        "unit_of_measurement": {"type": ["string", "null"]},
    }
    check(props, mqtt_sensor.DISCOVERY_SCHEMA, "sensor")
    # What HA's sensor entity accepts together (sensor/__init__.py warns and ignores otherwise):
    # the units and state classes of each device class.
    rules: list[dict[str, Any]] = []
    for device_class in SensorDeviceClass:
        then: dict[str, Any] = {}
        units = DEVICE_CLASS_UNITS.get(device_class)
        if units:
            then["unit_of_measurement"] = {"enum": sorted(str(u) for u in units if u is not None)}
        if device_class in DEVICE_CLASS_STATE_CLASSES:
            then["state_class"] = {
                "enum": sorted(str(c.value) for c in DEVICE_CLASS_STATE_CLASSES[device_class])
            }
        if then:
            rules.append(
                {
                    "if": {
                        "required": ["device_class"],
                        "properties": {"device_class": {"const": device_class.value}},
                    },
                    "then": {"properties": then},
                }
            )
    return {
        "type": "object",
        "required": ["state_topic"],
        "not": {
            "anyOf": [
                {"required": ["availability", "availability_topic"]},
                {"required": ["last_reset_topic"]},
            ]
        },
        "additionalProperties": False,
        "properties": props,
        "allOf": rules,
    }


def check(props: dict[str, Any], discovery_schema: Any, component: str) -> None:
    """Every key HA's discovery schema knows is described here, and nothing else."""
    ha = keys(discovery_schema) - {"last_reset_topic"}  # removed in HA 2023.6: refused here
    ours = set(props)
    if ha != ours:
        sys.exit(
            f"{component}: HA knows {sorted(ha - ours)} not described here; {sorted(ours - ha)} unknown to HA"
        )


def derive() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:cuas-node:schema:v1:homeassistant-discovery",
        "title": "Home Assistant MQTT discovery config (binary_sensor, sensor)",
        "description": (
            "Derived by scripts/ha_discovery_schema.py from the MQTT discovery schemas of Home Assistant "
            f"{HA_VERSION}. Pick the definition by the discovery topic's component. Stricter than HA: "
            "unknown keys are refused (HA drops them silently) and values must have their JSON type "
            "(HA coerces)."
        ),
        "x-home-assistant-version": HA_VERSION,
        "$defs": {"binary_sensor": binary_sensor(), "sensor": sensor()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the committed schema differs")
    args = ap.parse_args()
    text = json.dumps(derive(), indent=1, ensure_ascii=False) + "\n"
    if args.check:
        if OUT.read_text() != text:
            print(f"{OUT} differs from what Home Assistant {HA_VERSION} derives", file=sys.stderr)
            return 1
        print(f"{OUT.name}: matches Home Assistant {HA_VERSION}")
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT} (Home Assistant {HA_VERSION})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
