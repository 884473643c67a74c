"""End to end: `cuas-node sim demo` → ptys → the real drivers → fusion → a real Mosquitto.

The node runs as a separate process exactly as a user starts it; everything is judged from what a
central server would receive, against the simulator's ground truth.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from tests.conftest import MosquittoBroker, MqttSubscriber

ROOT = "cuas/v1/sim-demo"


def _start_sim(broker: MosquittoBroker, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(
        os.environ,
        CUAS_MQTT__HOST=broker.host,
        CUAS_MQTT__PORT=str(broker.port),
        CUAS_MQTT__KEEPALIVE_S="5",
        XDG_STATE_HOME=str(tmp_path / "state"),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "cuas_node.cli", "sim", "demo", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _truth(path: Path) -> dict[str, np.ndarray]:
    rows: dict[str, list[list[float]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        d = json.loads(line)
        assert set(d) == {"t", "id", "kind", "lat", "lon", "alt_m", "enu_m"}
        rows[d["id"]].append([d["t"], *d["enu_m"]])
    return {k: np.array(v) for k, v in rows.items()}


def _truth_at(track: np.ndarray, t: float) -> np.ndarray | None:
    if t < track[0, 0] or t > track[-1, 0]:
        return None
    return np.array([np.interp(t, track[:, 0], track[:, i]) for i in (1, 2, 3)])


def test_demo_end_to_end(
    mosquitto: MosquittoBroker, mqtt_sub: Any, schemas: dict[str, Any], tmp_path: Path
) -> None:
    sub: MqttSubscriber = mqtt_sub(mosquitto, f"{ROOT}/#")
    truth_path = tmp_path / "truth.jsonl"
    proc = _start_sim(mosquitto, tmp_path, "--speed", "10", "--truth", str(truth_path))
    try:
        sub.wait_for(lambda m: m.topic.endswith("/status") and m.payload["state"] == "online", timeout=20)
        # A consumer that connects later gets the retained status at once.
        late: MqttSubscriber = mqtt_sub(mosquitto, f"{ROOT}/status")
        status = late.wait_for(lambda m: m.retain, timeout=5)
        assert status.payload["state"] == "online"
        output, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    sub.wait_for(lambda m: m.topic.endswith("/status") and m.payload["state"] == "offline", timeout=5)
    # After the run, a newcomer still finds the node's last info (position from GPS by then).
    after: MqttSubscriber = mqtt_sub(mosquitto, f"{ROOT}/info")
    info = after.wait_for(lambda m: m.retain, timeout=5)
    assert info.payload["position"]["source"] == "gps"
    assert abs(info.payload["position"]["lat"] - 52.0116) < 1e-4
    jsonschema.validate(info.payload, schemas["info"])

    tracks_msgs = [m.payload for m in sub.snapshot("/tracks")]
    assert tracks_msgs, output
    for msg in tracks_msgs:
        jsonschema.validate(msg, schemas["tracks"])
    for health in sub.snapshot("/health"):
        jsonschema.validate(health.payload, schemas["health"])
    seqs = [m["seq"] for m in tracks_msgs]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a gap or repeat in tracks seq"

    truth = _truth(truth_path)
    assert set(truth) == {"quad-1", "quad-2"}
    nearest: dict[str, Counter[str]] = defaultdict(Counter)
    samples: dict[str, list[tuple[float, str, np.ndarray]]] = defaultdict(list)
    for msg in tracks_msgs:
        for track in msg["tracks"]:
            if track["status"] not in ("confirmed", "coasting"):
                continue
            pos = np.array(track["enu_m"])
            dists = {
                tid: np.linalg.norm(p - pos)
                for tid, arr in truth.items()
                if (p := _truth_at(arr, track["t"])) is not None
            }
            if dists:
                best = min(dists, key=lambda k: dists[k])
                nearest[track["id"]][best] += 1
                samples[track["id"]].append((track["t"], best, pos))

    # exactly two confirmed tracks, one per drone: no clutter track, no fragment, no twin
    assert len(nearest) == 2, {k: dict(v) for k, v in nearest.items()}
    owners = {tid: counts.most_common(1)[0][0] for tid, counts in nearest.items()}
    assert sorted(owners.values()) == ["quad-1", "quad-2"], owners
    for track_id, drone in owners.items():
        errors = [
            np.linalg.norm(pos - _truth_at(truth[drone], t))
            for t, _, pos in samples[track_id]
            if _truth_at(truth[drone], t) is not None
        ]
        rms = float(np.sqrt(np.mean(np.square(errors))))
        assert rms < 15.0, (track_id, drone, rms)
        assert len(errors) > 100  # tracked for most of the crossing, not a brief flicker


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_clean_stop_publishes_offline_quickly(
    mosquitto: MosquittoBroker, mqtt_sub: Any, tmp_path: Path, sig: signal.Signals
) -> None:
    sub: MqttSubscriber = mqtt_sub(mosquitto, f"{ROOT}/status")
    proc = _start_sim(mosquitto, tmp_path, "--speed", "5")
    try:
        sub.wait_for(lambda m: m.payload["state"] == "online", timeout=20)
        time.sleep(1.0)
        sent = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=5)
        elapsed = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert elapsed < 2.0, f"shutdown took {elapsed:.2f} s"
    offline = sub.wait_for(lambda m: m.payload["state"] == "offline", timeout=5)
    assert offline.payload["session"] == sub.snapshot()[0].payload["session"]


def test_last_will_marks_a_killed_node_offline(
    mosquitto: MosquittoBroker, mqtt_sub: Any, tmp_path: Path
) -> None:
    sub: MqttSubscriber = mqtt_sub(mosquitto, f"{ROOT}/status")
    proc = _start_sim(mosquitto, tmp_path, "--speed", "5")
    try:
        sub.wait_for(lambda m: m.payload["state"] == "online", timeout=20)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=5)
    finally:
        proc.kill()
    will = sub.wait_for(lambda m: m.payload["state"] == "offline", timeout=10)
    late: MqttSubscriber = mqtt_sub(mosquitto, f"{ROOT}/status")
    retained = late.wait_for(lambda m: True, timeout=5)
    assert retained.retain and retained.payload == will.payload
