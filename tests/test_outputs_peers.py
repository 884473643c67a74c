"""Issue 17's "done when": one `sim demo` run feeds MQTT, Home Assistant discovery (on the same
broker), a TAK server (taky, CoT) and a SAPIENT middleware (Apex) at once, and the death of either
peer costs only its own output: the others go on delivering while `health.outputs` shows the dead
one down with its error, and each output comes back by itself when its peer does. One run covers
both outages (the CI budget is tight)."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.apex import ApexServer, PeerClient, apex_python
from tests.conftest import MosquittoBroker, MqttSubscriber
from tests.fakes import wait_until
from tests.ha_node import discovery_configs
from tests.sim_demo import start_sim_demo
from tests.tak import CotClient, TakyServer, taky_missing

pytestmark = [
    pytest.mark.skipif(taky_missing() is not None, reason=str(taky_missing())),
    pytest.mark.skipif(
        apex_python() is None, reason="Apex is not installed (scripts/test.sh makes .venv-apex)"
    ),
]

UID = "cuas.sim-demo."  # the prefix of the demo's track events
DOWN = ("connecting", "disconnected")  # an output backing off between attempts


class Health:
    """`health.outputs` of the node, by kind, as the MQTT subscriber receives it."""

    def __init__(self, sub: MqttSubscriber) -> None:
        self.sub = sub
        self.seen = -1  # the seq of the last health message a wait returned

    def wait(
        self, predicate: Callable[[dict[str, dict[str, Any]]], bool], timeout: float = 30.0
    ) -> dict[str, Any]:
        """The outputs of the first health message newer than the last one returned that matches."""
        found = self.sub.wait_for(
            lambda m: (
                m.topic.endswith("/health")
                and m.payload.get("seq", -1) > self.seen
                and len(m.payload.get("outputs") or []) == 3
                and predicate({o["kind"]: o for o in m.payload["outputs"]})
            ),
            timeout=timeout,
        )
        self.seen = found.payload["seq"]
        return {o["kind"]: o for o in found.payload["outputs"]}


def test_each_dead_peer_costs_only_its_own_output(
    mosquitto: MosquittoBroker, mqtt_sub: Any, tmp_path: Path
) -> None:
    tak = TakyServer(tmp_path / "taky")
    tak.start()
    apex = ApexServer(tmp_path / "apex")
    apex.start()
    tracks: MqttSubscriber = mqtt_sub(mosquitto, "cuas/v1/sim-demo/tracks")
    ha_state: MqttSubscriber = mqtt_sub(mosquitto, "cuas/v1/sim-demo/homeassistant")
    health = Health(mqtt_sub(mosquitto, "cuas/v1/sim-demo/health"))
    env = {
        "CUAS_MQTT__HEALTH_INTERVAL_S": "1",
        "CUAS_OUTPUTS__HOMEASSISTANT": json.dumps({"enabled": True}),
        "CUAS_OUTPUTS__COT": json.dumps([{"name": "tak", "url": tak.url()}]),
        "CUAS_OUTPUTS__SAPIENT": json.dumps(
            {"host": "127.0.0.1", "port": apex.child_port, "status_interval_s": 1}
        ),
    }
    # half speed: the 60 s scenario lasts 120 s, room for two outages and recoveries
    proc = start_sim_demo(mosquitto, tmp_path, "--speed", "0.5", env=env)
    peer = PeerClient(apex.peer_port)
    viewer = CotClient(tak)
    servers = [tak, apex]
    try:
        viewer.wait_for(UID, count=3, timeout=30)
        assert peer.wait_for("detection_report", count=3)
        tracks.wait_count("/tracks", 5, timeout=30)

        # 1. The TAK server dies: CoT shows it, SAPIENT and MQTT never notice.
        viewer.close()
        tak.stop()
        down = health.wait(lambda o: o["cot"]["state"] in DOWN and bool(o["cot"]["last_error"]))
        assert down["cot"]["connected_since"] is None and down["sapient"]["state"] == "connected"
        assert down["homeassistant"]["state"] == "connected"
        detections, published = len(peer.snapshot("detection_report")), len(tracks.snapshot())
        states = len(ha_state.snapshot())
        assert len(peer.wait_for("detection_report", count=detections + 3)) >= detections + 3
        tracks.wait_count("/tracks", published + 5, timeout=30)
        ha_state.wait_count("/homeassistant", states + 2, timeout=30)
        tak.start()  # same port: the output reconnects by itself
        viewer = CotClient(tak)
        up = health.wait(lambda o: o["cot"]["state"] == "connected", timeout=60)
        assert up["cot"]["connected_since"] is not None and up["cot"]["sent"] > down["cot"]["sent"]
        viewer.wait_for(UID, count=3, timeout=30)  # events reach TAK clients again

        # 2. Apex dies: SAPIENT shows it, CoT and MQTT never notice.
        apex.stop()
        peer.close()
        down = health.wait(lambda o: o["sapient"]["state"] in DOWN and bool(o["sapient"]["last_error"]))
        assert down["sapient"]["connected_since"] is None and down["cot"]["state"] == "connected"
        assert down["homeassistant"]["state"] == "connected"
        events, published = len(viewer.snapshot(UID)), len(tracks.snapshot())
        states = len(ha_state.snapshot())
        viewer.wait_for(UID, count=events + 3, timeout=30)
        tracks.wait_count("/tracks", published + 5, timeout=30)
        ha_state.wait_count("/homeassistant", states + 2, timeout=30)
        again = ApexServer(tmp_path / "apex-again", apex.child_port, apex.peer_port)
        servers.append(again)
        again.start()
        peer = PeerClient(again.peer_port)
        up = health.wait(lambda o: o["sapient"]["state"] == "connected", timeout=60)
        assert up["sapient"]["connected_since"] is not None
        assert peer.wait_for("status_report")  # it registered again and reports
        # Apex commits its message log to SQLite after forwarding: wait for the rows.
        rows = wait_until(again.messages, what="Apex's message log")
        assert rows[0]["parsed_type"] == "registration"
    finally:
        viewer.close()
        peer.close()
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        for server in servers:
            server.stop()
    assert proc.returncode == 0, output
    assert discovery_configs(mosquitto), "Home Assistant discovery configs retained on the broker"
    # each outage logged by its own output, once (not once per retry)
    assert 1 <= output.count("output tak (") <= 2 and 1 <= output.count("output sapient (") <= 2, output
