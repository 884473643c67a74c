"""The Home Assistant output (docs/outputs.md#home-assistant): MQTT discovery on the node's broker.

Against a real Mosquitto and whole `sim demo` runs: every retained discovery config validates
against the JSON Schema derived from Home Assistant's own discovery schemas
(docs/schemas/homeassistant-discovery.schema.json, scripts/ha_discovery_schema.py), its templates
render what HA would show (Jinja2, HA's template engine) from the node's state document, whose
values agree with the `tracks` and `alerts` the node published; unique ids are the same after a
restart; disabling the output, or removing its section, leaves nothing retained on the broker.
The opt-in `tests/test_homeassistant_ha.py` checks the same payloads with HA's own code.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from jinja2.sandbox import SandboxedEnvironment

from cuas_node.config import Config, build_config
from cuas_node.doctor_checklist import Check
from cuas_node.doctor_outputs import OutputChecks
from cuas_node.kernel.clock import SystemClock
from cuas_node.outputs.ha_discovery import HaSettings, discovery, topic_id
from cuas_node.outputs.ha_state import HaState
from cuas_node.outputs.outputs import Outputs, homeassistant_settings
from cuas_node.publish.mqtt import MqttPublisher
from tests.conftest import SCHEMA_DIR, MosquittoBroker, MqttSubscriber
from tests.fakes import wait_until
from tests.ha_node import (
    STATE_TOPIC,
    STATUS_TOPIC,
    discovery_configs,
    marker,
    recorder,
    retained,
    run_node,
)

SCHEMA = json.loads((SCHEMA_DIR / "homeassistant-discovery.schema.json").read_text())
STATE_SCHEMA = json.loads((SCHEMA_DIR / "homeassistant-state.schema.json").read_text())
HEALTH_SCHEMA = json.loads((SCHEMA_DIR / "health.schema.json").read_text())
# HA's discovery topic: <prefix>/<component>/[<node_id>/]<object_id>/config, ids [a-zA-Z0-9_-]+
# (https://www.home-assistant.io/integrations/mqtt/#discovery-topic).
DISCOVERY_TOPIC = re.compile(
    r"^homeassistant/(binary_sensor|sensor)/(?:[a-zA-Z0-9_-]+/)?[a-zA-Z0-9_-]+/config$"
)
SENSORS = ("radar-1", "mic-1", "rid-1", "fpv-1", "gps")  # the demo scenario's sensors
DRONES = ("multirotor", "fixed_wing", "unknown")  # the default drone_classes


def validate(topic: str, doc: dict[str, Any]) -> None:
    match = DISCOVERY_TOPIC.match(topic)
    assert match, topic
    component = match.group(1)
    jsonschema.Draft202012Validator({**SCHEMA, "$ref": f"#/$defs/{component}"}).validate(doc)


def render(template: str, payload: bytes) -> str:
    """A value template as HA renders it: `value` the payload, `value_json` its JSON."""
    env = SandboxedEnvironment()
    return env.from_string(template).render(value=payload.decode(), value_json=json.loads(payload)).strip()


def test_the_derived_schema_is_a_valid_schema_and_refuses_what_ha_refuses() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["x-home-assistant-version"] == "2024.3.3"
    settings = HaSettings("mast-1", "cuas/v1", "homeassistant", "cuas-node mast-1", ("radar-1",), "0.1.0")
    topic, doc = discovery(settings)[1]
    validate(topic, doc)
    for bad in (
        {"state_topic": "a/#/b"},  # `#` only last
        {"qos": 3},
        {"device": {"name": "no identifiers"}},
        {"device_class": "radar"},
        {"unit_of_measurement": "s", "device_class": "distance"},
        {"availability_topic": "x/status"},  # both availability forms
        {"stat_t": "abbreviated keys are not what the node sends"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validate(topic, {**doc, **bad})


def test_ids_are_stable_and_reduced_to_what_ha_allows_in_a_topic() -> None:
    assert topic_id("radar-1") == "radar-1"
    assert topic_id("radar.1") != topic_id("radar_1")  # a reduced id keeps a checksum of the original
    assert topic_id("radar.1") == topic_id("radar.1") and re.fullmatch(r"[A-Za-z0-9_-]+", topic_id("radar.1"))
    settings = HaSettings("mast.1", "site/cuas", "ha/test", "Mast", ("radar.1", "radar_1"), "0.1.0")
    configs = discovery(settings)
    uids = [doc["unique_id"] for _, doc in configs]
    assert len(set(uids)) == len(uids) == 7
    assert len({t for t, _ in configs}) == 7
    assert all(t.startswith("ha/test/") and t.endswith("/config") for t, _ in configs)
    assert uids == [doc["unique_id"] for _, doc in discovery(settings)]  # a pure function of the config


def tracks_doc(*tracks: tuple[str, str, str, list[float]]) -> dict[str, Any]:
    return {
        "tracks": [
            {"id": tid, "status": status, "class": {"label": label}, "enu_m": enu}
            for tid, status, label, enu in tracks
        ]
    }


def test_state_counts_confirmed_drones_measures_the_nearest_and_holds_alerts() -> None:
    state = HaState(frozenset(DRONES), alert_expiry_s=15.0)
    state.take("info", {"enu_origin": {"lat": 52.0, "lon": 4.0, "alt_m": 0.0}}, 0.0)
    state.take(
        "tracks",
        tracks_doc(
            ("1.1", "confirmed", "multirotor", [30.0, 40.0, 0.0]),
            ("1.2", "confirmed", "unknown", [0.0, -20.0, 0.0]),
            ("1.3", "coasting", "multirotor", [1.0, 1.0, 0.0]),  # not counted: not seen now
            ("1.4", "confirmed", "bird", [2.0, 2.0, 0.0]),  # not a drone class
            ("1.5", "tentative", "fixed_wing", [3.0, 3.0, 0.0]),
        ),
        0.0,
    )
    doc = state.document()
    assert (doc["drones"], doc["nearest_m"], doc["nearest_bearing_deg"], doc["nearest_track"]) == (
        2,
        20,
        180,
        "1.2",
    )
    assert doc["alert"] is False and doc["sensors"] == {}

    def alert(alert_id: str, st: str, zone: str, level: str) -> dict[str, Any]:
        return {"alert_id": alert_id, "state": st, "zone": {"id": zone, "level": level}}

    state.take("alerts", alert("a", "new", "gate", "warning"), 1.0)
    state.take("alerts", alert("b", "new", "runway", "critical"), 2.0)
    state.take("alerts", alert("a", "cleared", "gate", "warning"), 3.0)
    doc = state.document()
    # one alert clearing while another goes on keeps the alert on
    assert doc["alert"] is True and doc["alert_detail"] == {
        "alerts": 1,
        "zones": ["runway"],
        "level": "critical",
    }
    state.take("alerts", alert("b", "updated", "runway", "critical"), 10.0)
    assert not state.expire(20.0) and state.document()["alert"] is True
    assert state.expire(26.0) and state.document()["alert"] is False  # no event for 16 s: gone
    state.take("tracks", tracks_doc(), 30.0)
    assert "nearest_m" not in state.document() and state.document()["drones"] == 0


def drone_counts(messages: list[Any]) -> list[tuple[int, dict[str, list[float]]]]:
    """Per `tracks` message: its confirmed drone count and those tracks' ENU positions."""
    out = []
    for m in messages:
        drones = {
            t["id"]: t["enu_m"]
            for t in m.payload["tracks"]
            if t["status"] == "confirmed" and t["class"]["label"] in DRONES
        }
        out.append((len(drones), drones))
    return out


