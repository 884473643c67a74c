"""Opt-in (slow): the node's discovery payloads through Home Assistant's own code.

A pinned `homeassistant` (the newest release that installs on Python 3.11) lives in its own venv,
too heavy for the default run; docs/outputs.md#tested-against-home-assistant says how to make it:

    python3 -m venv .venv-ha && .venv-ha/bin/pip install homeassistant==2024.3.3
    .venv/bin/python -m pytest -m slow tests/test_homeassistant_ha.py

A whole `sim demo` run publishes to a real Mosquitto; every retained discovery config and every
payload on the topics its entities read are handed to `tests/ha_check.py` in that venv, which
applies HA's discovery topic matcher, origin schema and `DISCOVERY_SCHEMA`s and renders the
templates with HA's template engine. The committed JSON Schema of the default suite must also be
exactly what `scripts/ha_discovery_schema.py` derives from that HA.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import MosquittoBroker
from tests.ha_node import (
    REPO,
    STATE_TOPIC,
    STATUS_TOPIC,
    discovery_configs,
    ha_python,
    recorder,
    run_node,
)

HA_VERSION = "2024.3.3"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        ha_python() is None,
        reason=f"Home Assistant is not installed: python3 -m venv .venv-ha && "
        f".venv-ha/bin/pip install homeassistant=={HA_VERSION} (or set CUAS_HA_PYTHON)",
    ),
]


def ha(*args: str) -> str:
    python = ha_python()
    assert python is not None
    done = subprocess.run([str(python), *args], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_pinned_home_assistant_is_the_one_the_schema_was_derived_from() -> None:
    version = ha("-c", "from homeassistant.const import __version__; print(__version__)").strip()
    assert version == HA_VERSION, f".venv-ha has Home Assistant {version}, the tests pin {HA_VERSION}"
    assert "matches Home Assistant" in ha("scripts/ha_discovery_schema.py", "--check")


def test_home_assistant_accepts_the_discovery_and_renders_the_states(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    sub = recorder(mosquitto)
    try:
        run_node(mosquitto, tmp_path, {}, duration=40.0)
        configs = discovery_configs(mosquitto)
        payloads: dict[str, list[str]] = {}
        for m in sub.snapshot():
            if m.topic in (STATE_TOPIC, STATUS_TOPIC):
                payloads.setdefault(m.topic, []).append(json.dumps(m.payload))
    finally:
        sub.close()
    capture = tmp_path / "capture.json"
    capture.write_text(json.dumps({"prefix": "homeassistant", "configs": configs, "payloads": payloads}))
    report = json.loads(ha("tests/ha_check.py", str(capture)))
    assert report["ha_version"] == HA_VERSION
    assert report["errors"] == []
    states = report["states"]
    assert len(states) == len(configs) == 10
    sent = [json.loads(p) for p in payloads[STATE_TOPIC]]
    # what HA shows is what the node meant
    assert states["cuas_sim-demo_drones"] == [str(s["drones"]) for s in sent]
    assert states["cuas_sim-demo_nearest_distance"] == [str(s.get("nearest_m", "None")) for s in sent]
    assert states["cuas_sim-demo_drone_alert"] == ["ON" if s["alert"] else "OFF" for s in sent]
    assert "ON" in states["cuas_sim-demo_drone_alert"] and states["cuas_sim-demo_drone_alert"][-1] == "OFF"
    assert states["cuas_sim-demo_connectivity"] == [json.loads(p)["state"] for p in payloads[STATUS_TOPIC]]
    assert states["cuas_sim-demo_connectivity"][-1] == "offline"
