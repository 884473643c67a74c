"""Check the node's discovery payloads with Home Assistant's own code (run by
tests/test_homeassistant_ha.py in the Home Assistant venv, never imported by the node's tests).

    .venv-ha/bin/python tests/ha_check.py capture.json

`capture.json`: {"prefix": ..., "configs": {topic: config}, "payloads": {topic: [payload, ...]}}
(the retained discovery configs and, per state or availability topic, every payload the node
published there). For each config it does what HA's MQTT discovery does with a message
(homeassistant/components/mqtt/discovery.py): the topic must match HA's discovery topic matcher
and name a supported component, the origin must pass HA's origin schema, and the document
HA's `DISCOVERY_SCHEMA` of the component, which must keep every key (HA drops unknown keys
silently). Then it renders every template with HA's template engine (a real `HomeAssistant`
object) over every payload of its topic, and applies the entity's own rules: a numeric sensor
must get a number or `None`, a binary sensor its `payload_on`/`payload_off`, an availability
its `payload_available`/`payload_not_available`, JSON attributes a JSON object.

Prints one JSON report: {"ha_version", "errors": [...], "states": {unique_id: [rendered, ...]}}.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import voluptuous as vol
from homeassistant.components.mqtt import binary_sensor, sensor
from homeassistant.components.mqtt.abbreviations import ABBREVIATIONS, DEVICE_ABBREVIATIONS
from homeassistant.components.mqtt.discovery import (
    MQTT_ORIGIN_INFO_SCHEMA,
    SUPPORTED_COMPONENTS,
    TOPIC_MATCHER,
)
from homeassistant.components.mqtt.models import MqttValueTemplate, PayloadSentinel
from homeassistant.components.sensor import _numeric_state_expected
from homeassistant.const import __version__ as HA_VERSION
from homeassistant.core import HomeAssistant
from homeassistant.helpers import template as ha_template

SCHEMAS = {"binary_sensor": binary_sensor.DISCOVERY_SCHEMA, "sensor": sensor.DISCOVERY_SCHEMA}


def render(hass: HomeAssistant, source: Any, payload: str) -> Any:
    """`source` rendered as an MQTT entity renders its template for a received payload."""
    tpl = source if isinstance(source, ha_template.Template) else ha_template.Template(source, hass)
    rendered = MqttValueTemplate(tpl, hass=hass).async_render_with_possible_json_value(
        payload, PayloadSentinel.DEFAULT
    )
    return "<render error>" if rendered is PayloadSentinel.DEFAULT else rendered


def check(hass: HomeAssistant, capture: dict[str, Any]) -> dict[str, Any]:
    errors: list[str] = []
    states: dict[str, list[Any]] = {}
    payloads: dict[str, list[str]] = capture["payloads"]
    for topic, original in capture["configs"].items():
        match = TOPIC_MATCHER.match(topic.replace(f"{capture['prefix']}/", "", 1))
        if not match or match.group("component") not in SUPPORTED_COMPONENTS:
            errors.append(f"{topic}: not a discovery topic HA accepts")
            continue
        component = match.group("component")
        doc = json.loads(json.dumps(original))
        expanded = {ABBREVIATIONS.get(k, k) for k in doc} | {
            DEVICE_ABBREVIATIONS.get(k, k) for k in doc["device"]
        }
        if expanded != set(doc) | set(doc["device"]):
            errors.append(f"{topic}: abbreviated keys")
        try:
            MQTT_ORIGIN_INFO_SCHEMA(doc["origin"])
            config = SCHEMAS[component](doc)
        except vol.Invalid as exc:
            errors.append(f"{topic}: refused by HA {component} DISCOVERY_SCHEMA: {exc}")
            continue
        dropped = set(original) - set(config)
        dropped |= {f"device.{k}" for k in set(original["device"]) - set(config["device"])}
        if dropped:
            errors.append(f"{topic}: HA drops {sorted(dropped)}")
        uid = config["unique_id"]
        shown: list[Any] = []
        numeric = component == "sensor" and _numeric_state_expected(
            config.get("device_class"),
            config.get("state_class"),
            config.get("unit_of_measurement"),
            config.get("suggested_display_precision"),
        )
        for payload in payloads.get(config["state_topic"], []):
            value = render(hass, config["value_template"], payload)
            shown.append(value)
            if component == "binary_sensor" and value not in (config["payload_on"], config["payload_off"]):
                errors.append(f"{uid}: {value!r} is neither payload_on nor payload_off ({payload})")
            if numeric and value != "None":
                try:
                    float(value)
                except (TypeError, ValueError):
                    errors.append(f"{uid}: {value!r} is not a number ({payload})")
            if component == "sensor" and not numeric and value in ("", "<render error>"):
                errors.append(f"{uid}: renders {value!r} ({payload})")
        states[uid] = shown
        if not shown:
            errors.append(f"{uid}: no payload on {config['state_topic']}")
        for avail in config.get("availability", []):
            for payload in payloads.get(avail["topic"], []):
                value = (
                    render(hass, avail.get("value_template"), payload)
                    if "value_template" in avail
                    else payload
                )
                if value not in (avail["payload_available"], avail["payload_not_available"]):
                    errors.append(f"{uid}: availability renders {value!r} ({payload})")
        if "json_attributes_template" in config:
            for payload in payloads.get(config["json_attributes_topic"], []):
                value = render(hass, config["json_attributes_template"], payload)
                try:
                    attributes = json.loads(value)
                except (TypeError, ValueError):
                    attributes = None
                if not isinstance(attributes, dict):
                    errors.append(f"{uid}: json attributes {value!r} are not a JSON object")
    return {"ha_version": HA_VERSION, "errors": errors, "states": states}


async def main(path: Path) -> dict[str, Any]:
    hass = HomeAssistant(str(path.parent / "ha-config"))
    try:
        return check(hass, json.loads(path.read_text()))
    finally:
        await hass.async_stop(force=True)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))))