def node_offsets(sub: MqttSubscriber) -> set[tuple[float, float, float]]:
    """Every position the node stated for itself in the tracks' ENU frame (`info.position`, else
    the origin itself, relative to `info.enu_origin`): it moves while the GPS mean settles."""
    import pymap3d

    offsets = {(0.0, 0.0, 0.0)}  # the origin: the node's position until `info` states one
    for info in (m.payload for m in sub.snapshot("/info") if "enu_origin" in m.payload):
        o, p = info["enu_origin"], info.get("position", info["enu_origin"])
        e, n, u = pymap3d.geodetic2enu(p["lat"], p["lon"], p["alt_m"], o["lat"], o["lon"], o["alt_m"])
        offsets.add((float(e), float(n), float(u)))
    return offsets


def check_states_against_tracks(sub: MqttSubscriber) -> list[dict[str, Any]]:
    """Every state document the node sent agrees with one `tracks` message it published: the same
    confirmed drone count, and the nearest of those drones is the one named, at the distance and
    bearing stated (to the rounding: 1 m, 1 degree) from a position the node stated in `info`.
    Matched by content, not by arrival order (spooled `tracks` and the retained state take
    different paths through the outbox)."""
    everything = sub.snapshot()
    nodes = node_offsets(sub)
    seen: list[tuple[int, str | None, float, float]] = [(0, None, 0.0, 0.0)]  # before any tracks
    for count, drones in drone_counts([m for m in everything if m.topic.endswith("/tracks")]):
        if not drones:
            seen.append((0, None, 0.0, 0.0))
            continue
        for node in nodes:  # whichever position the node held then
            nearest = min(drones, key=lambda k: math.dist(drones[k], node))
            e, n, _ = drones[nearest]
            bearing = math.degrees(math.atan2(e - node[0], n - node[1])) % 360
            seen.append((count, nearest, math.dist(drones[nearest], node), bearing))
    states = [m.payload for m in everything if m.topic == STATE_TOPIC]
    for state in states:
        jsonschema.Draft202012Validator(STATE_SCHEMA).validate(state)
        if "nearest_track" not in state:
            assert state["drones"] == 0, state
            continue

        def fits(x: tuple[int, str | None, float, float], state: dict[str, Any] = state) -> bool:
            count, track, distance, bearing = x
            return (
                count == state["drones"]
                and track == state["nearest_track"]
                and abs(distance - state["nearest_m"]) <= 0.5001
                and abs((bearing - state["nearest_bearing_deg"] + 180) % 360 - 180) <= 0.5001
            )

        assert any(fits(x) for x in seen), (state, [x for x in seen if x[1] == state["nearest_track"]][:5])
    return states


