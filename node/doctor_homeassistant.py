"""`doctor` line of the Home Assistant output (docs/outputs.md#home-assistant-outputshomeassistant).

Why it reads the broker: the output has no connection of its own (it publishes through the node's
MQTT link, which the `broker` line checks), so what can go wrong is that the discovery configs are
not on the broker: the node has not run since the output was enabled, or the broker's ACL refuses
the discovery prefix to the node. The check subscribes to the configs the node would publish and
counts the retained ones. Like the other output checks it publishes nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from cuas_node.config import Config, ConfigError, read_password
from cuas_node.doctor_checklist import Status
from cuas_node.outputs.ha_discovery import discovery
from cuas_node.outputs.homeassistant import read_marker
from cuas_node.outputs.outputs import homeassistant_settings, homeassistant_target
from cuas_node.publish.client import client_id, tls_context

NAME = "output homeassistant"


def homeassistant_line(config: Config, timeout_s: float) -> tuple[Status, str, str] | None:
    """(status, message, fix) of the HA output, or None when there is none to check."""
    section = config.outputs.homeassistant
    target = homeassistant_target(config)
    if section is None:
        left = read_marker(config.node.state_dir)
        if not left:
            return None
        return (
            "PASS",
            f"{target}: section removed; the node removes its {len(left)} retained topic(s) when it runs",
            "",
        )
    if not section.enabled:
        return "PASS", f"{target}: disabled (the node removes its entities from the broker when it runs)", ""
    topics = [t for t, _ in discovery(homeassistant_settings(config))]
    try:
        held = retained_on_broker(config, topics, timeout_s)
    except (OSError, ConfigError, TimeoutError) as exc:
        return "FAIL", f"{target}: cannot read the broker: {exc}", "see the broker line"
    if len(held) == len(topics):
        return "PASS", f"{target}: {len(topics)} entities, every discovery config retained on the broker", ""
    identity = client_id(config.mqtt, config.node.id)
    prefix = homeassistant_settings(config).discovery_prefix
    return (
        "WARN",
        f"{target}: {len(held)} of {len(topics)} discovery configs retained on the broker",
        "the node publishes them when it runs (start it, or restart it after a config change); if it "
        f"runs, the broker's ACL must let {identity} write {prefix}/# "
        "(its log says 'broker refused the retained message')",
    )


def retained_on_broker(config: Config, topics: list[str], timeout_s: float) -> set[str]:
    """The subset of `topics` the broker holds a (non-empty) retained message for."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    mqtt = config.mqtt
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id(mqtt, config.node.id) + "-doctor-ha",
        protocol=MQTTProtocolVersion.MQTTv311,
    )
    client.connect_timeout = timeout_s
    if mqtt.username is not None:
        client.username_pw_set(mqtt.username, read_password(mqtt))
    if mqtt.tls:
        client.tls_set_context(tls_context(mqtt))
    held: set[str] = set()
    subscribed = threading.Event()
    lock = threading.Lock()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        if msg.retain and msg.payload:
            with lock:
                held.add(msg.topic)

    client.on_message = on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    client.on_connect = lambda c, *_args: c.subscribe([(t, 0) for t in topics])
    client.connect(mqtt.host, mqtt.port, keepalive=max(5, int(timeout_s) + 5))
    client.loop_start()
    try:
        if not subscribed.wait(timeout_s):
            raise TimeoutError(f"no SUBACK in {timeout_s:g} s")
        # The broker sends retained messages right after the SUBACK; give them a moment.
        deadline = time.monotonic() + min(1.0, timeout_s)
        while time.monotonic() < deadline:
            with lock:
                if len(held) == len(topics):
                    break
            time.sleep(0.05)
        with lock:
            return set(held)
    finally:
        client.disconnect()
        client.loop_stop()
