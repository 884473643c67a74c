"""Broker faults against a real mosquitto: down at start, killed and restarted mid-run, `kill -9` of
the node while offline, an outage longer than the stale age, a refused login, and the MQTT 5
properties of the Last Will of a killed node (`kill -9` mid-stream while connected: test_wal.py).

The consumer here keeps a persistent MQTT 5 session on a broker with persistence on, so that what
it misses while the broker is down is queued for it: any `seq` gap it sees is the node's fault.
(Retained status/info after a restart without persistence and the Last Will of a killed node are
in test_publisher.py: test_reconnects_and_republishes_after_broker_restart and
test_last_will_and_seq_gap_after_crash.)"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cuas_node.config import MqttSection
from cuas_node.kernel.clock import SystemClock
from cuas_node.publish.client import build_client
from cuas_node.publish.mqtt import MqttPublisher
from tests import reports
from tests.fakes import wait_until

if TYPE_CHECKING:
    from conftest import MosquittoBroker

NODE = "mast-1"


@pytest.fixture
def persistent(broker_files: Path) -> str:
    """Broker config lines for persistence (sessions and queued messages survive a restart)."""
    return f"persistence true\npersistence_location {broker_files}/\n"


pytestmark = pytest.mark.usefixtures("fast_mqtt_backoff")


class Consumer:
    """A central server's subscriber: MQTT 5, persistent session, QoS 1; records (topic, payload,
    properties) and hands out `seq`s per topic with repeats dropped (what the docs tell consumers)."""

    def __init__(self, broker: MosquittoBroker, topic_filter: str) -> None:
        import json

        self._json = json
        self.messages: list[tuple[str, dict[str, Any], Properties | None]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"consumer-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.on_connect = lambda c, *a: c.subscribe(topic_filter, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        self.client.connect(broker.host, broker.port, keepalive=5, clean_start=False, properties=props)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise TimeoutError("consumer could not subscribe")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, self._json.loads(msg.payload), getattr(msg, "properties", None)))

    def payloads(self, suffix: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def unique_seqs(self, suffix: str) -> list[int]:
        """Seqs in first-arrival order, repeats dropped."""
        seen: dict[int, None] = {}
        for p in self.payloads(suffix):
            seen.setdefault(p["seq"], None)
        return list(seen)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def consumers() -> Iterator[Callable[[MosquittoBroker, str], Consumer]]:
    made: list[Consumer] = []

    def make(broker: MosquittoBroker, topic_filter: str = f"cuas/v1/{NODE}/+") -> Consumer:
        consumer = Consumer(broker, topic_filter)
        made.append(consumer)
        return consumer

    yield make
    for consumer in made:
        consumer.close()


@pytest.fixture
def publishers(tmp_path: Path) -> Iterator[Callable[..., MqttPublisher]]:
    made: list[MqttPublisher] = []

    def make(port: int, **overrides: Any) -> MqttPublisher:
        cfg = MqttSection(host="127.0.0.1", port=port, keepalive_s=5, **overrides)
        pub = MqttPublisher(cfg, NODE, tmp_path / "state", SystemClock(), [], spool_dir=tmp_path / "spool")
        made.append(pub)
        return pub

    yield make
    for pub in made:
        pub.stop()


def assert_no_gap(seqs: list[int], count: int) -> None:
    assert sorted(seqs) == list(range(1, count + 1)), (
        f"gap or loss: {sorted(set(range(1, count + 1)) - set(seqs))}"
    )
    assert seqs == sorted(seqs), "out of order"


def test_broker_down_at_start_node_runs_spools_and_delivers_in_order(
    make_mosquitto: Callable[..., MosquittoBroker],
    persistent: str,
    consumers: Callable[..., Consumer],
    publishers: Callable[..., MqttPublisher],
    tmp_path: Path,
) -> None:
    broker = make_mosquitto(persistent)
    consumer = consumers(broker)
    broker.stop()  # the consumer's session is saved; the node will find no broker
    pub = publishers(broker.port)
    began = time.monotonic()
    pub.start()
    for _ in range(40):
        pub.publish_tracks(time.time(), [])
    pub.publish_alert(reports.alert())
    assert time.monotonic() - began < 0.5  # never waits for the broker
    wait_until(lambda: pub.spool_counters["pending"] == 41, what="41 spooled")
    assert list((tmp_path / "spool").glob("seg-*.log")), "the spool is on disk"
    assert pub.broker_state == "disconnected"

    broker.start()
    wait_until(lambda: len(consumer.unique_seqs("/tracks")) == 40, what="40 tracks delivered")
    wait_until(lambda: len(consumer.payloads("/alerts")) >= 1, what="the alert delivered")
    assert_no_gap(consumer.unique_seqs("/tracks"), 40)
    wait_until(lambda: pub.spool_counters["pending"] == 0, what="spool empty")
    # Delivered segments are deleted; only the one the write-ahead log appends to is left.
    assert len(list((tmp_path / "spool").glob("seg-*.log"))) == 1
    assert pub.counters["dropped"] == 0


def test_broker_killed_mid_run_and_restarted_leaves_no_seq_gap(
    make_mosquitto: Callable[..., MosquittoBroker],
    persistent: str,
    consumers: Callable[..., Consumer],
    publishers: Callable[..., MqttPublisher],
) -> None:
    broker = make_mosquitto(persistent)
    consumer = consumers(broker)
    pub = publishers(broker.port)
    pub.start()
    wait_until(lambda: pub.connected, what="connected")
    stop = threading.Event()
    sent = [0]

    def fusion() -> None:  # a steady 50 Hz of tracks, through the outage, like the runtime
        while not stop.is_set():
            pub.publish_tracks(time.time(), [])
            sent[0] += 1
            stop.wait(0.02)

    thread = threading.Thread(target=fusion, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(consumer.payloads("/tracks")) >= 10, what="live tracks")
        broker.stop()
        wait_until(lambda: not pub.connected, what="outage noticed")
        wait_until(lambda: pub.spool_counters["spooled"] >= 10, what="spooling")
        broker.start()
        wait_until(lambda: pub.connected, what="reconnected")
        wait_until(lambda: pub.spool_counters["pending"] == 0, what="backlog delivered")
        time.sleep(0.1)
    finally:
        stop.set()
        thread.join()
    total = sent[0]
    wait_until(
        lambda: len(consumer.unique_seqs("/tracks")) == total,
        what=f"{total} tracks",
    )
    assert_no_gap(consumer.unique_seqs("/tracks"), total)
    assert pub.counters["reconnects"] == 1
    assert pub.counters["dropped"] == 0


_OFFLINE_NODE = """
import sys, time
from pathlib import Path
from cuas_node.kernel.clock import SystemClock
from cuas_node.config import MqttSection
from cuas_node.publish.mqtt import MqttPublisher
from tests import reports
pub = MqttPublisher(MqttSection(host="127.0.0.1", port=int(sys.argv[1]), keepalive_s=5), "mast-1",
                    Path(sys.argv[2]), SystemClock(), [], spool_dir=Path(sys.argv[3]))