@pytest.fixture
def demo_run(mosquitto: MosquittoBroker, tmp_path: Path) -> tuple[MqttSubscriber, Path]:
    """One `sim demo` run with the output enabled, everything it published recorded."""
    sub = recorder(mosquitto)
    try:
        run_node(mosquitto, tmp_path, {}, duration=40.0)
    except Exception:
        sub.close()
        raise
    return sub, tmp_path


def test_discovery_on_the_node_broker_validates_and_states_render_the_tracks(
    mosquitto: MosquittoBroker, demo_run: tuple[MqttSubscriber, Path]
) -> None:
    sub, home = demo_run
    try:
        configs = discovery_configs(mosquitto)
        assert len(configs) == 5 + len(SENSORS), sorted(configs)
        for topic, doc in configs.items():
            validate(topic, doc)
        by_uid = {doc["unique_id"]: doc for doc in configs.values()}
        assert set(by_uid) == {
            f"cuas_sim-demo_{k}"
            for k in ("connectivity", "drones", "nearest_distance", "nearest_bearing", "drone_alert")
        } | {f"cuas_sim-demo_sensor_{s}" for s in SENSORS}
        assert {json.dumps(d["device"], sort_keys=True) for d in configs.values()} == {
            json.dumps(
                {
                    "identifiers": ["cuas-node_sim-demo"],
                    "manufacturer": "cuas-node project",
                    "model": "cuas-node",
                    "name": "cuas-node sim-demo",
                    "sw_version": configs[next(iter(configs))]["device"]["sw_version"],
                },
                sort_keys=True,
            )
        }  # one device

        states = check_states_against_tracks(sub)
        assert any(s["drones"] >= 1 and "nearest_m" in s for s in states)
        alerts = [i for i, s in enumerate(states) if s["alert"]]
        assert alerts and states[alerts[0]]["alert_detail"]["zones"] == ["compound"]
        assert any(not s["alert"] for s in states[alerts[0] :]), "the alert never went off"
        assert any(m.payload["state"] == "cleared" for m in sub.snapshot("/alerts"))

        # what the broker holds now: the offline status and the node's last state (clean stop)
        held = retained(mosquitto, STATE_TOPIC, STATUS_TOPIC)
        final, status = held[STATE_TOPIC], held[STATUS_TOPIC]
        assert json.loads(final) == states[-1]
        assert json.loads(final)["drones"] == 0 and sorted(json.loads(final)["sensors"]) == sorted(SENSORS)

        # what HA renders from them
        shown = {}
        for doc in configs.values():
            source = status if doc["state_topic"] == STATUS_TOPIC else final
            shown[doc["unique_id"].removeprefix("cuas_sim-demo_")] = render(doc["value_template"], source)
            for avail in doc.get("availability", []):
                payload = status if avail["topic"] == STATUS_TOPIC else final
                assert render(avail["value_template"], payload) in (
                    avail["payload_available"],
                    avail["payload_not_available"],
                )
        assert shown["connectivity"] == "offline"  # = payload_off: the node stopped
        assert shown["drones"] == "0" and shown["nearest_distance"] == "None" == shown["nearest_bearing"]
        assert shown["drone_alert"] == "OFF"
        assert all(shown[f"sensor_{s}"] in ("ok", "degraded", "down") for s in SENSORS)
        # and during the run: a state with a drone renders numbers
        busy = next(s for s in states if "nearest_m" in s)
        data = json.dumps(busy).encode()
        for key, field in (
            ("nearest_distance", "nearest_m"),
            ("nearest_bearing", "nearest_bearing_deg"),
            ("drones", "drones"),
        ):
            doc = by_uid[f"cuas_sim-demo_{key}"]
            assert float(render(doc["value_template"], data)) == busy[field]
        alert_doc = by_uid["cuas_sim-demo_drone_alert"]
        first_alert = json.dumps(states[alerts[0]]).encode()
        assert render(alert_doc["value_template"], first_alert) == alert_doc["payload_on"]
        assert json.loads(render(alert_doc["json_attributes_template"], first_alert))["zones"] == ["compound"]
        assert set(json.loads(marker(home).read_text())["topics"]) == {*configs, STATE_TOPIC}

        # the output's health entry
        health = sub.snapshot("/health")[-1].payload
        jsonschema.Draft202012Validator(HEALTH_SCHEMA).validate(health)
        entry = next(o for o in health["outputs"] if o["kind"] == "homeassistant")
        assert entry["name"] == "homeassistant" and entry["state"] == "connected" and entry["sent"] >= 11
        assert entry["target"] == f"mqtt://{mosquitto.host}:{mosquitto.port}/homeassistant"
        assert entry["last_error"] is None
    finally:
        sub.close()


