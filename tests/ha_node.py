"""Helpers of the Home Assistant tests: the node's `sim demo` with `[outputs.homeassistant]` set
from the environment, and what the broker holds retained afterwards.

Home Assistant itself (for the opt-in test) lives in its own venv: `$CUAS_HA_PYTHON`, else
`.venv-ha/bin/python` (docs/outputs.md says how to make it).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import MosquittoBroker, MqttSubscriber
from tests.sim_demo import start_sim_demo

REPO = Path(__file__).resolve().parent.parent
NODE = "sim-demo"  # the demo scenario's node id
STATE_TOPIC = f"cuas/v1/{NODE}/homeassistant"
STATUS_TOPIC = f"cuas/v1/{NODE}/status"


def ha_python() -> Path | None:
    for candidate in (os.environ.get("CUAS_HA_PYTHON"), REPO / ".venv-ha" / "bin" / "python"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def run_node(
    broker: MosquittoBroker,
    state_home: Path,
    section: dict[str, Any] | None,
    *args: str,
    duration: float = 6.0,
) -> str:
    """One whole `sim demo` run (at 4x speed); `section` is `[outputs.homeassistant]` as JSON
    (None: no such section). Its state (the HA marker file among it) stays in `state_home`."""
    env = {"CUAS_OUTPUTS__HOMEASSISTANT": json.dumps(section)} if section is not None else {}
    proc = start_sim_demo(broker, state_home, "--speed", "4", "--duration", str(duration), *args, env=env)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out[-4000:]
    return out


def marker(state_home: Path) -> Path:
    return state_home / "state" / "cuas-node" / "sim" / NODE / "homeassistant.json"


def retained(broker: MosquittoBroker, *filters: str) -> dict[str, bytes]:
    """Every retained message the broker holds under `filters` (topic → payload).

    No waiting on a clock: after the subscription is acknowledged the client publishes a sentinel
    on a topic the filters cover; the broker queued the retained messages at the subscription,
    so they all arrive before the sentinel."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    sentinel = f"cuas-test/sentinel/{uuid.uuid4().hex}"
    held: dict[str, bytes] = {}
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        if msg.topic == sentinel:
            done.set()
        elif msg.retain:
            held[msg.topic] = bytes(msg.payload)

    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect(broker.host, broker.port, keepalive=10)
    client.loop_start()
    try:
        client.subscribe([(f, 1) for f in (*filters, sentinel)])
        assert subscribed.wait(10), "no SUBACK"
        client.publish(sentinel, b"x", qos=1)
        assert done.wait(10), "the sentinel did not come back"
    finally:
        client.disconnect()
        client.loop_stop()
    return held


def discovery_configs(broker: MosquittoBroker) -> dict[str, dict[str, Any]]:
    """The node's retained discovery configs (topic → document)."""
    return {t: json.loads(p) for t, p in retained(broker, "homeassistant/#").items() if t.endswith("/config")}


def recorder(broker: MosquittoBroker) -> MqttSubscriber:
    """Records everything the node publishes while it runs (`tracks`, the HA state, ...)."""
    return MqttSubscriber(broker.host, broker.port, "#")


def check_output(cmd: list[str], **kwargs: Any) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs).stdout
