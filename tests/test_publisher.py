"""The MQTT contract against a real mosquitto: retained status/info, the Last Will, envelopes
that validate against docs/schemas, and `seq`/`session` that survive restarts and crashes."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from cuas_node import SCHEMA_VERSION, __version__
from cuas_node.config import ConfigError, MqttSection
from cuas_node.kernel.clock import SystemClock
from cuas_node.kernel.reports import GeoPoint, NodePosition
from cuas_node.publish import mqtt as mqtt_module
from cuas_node.publish import wire
from cuas_node.publish.mqtt import MqttPublisher
from cuas_node.publish.seqstore import BLOCK, SequenceStore
from cuas_node.publish.wire import topic
from tests import reports
from tests.fakes import wait_for_records, wait_until

if TYPE_CHECKING:  # the fixtures' classes, for annotations only (conftest is not importable as a module)
    from conftest import MosquittoBroker, MqttSubscriber, Received

NODE = "mast-1"
SENSORS = [("radar-1", "ti-mmwave"), ("gps", "nmea")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cfg(port: int, **overrides: Any) -> MqttSection:
    return MqttSection(host="127.0.0.1", port=port, keepalive_s=5, **overrides)


def validate(schemas: dict[str, dict[str, Any]], name: str, payload: Any) -> None:
    jsonschema.Draft202012Validator(schemas[name]).validate(payload)


def is_status(state: str, retain: bool | None = None) -> Callable[[Received], bool]:
    def check(m: Received) -> bool:
        return (
            m.topic.endswith("/status")
            and m.payload.get("state") == state
            and (retain is None or m.retain == retain)
        )

    return check


def sample_track(number: int = 1) -> dict[str, Any]:
    """A track record as the wire module writes it (for the schema tests)."""
    return wire.track_record(reports.track(number, bearing_only=True), session=1)


def sample_health() -> dict[str, Any]:
    return {
        "uptime_s": 12.5,
        "sensors": [
            {
                "id": "radar-1",
                "kind": "ti-mmwave",
                "state": "ok",
                "rate_hz": 10.0,
                "measurements": 120,
                "last_seen": time.time(),
                "age_s": 0.1,
                "counters": {"frames": 120, "crc_errors": 0},
                "detail": "",
            },
            {
                "id": "gps",
                "kind": "nmea",
                "state": "down",
                "rate_hz": 0.0,
                "measurements": 0,
                "counters": {},
                "detail": "no data yet",
            },
        ],
        "fusion": {
            "tracks": 1,
            "confirmed": 1,
            "coasting": 0,
            "tentative": 3,
            "queue_depth": 0,
            "cycle_ms": 1.7,
        },
    }


@pytest.fixture
def make_publisher(tmp_path: Path) -> Iterator[Callable[..., MqttPublisher]]:
    """Publishers sharing `tmp_path/state` unless told otherwise; all stopped at teardown."""
    created: list[MqttPublisher] = []

    def make(port: int, state_dir: Path | None = None, **overrides: Any) -> MqttPublisher:
        pub = MqttPublisher(
            cfg(port, **overrides), NODE, state_dir or tmp_path / "state", SystemClock(), SENSORS
        )
        created.append(pub)
        return pub

    yield make
    for pub in created:
        pub.stop()


def test_topic_helper() -> None:
    assert topic("cuas/v1", "n1", "tracks") == "cuas/v1/n1/tracks"
    assert topic("site/cuas/", "n1", "status") == "site/cuas/n1/status"


def test_schemas_are_valid_draft_2020_12(schemas: dict[str, dict[str, Any]]) -> None:
    assert {"status", "info", "tracks", "health", "alerts"} <= set(schemas)  # + cmd-* (test_commands.py)
    for name, schema in schemas.items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$id"] == f"urn:cuas-node:schema:v1:{name}"


def test_status_retained_online_then_offline(
    mosquitto: MosquittoBroker,
    mqtt_sub: Callable[..., MqttSubscriber],
    make_publisher: Callable[..., MqttPublisher],
    schemas: dict[str, dict[str, Any]],
) -> None:
    pub = make_publisher(mosquitto.port)
    pub.start()
    wait_until(lambda: pub.connected)
    late = mqtt_sub(mosquitto, f"cuas/v1/{NODE}/status")  # subscribes after the fact: sees the retained one
    online = late.wait_for(is_status("online", retain=True))
    validate(schemas, "status", online.payload)
    assert online.payload["session"] == pub.session

    pub.stop()
    offline = late.wait_for(is_status("offline"))
    validate(schemas, "status", offline.payload)
    assert offline.payload["session"] == pub.session
    assert not pub.connected
    later = mqtt_sub(mosquitto, f"cuas/v1/{NODE}/status")
    assert later.wait_for(lambda m: m.retain).payload["state"] == "offline"


def test_info_retained_valid_and_republished_on_position_change(
    mosquitto: MosquittoBroker,
    mqtt_sub: Callable[..., MqttSubscriber],
    make_publisher: Callable[..., MqttPublisher],
    schemas: dict[str, dict[str, Any]],
) -> None:
    pub = make_publisher(mosquitto.port)
    pub.start()
    wait_until(lambda: pub.connected)
    sub = mqtt_sub(mosquitto, f"cuas/v1/{NODE}/+")  # info, and tracks as a marker below
    info = sub.wait_for(lambda m: m.topic.endswith("/info") and m.retain)
    validate(schemas, "info", info.payload)
    assert info.payload["node_id"] == NODE
    assert info.payload["software_version"] == __version__
    assert info.payload["schema_version"] == SCHEMA_VERSION
    assert "position" not in info.payload  # unknown → left out, never null
    assert info.payload["sensors"] == [{"id": "radar-1", "kind": "ti-mmwave"}, {"id": "gps", "kind": "nmea"}]

    position = NodePosition(52.1, 4.3, 12.0, "gps")
    pub.update_info(position, GeoPoint(52.1, 4.3, 12.0))
    updated = sub.wait_for(lambda m: "position" in m.payload)
    validate(schemas, "info", updated.payload)
    assert updated.payload["position"] == {"lat": 52.1, "lon": 4.3, "alt_m": 12.0, "source": "gps"}
    pub.update_info(NodePosition(52.1, 4.3, 12.0, "gps"), GeoPoint(52.1, 4.3, 12.0))  # unchanged: nothing new
    # Proof of silence without a sleep: a marker sent after it takes the same path (the outbox's
    # queue, the one connection, the broker's queue for `sub`), so an `info` the unchanged update
    # sent would arrive before it. Not a second position change: `info` is built when it is sent,
    # so a wrong extra one could carry that position too and pass for the marker.
    pub.publish_tracks(1.0, [])
    sub.wait_for(lambda m: m.topic.endswith("/tracks"))
    assert len(sub.snapshot("/info")) == 2
    assert (
        mqtt_sub(mosquitto, f"cuas/v1/{NODE}/info").wait_for(lambda m: m.retain).payload["position"]
        == updated.payload["position"]
    )


def test_tracks_and_health_envelopes_validate_and_seq_increments(
    mosquitto: MosquittoBroker,
    mqtt_sub: Callable[..., MqttSubscriber],
    make_publisher: Callable[..., MqttPublisher],
    schemas: dict[str, dict[str, Any]],
) -> None:
    sub = mqtt_sub(mosquitto, f"cuas/v1/{NODE}/+")
    pub = make_publisher(mosquitto.port)
    pub.start()
    wait_until(lambda: pub.connected)
    for i in range(3):
        pub.publish_tracks(1_700_000_000.0 + i, [reports.track(1), reports.track(2)] if i else [])
    for _ in range(2):
        pub.publish_health(sample_health())

    tracks = [m.payload for m in sub.wait_count("/tracks", 3)]
    health = [m.payload for m in sub.wait_count("/health", 2)]
    for message in tracks:
        validate(schemas, "tracks", message)
    for message in health:
        validate(schemas, "health", message)
    assert [m["seq"] for m in tracks] == [1, 2, 3]
    assert [m["seq"] for m in health] == [1, 2]  # counted separately from tracks
    assert tracks[1]["node_id"] == NODE and tracks[1]["t"] == 1_700_000_001.0
    assert tracks[2]["tracks"][0] == wire.track_record(reports.track(1), pub.session)
    assert tracks[2]["tracks"][0]["id"] == f"{pub.session}.1"
    assert health[0]["broker"] == "connected"
    assert set(health[0]["mqtt"]) == {
        "published",
        "dropped",
        "reconnects",
        "thread_restarts",
        "internal_errors",
    }
    assert health[0]["mqtt"]["thread_restarts"] == health[0]["mqtt"]["internal_errors"] == 0
    assert not any(m.retain for m in sub.snapshot("/tracks") + sub.snapshot("/health"))
    wait_until(lambda: pub.counters["published"] >= 7)  # status + info + 3 tracks + 2 health
    assert pub.counters["dropped"] == 0


def test_alerts_have_their_own_seq_and_validate(
    mosquitto: MosquittoBroker,
    mqtt_sub: Callable[..., MqttSubscriber],
    make_publisher: Callable[..., MqttPublisher],
    schemas: dict[str, dict[str, Any]],
) -> None:
    sub = mqtt_sub(mosquitto, f"cuas/v1/{NODE}/alerts")
    pub = make_publisher(mosquitto.port)
    pub.start()
    wait_until(lambda: pub.connected)
    pub.publish_tracks(1.0, [])
    for state in ("new", "updated", "cleared"):
        pub.publish_alert(reports.alert(state, with_track=state != "cleared"))
    alerts = [m.payload for m in sub.wait_count("/alerts", 3)]
    for message in alerts:
        validate(schemas, "alerts", message)
    assert [m["seq"] for m in alerts] == [1, 2, 3]
    assert [m["state"] for m in alerts] == ["new", "updated", "cleared"]
    assert {m["alert_id"] for m in alerts} == {f"{pub.session}.1@yard#1"}


def test_schema_rejects_null_and_unknown_track_keys(schemas: dict[str, dict[str, Any]]) -> None:
    envelope = {"type": "tracks", "node_id": NODE, "seq": 1, "t": 1.0, "tracks": [sample_track()]}
    validate(schemas, "tracks", envelope)
    for key, value in (("alt_m", None), ("colour", "red")):
        bad = dict(sample_track(), **{key: value})
        with pytest.raises(jsonschema.ValidationError):
            validate(schemas, "tracks", dict(envelope, tracks=[bad]))


def test_seq_and_session_continue_across_clean_restart(
    mosquitto: MosquittoBroker,
    mqtt_sub: Callable[..., MqttSubscriber],
    make_publisher: Callable[..., MqttPublisher],
) -> None:
    sub = mqtt_sub(mosquitto, f"cuas/v1/{NODE}/+")
    first = make_publisher(mosquitto.port)
    first.start()
    wait_until(lambda: first.connected)
    first.publish_tracks(1.0, [])
    first.publish_tracks(2.0, [])
    first.publish_health(sample_health())
    sub.wait_count("/tracks", 2)
    first.stop()

    second = make_publisher(mosquitto.port)
    assert second.session > first.session
    second.start()
    wait_until(lambda: second.connected)
    second.publish_tracks(3.0, [])
    second.publish_health(sample_health())
    assert [m.payload["seq"] for m in sub.wait_count("/tracks", 3)] == [1, 2, 3]  # no gap after a clean stop
    assert [m.payload["seq"] for m in sub.wait_count("/health", 2)] == [1, 2]
    sub.wait_for(
        lambda m: (
            m.topic.endswith("/status")
            and m.payload["session"] == second.session
            and m.payload["state"] == "online"
        )
    )


_CRASHING_NODE = """
import sys, time
from pathlib import Path
from cuas_node.kernel.clock import SystemClock
from cuas_node.config import ConfigError, MqttSection
from cuas_node.publish.mqtt import MqttPublisher
pub = MqttPublisher(MqttSection(host="127.0.0.1", port=int(sys.argv[1]), keepalive_s=5), "mast-1",
                    Path(sys.argv[2]), SystemClock(), [])