pub.start()
for i in range(100):
    pub.publish_tracks(time.time(), [reports.track(1, "deleted")] if i == 50 else [])
pub.publish_alert(reports.alert())
deadline = time.monotonic() + 10
while pub.spool_counters["pending"] < 101 and time.monotonic() < deadline:
    time.sleep(0.01)
print("spooled", pub.spool_counters["pending"], flush=True)
time.sleep(60)
"""


def test_kill_9_while_offline_then_restart_delivers_everything_spooled(
    make_mosquitto: Callable[..., MosquittoBroker],
    persistent: str,
    consumers: Callable[..., Consumer],
    publishers: Callable[..., MqttPublisher],
    tmp_path: Path,
) -> None:
    broker = make_mosquitto(persistent)
    consumer = consumers(broker)
    broker.stop()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _OFFLINE_NODE,
            str(broker.port),
            str(tmp_path / "state"),
            str(tmp_path / "spool"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().split() == ["spooled", "101"]
        os.kill(proc.pid, signal.SIGKILL)  # no clean stop: nothing flushed, nothing closed
        proc.wait(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    restarted = publishers(broker.port)  # same state and spool directories
    assert restarted.spool_counters["pending"] == 101
    broker.start()
    restarted.start()
    wait_until(lambda: len(consumer.unique_seqs("/tracks")) >= 100, what="all spooled tracks")
    wait_until(lambda: len(consumer.payloads("/alerts")) >= 1, what="the spooled alert")
    seqs = consumer.unique_seqs("/tracks")
    assert_no_gap(seqs, 100)  # at least once: repeats (same seq) allowed, gaps not
    assert consumer.payloads("/alerts")[0]["seq"] == 1


_CONNECTED_NODE = """
import sys, time
from pathlib import Path
from cuas_node.kernel.clock import SystemClock
from cuas_node.config import MqttSection
from cuas_node.publish.mqtt import MqttPublisher
pub = MqttPublisher(MqttSection(host="127.0.0.1", port=int(sys.argv[1]), keepalive_s=5), "mast-1",
                    Path(sys.argv[2]), SystemClock(), [], spool_dir=Path(sys.argv[3]))
pub.start()
deadline = time.monotonic() + 10
while not pub.connected and time.monotonic() < deadline:
    time.sleep(0.01)