def test_unique_ids_survive_a_restart_and_removal_clears_the_broker(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    run_node(mosquitto, tmp_path, {})
    first = discovery_configs(mosquitto)
    assert marker(tmp_path).exists()
    run_node(mosquitto, tmp_path, {"device_name": "Mast at the gate"})
    second = discovery_configs(mosquitto)
    assert set(second) == set(first)
    assert [d["unique_id"] for d in second.values()] == [first[t]["unique_id"] for t in second]
    assert {d["device"]["name"] for d in second.values()} == {"Mast at the gate"}

    # The section removed: the node knows (its marker file) what it left, and removes it.
    sub = recorder(mosquitto)
    try:
        run_node(mosquitto, tmp_path, None)
        cleared = {m.topic for m in sub.snapshot() if m.payload == b""}
    finally:
        sub.close()
    assert cleared == {*first, STATE_TOPIC}  # an empty (retained) payload on each
    assert retained(mosquitto, "homeassistant/#", STATE_TOPIC) == {}
    assert not marker(tmp_path).exists()


def test_enabled_false_removes_the_entities_even_without_the_marker(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    run_node(mosquitto, tmp_path / "a", {})
    assert len(discovery_configs(mosquitto)) == 5 + len(SENSORS)
    run_node(mosquitto, tmp_path / "b", {"enabled": False})  # another state dir: no marker there
    assert retained(mosquitto, "homeassistant/#", STATE_TOPIC) == {}
    assert not marker(tmp_path / "b").exists()


def test_a_config_change_removes_the_topics_it_leaves_behind(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    run_node(mosquitto, tmp_path, {})
    old = set(discovery_configs(mosquitto))
    run_node(mosquitto, tmp_path, {"discovery_prefix": "homeassistant/site-b"})
    held = retained(mosquitto, "homeassistant/#")
    assert not old & set(held)  # the old prefix's configs are gone
    assert len(held) == len(old) and all(t.startswith("homeassistant/site-b/") for t in held)


def ha_config(broker: MosquittoBroker, state_dir: Path, section: dict[str, Any] | None) -> Config:
    data: dict[str, Any] = {
        "node": {"id": "mast-1", "state_dir": str(state_dir)},
        "mqtt": {"host": broker.host, "port": broker.port},
    }
    if section is not None:
        data["outputs"] = {"homeassistant": section}
    return build_config(data, "test")


def test_the_output_alone_on_a_publisher_and_the_doctor_line(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """Without the simulator: `Outputs` with the node's `MqttPublisher`, as `run` wires them, and
    `doctor`, which counts the discovery configs the broker holds (and publishes nothing)."""
    config = ha_config(mosquitto, tmp_path, {})

    def doctor(cfg: Config) -> Check:
        checks = OutputChecks(timeout_s=3.0)
        checks.check_outputs(cfg)
        [line] = [c for c in checks.checks if c.name == "output homeassistant"]
        return line

    before = doctor(config)
    assert before.status == "WARN" and "0 of 5 discovery configs" in before.message and "ACL" in before.fix
    publisher = MqttPublisher(config.mqtt, "mast-1", tmp_path, SystemClock(), [])
    outputs = Outputs.from_config(config, publisher.session, time.time, publisher)
    assert outputs.homeassistant is not None and outputs.workers == []
    publisher.start()
    outputs.start()
    try:
        expected = [
            (t, json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode())
            for t, d in discovery(homeassistant_settings(config))
        ]
        wait_until(
            lambda: all(publisher.retained_confirmed(t, d) for t, d in expected), what="configs acknowledged"
        )
        wait_until(lambda: outputs.health()[0]["state"] == "connected", what="output connected")
    finally:
        outputs.stop()
        publisher.stop()
    assert outputs.health()[0]["state"] == "stopped"
    after = doctor(config)
    assert after.status == "PASS" and "5 entities, every discovery config retained" in after.message
    assert doctor(ha_config(mosquitto, tmp_path, {"enabled": False})).message.endswith(
        "disabled (the node removes its entities from the broker when it runs)"
    )
    assert (
        "section removed; the node removes its 6 retained topic(s)"
        in doctor(ha_config(mosquitto, tmp_path, None)).message
    )
    nothing = OutputChecks(timeout_s=3.0)
    nothing.check_outputs(ha_config(mosquitto, tmp_path / "elsewhere", None))
    assert nothing.checks == []  # no section and nothing left behind: no line


@pytest.mark.usefixtures("fast_mqtt_backoff")
def test_retained_documents_come_back_after_a_broker_restart(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """`MqttPublisher.retain` (what the HA output publishes through): held, published on every
    connect like `status`, so a broker restarted without persistence gets them back; an empty
    one removes the broker's copy."""
    config = ha_config(mosquitto, tmp_path, None)
    publisher = MqttPublisher(config.mqtt, "mast-1", tmp_path, SystemClock(), [])
    keep, drop = "homeassistant/sensor/mast-1/drones/config", "homeassistant/sensor/mast-1/old/config"
    publisher.retain(keep, b'{"name": "Drones detected"}')
    publisher.retain(drop, b'{"name": "old"}')
    publisher.start()
    try:
        wait_until(lambda: publisher.retained_confirmed(drop, b'{"name": "old"}'), what="both published")
        publisher.retain(drop, b"")
        wait_until(lambda: publisher.retained_confirmed(drop, b""), what="removal acknowledged")
        assert retained(mosquitto, "homeassistant/#") == {keep: b'{"name": "Drones detected"}'}
        mosquitto.stop()  # persistence off: the broker forgets every retained message
        mosquitto.start()
        wait_until(lambda: publisher.connected, what="reconnected")
        wait_until(
            lambda: keep in retained(mosquitto, "homeassistant/#"), what="the document republished on connect"
        )
        assert retained(mosquitto, "homeassistant/#") == {keep: b'{"name": "Drones detected"}'}
        assert publisher.retained_refused() == {}
    finally:
        publisher.stop()