pub.start()
deadline = time.monotonic() + 10
while not pub.connected and time.monotonic() < deadline:
    time.sleep(0.02)
for i in range(3):
    pub.publish_tracks(time.time(), [])
print("ready", pub.session, flush=True)
time.sleep(60)
"""


def test_last_will_and_seq_gap_after_crash(
    mosquitto: MosquittoBroker,
    mqtt_sub: Callable[..., MqttSubscriber],
    make_publisher: Callable[..., MqttPublisher],
    tmp_path: Path,
    schemas: dict[str, dict[str, Any]],
) -> None:
    state = tmp_path / "state"
    sub = mqtt_sub(mosquitto, f"cuas/v1/{NODE}/+")
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_NODE, str(mosquitto.port), str(state)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert line[:1] == ["ready"], line
        crashed_session = int(line[1])
        sub.wait_for(is_status("online"))
        sub.wait_count("/tracks", 3)
        killed_at = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)  # no DISCONNECT, no seqstore.close(): a power cut
        proc.wait(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    will = sub.wait_for(is_status("offline"), timeout=10)
    assert time.monotonic() - killed_at < 10
    validate(schemas, "status", will.payload)
    assert will.payload["session"] == crashed_session
    assert (
        mqtt_sub(mosquitto, f"cuas/v1/{NODE}/status").wait_for(lambda m: m.retain).payload["state"]
        == "offline"
    )

    restarted = make_publisher(mosquitto.port, state_dir=state)
    assert restarted.session > crashed_session
    restarted.start()
    wait_until(lambda: restarted.connected)
    restarted.publish_tracks(1.0, [])
    seqs = [m.payload["seq"] for m in sub.wait_count("/tracks", 4)]
    assert seqs[:3] == [1, 2, 3]
    assert 3 < seqs[3] <= 3 + BLOCK + 1  # a gap (messages may have been lost), never a repeat


def test_start_without_broker_returns_at_once_and_catches_up(
    mosquitto: MosquittoBroker,
    mqtt_sub: Callable[..., MqttSubscriber],
    make_publisher: Callable[..., MqttPublisher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="cuas_node.publish.mqtt")
    mosquitto.stop()
    pub = make_publisher(mosquitto.port)
    began = time.monotonic()
    pub.start()
    pub.publish_tracks(1.0, [])  # queued in memory until the broker appears
    assert time.monotonic() - began < 0.5
    assert not pub.connected
    # The message is held and an attempt has failed: what follows is a retry catching up, not a
    # first attempt that happens to meet the restarted broker.
    wait_until(lambda: pub.spool_counters["pending"] == 1, what="the track held while offline")
    wait_for_records(caplog, "unreachable")

    mosquitto.start()
    sub = mqtt_sub(mosquitto, f"cuas/v1/{NODE}/+")
    assert sub.wait_for(is_status("online"), timeout=10).payload["session"] == pub.session
    wait_until(lambda: pub.connected)
    pub.publish_tracks(2.0, [])
    assert sub.wait_for(lambda m: m.topic.endswith("/tracks") and m.payload["seq"] == 2)
    # The queued message went out (maybe before we subscribed): status, info and both tracks are
    # acknowledged. PUBACKs arrive asynchronously, so wait for the count rather than sample it.
    wait_until(lambda: pub.counters["published"] >= 4)
    assert pub.counters["dropped"] == 0


def test_reconnects_and_republishes_after_broker_restart(
    mosquitto: MosquittoBroker,
    mqtt_sub: Callable[..., MqttSubscriber],
    make_publisher: Callable[..., MqttPublisher],
) -> None:
    pub = make_publisher(mosquitto.port)
    pub.start()
    wait_until(lambda: pub.connected)
    mosquitto.stop()  # persistence is off: the retained status and info are gone with it
    wait_until(lambda: not pub.connected)
    pub.publish_tracks(1.0, [])
    pub.publish_health(sample_health())
    mosquitto.start()
    sub = mqtt_sub(mosquitto, f"cuas/v1/{NODE}/+")
    assert sub.wait_for(is_status("online"), timeout=15)
    assert sub.wait_for(lambda m: m.topic.endswith("/info"), timeout=10)  # both republished first
    late = mqtt_sub(mosquitto, f"cuas/v1/{NODE}/+")  # the fresh broker holds them retained again
    assert late.wait_for(is_status("online", retain=True))
    assert late.wait_for(lambda m: m.topic.endswith("/info") and m.retain)
    wait_until(lambda: pub.counters["reconnects"] == 1)


def test_queue_is_bounded_while_disconnected(
    make_publisher: Callable[..., MqttPublisher], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mqtt_module, "MAX_PENDING", 5)
    pub = make_publisher(free_port())  # nothing listens there
    pub.start()
    for i in range(8):
        pub.publish_tracks(float(i), [])
    wait_until(lambda: pub.counters["dropped"] >= 3)  # the outbox thread spools asynchronously
    assert pub.counters["dropped"] == 3
    began = time.monotonic()
    pub.stop()
    assert time.monotonic() - began < 2.5


def test_unencodable_message_is_dropped_and_leaves_a_gap(
    mosquitto: MosquittoBroker,
    mqtt_sub: Callable[..., MqttSubscriber],
    make_publisher: Callable[..., MqttPublisher],
) -> None:
    sub = mqtt_sub(mosquitto, f"cuas/v1/{NODE}/tracks")
    pub = make_publisher(mosquitto.port)
    pub.start()
    wait_until(lambda: pub.connected)
    pub.publish_tracks(1.0, [reports.track(alt_m=math.nan)])
    pub.publish_tracks(2.0, [])
    assert sub.wait_for(lambda m: True).payload["seq"] == 2
    assert pub.counters["dropped"] == 1


def test_seqstore_blocks_clean_close_and_crash(tmp_path: Path) -> None:
    store = SequenceStore(tmp_path, block=10, clock=lambda: 0.0)
    assert store.session == 1
    assert [store.next("tracks") for _ in range(25)] == list(range(1, 26))  # crosses two blocks
    assert store.next("health") == 1
    store.close()

    clean = SequenceStore(tmp_path, block=10, clock=lambda: 0.0)
    assert clean.session == 2
    assert (clean.next("tracks"), clean.next("health")) == (26, 2)
    del clean  # crash: never closed

    crashed = SequenceStore(tmp_path, block=10, clock=lambda: 0.0)
    assert crashed.session == 3
    resumed = crashed.next("tracks")
    assert 27 <= resumed <= 27 + 10
    assert crashed.next("health") >= 3
    crashed.close()


def test_seqstore_survives_damaged_file(tmp_path: Path) -> None:
    (tmp_path / "mqtt-seq.json").write_text("{not json")
    store = SequenceStore(tmp_path)
    assert store.next("tracks") == 1
    store.close()
    assert list(tmp_path.glob("mqtt-seq.json.damaged-*"))


# -- MQTT 3.1.1 fallback: a broker front that refuses v5 like an old broker would ----------------


class _V311OnlyProxy:
    """Answers a v5 CONNECT with a 3.1.1 'unacceptable protocol version' CONNACK; pipes the rest."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.refused = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        head = b""

        def need(n: int) -> bool:
            nonlocal head
            while len(head) < n:
                chunk = conn.recv(n - len(head))
                if not chunk:
                    conn.close()
                    return False
                head += chunk
            return True

        # Fixed header: the packet type, then the remaining length in 1-4 bytes (a CONNECT with a
        # Will and its MQTT 5 properties needs 2); then "\0\4MQTT" and the protocol level.
        length_end = 1
        while True:
            if not need(length_end + 1):
                return
            if not head[length_end] & 0x80:
                break
            length_end += 1
        level = length_end + 7
        if not need(level + 1):
            return
        if head[level] == 5:
            self.refused += 1
            conn.sendall(b"\x20\x02\x00\x01")
            conn.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        upstream.sendall(head)
        for a, b in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