print("connected", pub.session, flush=True)
time.sleep(60)
"""


def test_last_will_carries_the_mqtt5_properties_of_every_message(
    mosquitto: MosquittoBroker, consumers: Callable[..., Consumer], tmp_path: Path
) -> None:
    consumer = consumers(mosquitto, f"cuas/v1/{NODE}/status")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CONNECTED_NODE,
            str(mosquitto.port),
            str(tmp_path / "state"),
            str(tmp_path / "spool"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert line[:1] == ["connected"], line
        wait_until(lambda: any(p["state"] == "online" for p in consumer.payloads("/status")), what="online")
        os.kill(proc.pid, signal.SIGKILL)  # no DISCONNECT: the broker publishes the Will
        proc.wait(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    def will() -> tuple[dict[str, Any], Properties | None] | None:
        with consumer._lock:
            found = [(p, props) for _, p, props in consumer.messages if p["state"] == "offline"]
        return found[0] if found else None

    payload, props = wait_until(will, timeout=10, what="the Last Will")
    assert payload["session"] == int(line[1])
    assert props is not None
    assert getattr(props, "ContentType", None) == "application/json"
    assert getattr(props, "PayloadFormatIndicator", None) == 1
    online_props = next(props for _, p, props in consumer.messages if p["state"] == "online")
    assert (
        online_props is not None and online_props.ContentType == props.ContentType
    )  # the same as every message


def test_last_will_has_no_properties_under_the_mqtt_311_fallback() -> None:
    cfg = MqttSection(host="127.0.0.1", port=1883)
    will = ("cuas/v1/mast-1/status", b'{"state":"offline"}')
    v311 = build_client(cfg, "n", MQTTProtocolVersion.MQTTv311, None, None, will, 8)
    assert v311._will_properties is None  # MQTT 3.1.1 has no properties
    v5 = build_client(cfg, "n", MQTTProtocolVersion.MQTTv5, None, None, will, 8)
    assert v5._will_properties is not None and v5._will_properties.ContentType == "application/json"


def test_outage_longer_than_stale_age_drops_only_track_updates_and_counts_them(
    make_mosquitto: Callable[..., MosquittoBroker],
    persistent: str,
    consumers: Callable[..., Consumer],
    publishers: Callable[..., MqttPublisher],
) -> None:
    broker = make_mosquitto(persistent)
    consumer = consumers(broker)
    pub = publishers(broker.port, spool_max_age_s=0.5)
    pub.start()
    wait_until(lambda: pub.connected, what="connected")
    pub.publish_tracks(time.time(), [])  # live: carries the MQTT 5 message expiry
    wait_until(lambda: len(consumer.payloads("/tracks")) == 1, what="live track")
    broker.stop()
    wait_until(lambda: not pub.connected, what="outage noticed")
    for i in range(10):
        pub.publish_tracks(time.time(), [reports.track(1, "deleted")] if i == 4 else [])
    pub.publish_alert(reports.alert())
    wait_until(lambda: pub.spool_counters["pending"] == 11, what="spooled")
    time.sleep(0.6)  # the outage outlives the stale age
    broker.start()
    wait_until(lambda: pub.spool_counters["pending"] == 0, what="spool delivered")
    wait_until(lambda: len(consumer.payloads("/alerts")) == 1, what="alert kept")
    wait_until(lambda: len(consumer.unique_seqs("/tracks")) == 2, what="deletion kept")
    assert consumer.unique_seqs("/tracks") == [1, 6]  # 2..5 and 7..11 were stale updates
    assert pub.spool_counters["dropped_stale"] == 9
    assert pub.counters["dropped"] == 9
    live_props = next(p for t, _, p in consumer.messages if t.endswith("/tracks"))
    assert live_props is not None and getattr(live_props, "MessageExpiryInterval", None) == 1
    pub.publish_health({"uptime_s": 1.0, "sensors": [], "fusion": {"tracks": 0, "confirmed": 0,
                        "queue_depth": 0, "cycle_ms": 0.0}})  # fmt: skip
    wait_until(lambda: len(consumer.payloads("/health")) == 1, what="health")
    assert consumer.payloads("/health")[0]["spool"]["dropped_stale"] == 9


def test_refused_login_gives_one_log_line_a_health_state_and_retries(
    make_mosquitto: Callable[..., MosquittoBroker],
    broker_files: Path,
    publishers: Callable[..., MqttPublisher],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    passwd = broker_files / "passwd"
    passwd.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), NODE, "right-password"], check=True)
    passwd.chmod(0o644)
    broker = make_mosquitto(f"allow_anonymous false\npassword_file {passwd}\n")
    secret = tmp_path / "pw"
    secret.write_text("wrong-password\n")
    caplog.set_level(logging.INFO, logger="cuas_node.publish.mqtt")
    pub = publishers(broker.port, username=NODE, password_file=secret)
    pub.start()
    wait_until(lambda: pub.broker_state == "auth_refused", what="auth_refused")
    wait_until(lambda: broker.log.read_text().count("not authorised") >= 3, what="retries")
    refusals = [r for r in caplog.records if "refused the login" in r.getMessage()]
    assert len(refusals) == 1, [r.getMessage() for r in refusals]
    assert "wrong-password" not in caplog.text
    assert "check mqtt.username" in refusals[0].getMessage()
    assert not pub.connected