def test_falls_back_to_mqtt_311_when_broker_refuses_v5(
    mosquitto: MosquittoBroker,
    mqtt_sub: Callable[..., MqttSubscriber],
    make_publisher: Callable[..., MqttPublisher],
) -> None:
    proxy = _V311OnlyProxy(mosquitto.port)
    try:
        sub = mqtt_sub(mosquitto, f"cuas/v1/{NODE}/+")
        pub = make_publisher(proxy.port)
        pub.start()
        wait_until(lambda: pub.connected, timeout=10)
        assert proxy.refused >= 1
        assert pub._client.protocol == MQTTProtocolVersion.MQTTv311
        sub.wait_for(is_status("online"))
        pub.publish_tracks(1.0, [])
        assert sub.wait_for(lambda m: m.topic.endswith("/tracks")).payload["seq"] == 1
        pub.stop()
        sub.wait_for(is_status("offline"))
    finally:
        proxy.close()


def test_tls_files_that_cannot_load_are_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TLS"):
        MqttPublisher(
            cfg(8883, tls=True, ca_file=tmp_path / "missing-ca.pem"), NODE, tmp_path, SystemClock(), []
        )
    # System CAs when no ca_file: constructing must work (verification stays on).
    MqttPublisher(cfg(8883, tls=True), NODE, tmp_path / "tls", SystemClock(), []).stop()


def test_password_is_never_logged(
    mosquitto: MosquittoBroker,
    make_publisher: Callable[..., MqttPublisher],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "s3cret-Pa55word"
    password_file = tmp_path / "mqtt-password"
    password_file.write_text(secret + "\n")
    caplog.set_level(logging.DEBUG)
    pub = make_publisher(mosquitto.port, username="node", password_file=password_file)
    pub.start()
    wait_until(lambda: pub.connected)
    pub.publish_tracks(1.0, [])
    pub.stop()
    assert "Sending CONNECT" in caplog.text  # paho's own debug log was captured
    assert secret not in caplog.text


def test_publish_after_stop_is_ignored(make_publisher: Callable[..., MqttPublisher]) -> None:
    pub = make_publisher(free_port())
    pub.start()
    pub.stop()
    pub.publish_tracks(1.0, [])  # e.g. the fusion thread racing the shutdown: no exception
    pub.publish_health(sample_health())
    pub.stop()  # idempotent
