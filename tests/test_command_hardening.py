"""No packet or flood on the command channel may silence the node or make it lie (issue 14).

Against a real mosquitto: each one-packet attack (deeply nested JSON, a non-ASCII `sig`, a
wildcard MQTT 5 Response Topic) is followed by proof that tracks and health keep flowing and that
a clean stop still publishes `offline`; response topics outside the node's own `response/`
subtree, over-long ids and non-finite timestamps are refused; a flood from one client and from
rotating client ids neither stops tracks (no gap over 2 s at the subscriber) nor grows the
command queue past its bound nor fills the log. The publisher's threads are supervised: a fault
restarts the loop with back-off, and a loop that keeps failing marks the publisher failed (the
runtime exits non-zero) and lets the broker publish the Last Will.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cuas_node.command_input import MAX_DEPTH, MAX_ID_CHARS, json_depth_ok, response_topic_problem
from cuas_node.commands import Command, CommandProcessor, Refused, Result, sign
from cuas_node.config import CommandsSection, MqttSection
from cuas_node.kernel.clock import SystemClock
from cuas_node.kernel.reports import GeoPoint, NodePosition
from cuas_node.publish import command_inbox, link
from cuas_node.publish.mqtt import MqttPublisher
from cuas_node.publish.spool import DiskSpool
from tests import reports
from tests.fakes import wait_until

if TYPE_CHECKING:
    from conftest import MosquittoBroker, MqttSubscriber, Received

NODE = "mast-1"
ROOT = f"cuas/v1/{NODE}"
KEY = b"0123456789abcdef-shared-key"


# -- helpers -------------------------------------------------------------------------------------


class Commander:
    """A raw MQTT 5 client that publishes anything to the node's `cmd/` (QoS 1, waits for PUBACK)."""

    def __init__(self, broker: MosquittoBroker, client_id: str = "attacker") -> None:
        self.c = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        connected = threading.Event()
        self.c.on_connect = lambda *a: connected.set()
        self.c.connect(broker.host, broker.port, keepalive=10)
        self.c.loop_start()
        assert connected.wait(5), "commander could not connect"

    def send(
        self,
        suffix: str,
        payload: bytes,
        response_topic: str | None = None,
        correlation: bytes | None = None,
    ) -> None:
        props: Properties | None = None
        if response_topic is not None or correlation is not None:
            props = Properties(PacketTypes.PUBLISH)
            if response_topic is not None:
                props.ResponseTopic = response_topic
            if correlation is not None:
                props.CorrelationData = correlation
        info = self.c.publish(f"{ROOT}/cmd/{suffix}", payload, qos=1, properties=props)
        info.wait_for_publish(5)
        assert info.is_published()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


class Handler:
    """The runtime's role: executes authorised commands (here: answers `ok` at once)."""

    def __init__(self) -> None:
        self.seen: list[Command] = []

    def handle_command(self, command: Command, reply: Callable[[Result], None]) -> None:
        self.seen.append(command)
        reply(Result("ok", "done"))


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "cmd.key"
    path.write_bytes(KEY)
    return path


@pytest.fixture
def node(
    mosquitto: MosquittoBroker, tmp_path: Path, key_file: Path
) -> Iterator[Callable[..., tuple[MqttPublisher, Handler]]]:
    """Factory: a started publisher with commands on (allow-listed `ops`, HMAC key), connected."""
    made: list[MqttPublisher] = []

    def make(**overrides: Any) -> tuple[MqttPublisher, Handler]:
        commands = CommandsSection(enabled=True, allow_clients=["ops"], hmac_key_file=key_file)
        cfg = MqttSection(
            host="127.0.0.1", port=mosquitto.port, keepalive_s=5, commands=commands, **overrides
        )
        state = tmp_path / f"state-{len(made)}"
        pub = MqttPublisher(
            cfg, NODE, state, SystemClock(), [("radar-1", "ti-mmwave")], spool_dir=state / "spool"
        )
        handler = Handler()
        pub.set_command_handler(handler)
        made.append(pub)
        pub.start()
        wait_until(lambda: pub.connected and pub.commands_ready, what="publisher subscribed to cmd/")
        return pub, handler

    yield make
    for pub in made:
        pub.stop()


@pytest.fixture
def commander(mosquitto: MosquittoBroker) -> Iterator[Commander]:
    c = Commander(mosquitto)
    yield c
    c.close()


def is_response(name: str, **fields: Any) -> Callable[[Received], bool]:
    def check(m: Received) -> bool:
        return (
            m.topic == f"{ROOT}/response/{name}"
            and isinstance(m.payload, dict)
            and all(m.payload.get(k) == v for k, v in fields.items())
        )

    return check


def assert_still_publishing(pub: MqttPublisher, sub: MqttSubscriber) -> None:
    """Tracks and health published now arrive; the outbox never restarted or failed."""
    before_t, before_h = len(sub.snapshot("/tracks")), len(sub.snapshot("/health"))
    pub.publish_tracks(time.time(), [reports.track(1)])
    pub.publish_health({"uptime_s": 1.0, "sensors": [], "fusion": {"tracks": 0}})
    sub.wait_count("/tracks", before_t + 1, timeout=10)
    sub.wait_count("/health", before_h + 1, timeout=10)
    assert pub.failed is None
    assert pub.health_problem() is None


def assert_clean_stop_says_offline(pub: MqttPublisher, sub: MqttSubscriber) -> None:
    pub.stop()
    sub.wait_for(lambda m: m.topic.endswith("/status") and m.payload.get("state") == "offline", timeout=10)


class TopicRecorder:
    """Records (monotonic receive time, topic) of every message on `topic_filter`, never parsing a
    payload (a subscriber that parses what an attacker sends would itself be the victim)."""

    def __init__(self, broker: MosquittoBroker, topic_filter: str) -> None:
        self.received: list[tuple[float, str]] = []
        self.correlations: list[bytes] = []
        self.c = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        subscribed = threading.Event()
        self.c.on_connect = lambda client, *a: client.subscribe(topic_filter, qos=1)
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect(broker.host, broker.port, keepalive=30)
        self.c.loop_start()
        assert subscribed.wait(5)

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        self.received.append((time.monotonic(), msg.topic))
        correlation = getattr(getattr(msg, "properties", None), "CorrelationData", None)
        if correlation is not None:
            self.correlations.append(bytes(correlation))

    @property
    def times(self) -> list[float]:
        return [t for t, _ in self.received]

    def topics(self) -> set[str]:
        return {name for _, name in self.received}

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def recorder(mosquitto: MosquittoBroker) -> Iterator[Callable[[str], TopicRecorder]]:
    made: list[TopicRecorder] = []

    def make(topic_filter: str) -> TopicRecorder:
        made.append(TopicRecorder(mosquitto, topic_filter))
        return made[-1]

    yield make
    for r in made:
        r.close()


# -- one packet ----------------------------------------------------------------------------------

DEEP = b'{"a":' + b"[" * 30_000 + b"]" * 30_000 + b"}"
ONE_PACKET = {
    "deeply-nested-json": ("status/ops", DEEP, None, "malformed"),
    "non-ascii-sig": ("status", '{"signed":"{}","sig":"é"}'.encode(), None, "unauthorised"),
    "wildcard-response-topic": ("status/ops", b'{"args": {}}', "x/#", "malformed"),
}


@pytest.mark.parametrize("case", sorted(ONE_PACKET))
def test_one_packet_cannot_silence_the_node(
    case: str,
    mosquitto: MosquittoBroker,
    mqtt_sub: Callable[..., MqttSubscriber],
    node: Callable[..., tuple[MqttPublisher, Handler]],
    commander: Commander,
    recorder: Callable[[str], TopicRecorder],
) -> None:
    anywhere = recorder("#")
    # The node's topics and its responses (not cmd/: this subscriber parses JSON).
    topics, responses = mqtt_sub(mosquitto, f"{ROOT}/+"), mqtt_sub(mosquitto, f"{ROOT}/response/#")
    pub, handler = node()
    suffix, payload, response_topic, reason = ONE_PACKET[case]
    commander.send(suffix, payload, response_topic=response_topic, correlation=b"c-1")
    # Refused cleanly, on the node's own default response topic, and counted.
    refusal = responses.wait_for(is_response("status", status="rejected"), timeout=10)
    assert refusal.payload["reason"] == reason
    assert handler.seen == []
    assert_still_publishing(pub, topics)
    # The command channel itself still works: a good command after the bad one is answered.
    commander.send("status/ops", b'{"args": {}, "id": "after"}')
    responses.wait_for(is_response("status", status="ok", id="after"), timeout=10)
    assert [c.name for c in handler.seen] == ["status"]
    counters = pub.command_counters
    assert counters is not None and counters[reason] == 1 and counters["accepted"] == 1
    assert pub.counters["thread_restarts"] == 0 and pub.counters["internal_errors"] == 0
    assert_clean_stop_says_offline(pub, topics)
    outside = {t for t in anywhere.topics() if not t.startswith(f"{ROOT}/")}
    assert not outside, f"published outside its prefix: {outside}"


# -- what a command may make the node publish ----------------------------------------------------


def test_response_topic_outside_the_own_subtree_is_refused(
    mosquitto: MosquittoBroker,
    mqtt_sub: Callable[..., MqttSubscriber],
    node: Callable[..., tuple[MqttPublisher, Handler]],
    commander: Commander,
    recorder: Callable[[str], TopicRecorder],
) -> None:
    anywhere = recorder("#")
    topics, responses = mqtt_sub(mosquitto, f"{ROOT}/+"), mqtt_sub(mosquitto, f"{ROOT}/response/#")
    pub, handler = node()
    for n, target in enumerate(
        [
            "cuas/v1/mast-2/tracks",  # another node's topic
            f"{ROOT}/tracks",  # its own data topic
            f"{ROOT}/response",  # the subtree's root itself
            f"{ROOT}/response/",  # an empty level
            f"{ROOT}/response/a//b",
            f"{ROOT}/response/" + "x" * 300,  # over-long
            f"{ROOT}/response/+",
        ]
    ):
        commander.send("status/ops", json.dumps({"args": {}, "id": f"r{n}"}).encode(), response_topic=target)
        refusal = responses.wait_for(is_response("status", id=f"r{n}"), timeout=10)
        assert refusal.payload["status"] == "rejected" and refusal.payload["reason"] == "malformed", target
        assert "response topic" in refusal.payload["detail"]
    assert handler.seen == []  # a refused command changes nothing
    # Inside the subtree it is obeyed, with the correlation data.
    commander.send("status/ops", b'{"args": {}, "id": "good"}', f"{ROOT}/response/ops/1", b"corr-1")
    good = responses.wait_for(lambda m: m.topic == f"{ROOT}/response/ops/1", timeout=10)
    assert good.payload["status"] == "ok" and good.payload["id"] == "good"
    counters = pub.command_counters
    assert counters is not None and counters["malformed"] == 7 and counters["accepted"] == 1
    assert_still_publishing(pub, topics)
    assert {t for t in anywhere.topics() if not t.startswith(f"{ROOT}/")} == set()


def test_long_ids_and_correlation_data_are_never_echoed(
    mosquitto: MosquittoBroker,
    mqtt_sub: Callable[..., MqttSubscriber],
    node: Callable[..., tuple[MqttPublisher, Handler]],
    commander: Commander,
    recorder: Callable[[str], TopicRecorder],
) -> None:
    topics, responses = mqtt_sub(mosquitto, f"{ROOT}/+"), mqtt_sub(mosquitto, f"{ROOT}/response/#")
    raw = recorder(f"{ROOT}/response/#")
    pub, handler = node()
    long_id = "A" * 60_000
    # Unauthenticated (not allow-listed) and allow-listed: neither gets its long id back.
    commander.send("status/mallory", json.dumps({"args": {}, "id": long_id}).encode())
    commander.send("status/ops", json.dumps({"args": {}, "id": "B" * (MAX_ID_CHARS + 1)}).encode())
    commander.send("status/ops", b'{"args": {}, "id": "ok-id"}', correlation=b"C" * 60_000)
    found = [m.payload for m in responses.wait_count("/response/status", 3, timeout=10)]
    assert [m["status"] for m in found] == ["rejected"] * 3
    assert "id" not in found[0] and "id" not in found[1]
    assert found[2]["id"] == "ok-id" and "correlation data" in found[2]["detail"]
    assert all(len(json.dumps(m)) < 1000 for m in found)
    wait_until(lambda: len(raw.received) >= 3, what="raw responses")
    assert raw.correlations == []  # the 60 KB correlation data is not echoed either
    assert handler.seen == []
    # An id at the bound is echoed.
    commander.send("status/ops", json.dumps({"args": {}, "id": "D" * MAX_ID_CHARS}).encode())
    responses.wait_for(is_response("status", status="ok", id="D" * MAX_ID_CHARS), timeout=10)
    assert_still_publishing(pub, topics)


def test_non_finite_and_huge_timestamps_are_refused_through_the_broker(
    mosquitto: MosquittoBroker,
    mqtt_sub: Callable[..., MqttSubscriber],
    node: Callable[..., tuple[MqttPublisher, Handler]],
    commander: Commander,
) -> None:
    topics, responses = mqtt_sub(mosquitto, f"{ROOT}/+"), mqtt_sub(mosquitto, f"{ROOT}/response/#")
    pub, handler = node()
    for n, ts in enumerate(["NaN", "Infinity", "-Infinity", "1e400", "9" * 400]):
        inner = f'{{"node":"{NODE}","cmd":"status","ts":{ts},"nonce":"nonce-{n:04d}","args":{{}}}}'
        sig = hmac.new(KEY, inner.encode(), hashlib.sha256).hexdigest()
        commander.send("status", json.dumps({"signed": inner, "sig": sig}).encode())
        refusal = responses.wait_count("/response/status", n + 1, timeout=10)[n]
        assert refusal.payload["status"] == "rejected" and refusal.payload["reason"] == "malformed", ts
    assert handler.seen == []
    # A real timestamp still works.
    commander.send("status", sign(KEY, NODE, "status", {}, time.time() + 1.0, request_id="real"))
    responses.wait_for(is_response("status", status="ok", id="real"), timeout=10)
    assert_still_publishing(pub, topics)


# -- sans-IO rules -------------------------------------------------------------------------------


class _Clock:
    t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def _processor() -> CommandProcessor:
    cfg = CommandsSection(enabled=True, allow_clients=["ops"], max_skew_s=30)
    clock = _Clock()
    return CommandProcessor(NODE, cfg, clock, clock.t - 10, KEY)


def _signed(inner: str, key: bytes = KEY) -> bytes:
    return json.dumps(
        {"signed": inner, "sig": hmac.new(key, inner.encode(), hashlib.sha256).hexdigest()}
    ).encode()


def test_non_finite_timestamps_are_refused() -> None:
    p = _processor()
    t = _Clock.t
    for ts in ["NaN", "-NaN", "Infinity", "-Infinity", "1e400", "-1e400", "9" * 400]:
        inner = f'{{"node":"{NODE}","cmd":"status","ts":{ts},"nonce":"nonce-0001","args":{{}}}}'
        outcome = p.process("status", _signed(inner))
        assert isinstance(outcome, Refused) and outcome.reason in ("malformed", "stale"), (ts, outcome)
    # `sign` itself (json.dumps) writes NaN: the node still refuses it, and can never replay it.
    for ts in (math.nan, math.inf, -math.inf):
        outcome = p.process("status", sign(KEY, NODE, "status", {}, ts, nonce="nonce-0002"))
        assert isinstance(outcome, Refused), ts
    ok = p.process("status", sign(KEY, NODE, "status", {}, t, nonce="nonce-0003"))
    assert isinstance(ok, Command)
    assert p.counters.accepted == 1 and p.counters.replayed == 0


def test_sig_is_decoded_strictly() -> None:
    p = _processor()
    inner = json.dumps({"node": NODE, "cmd": "status", "ts": _Clock.t, "nonce": "nonce-0001", "args": {}})
    good = hmac.new(KEY, inner.encode(), hashlib.sha256).hexdigest()
    for sig in [
        "é",
        "é" * 64,
        good[:-1],
        good + "0",
        " " + good[1:],
        good[:-2] + "zz",
        "",
        "0x" + good[2:],
        "٠" * 64,
    ]:
        outcome = p.process("status", json.dumps({"signed": inner, "sig": sig}).encode())
        assert isinstance(outcome, Refused) and outcome.reason == "unauthorised", sig
        assert outcome.detail.startswith("bad signature")
    lone_surrogate = json.dumps({"signed": "\ud800", "sig": good}).encode()
    assert isinstance(p.process("status", lone_surrogate), Refused)
    assert isinstance(
        p.process("status", json.dumps({"signed": inner, "sig": good.upper()}).encode()), Command
    )


def test_json_depth_is_bounded_without_recursion() -> None:
    assert json_depth_ok(b'{"a": [[1, {"b": "[[[[[["}]]}', MAX_DEPTH)
    assert json_depth_ok(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, MAX_DEPTH)
    assert not json_depth_ok(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), MAX_DEPTH)
    assert json_depth_ok(b'"\\"[[[[' + b"[" * 100 + b'"', MAX_DEPTH)  # brackets inside a string
    assert not json_depth_ok(b"[" * 1_000_000, MAX_DEPTH)  # linear, no recursion
    p = _processor()
    outcome = p.process("status/ops", b'{"args": {"x": ' + b"[" * 40 + b"]" * 40 + b"}}")
    assert isinstance(outcome, Refused) and outcome.reason == "malformed" and "nest" in outcome.detail
    deep_inner = '{"node":"' + NODE + '","args":' + "[" * 5000 + "]" * 5000 + "}"
    assert isinstance(p.process("status", _signed(deep_inner)), Refused)


def test_response_topic_rules() -> None:
    base = f"{ROOT}/response"
    assert response_topic_problem(f"{base}/ops", base) is None
    assert response_topic_problem(f"{base}/ops/req-7", base) is None
    for bad in [
        "x/#",
        "cuas/v1/mast-2/response/ops",
        f"{ROOT}/tracks",
        base,
        f"{base}/",
        f"{base}//a",
        f"{base}/a/",
        f"{base}/+",
        f"{base}/a#",
        f"{base}/a\x00b",
        f"{base}/" + "x" * 300,
        f"{base}x/ops",
    ]:
        assert response_topic_problem(bad, base) is not None, bad


def test_long_id_refused_before_anything_echoes_it() -> None:
    p = _processor()
    for suffix in ("status/mallory", "status/ops", "nope/ops"):
        outcome = p.process(suffix, json.dumps({"args": {}, "id": "x" * 60_000}).encode())
        assert isinstance(outcome, Refused) and outcome.request_id is None, suffix
    inner = json.dumps(
        {"node": NODE, "cmd": "status", "ts": _Clock.t, "nonce": "n" * 8, "args": {}, "id": "y" * 500}
    )
    outcome = p.process("status", _signed(inner))
    assert isinstance(outcome, Refused) and outcome.request_id is None


# -- flood -----------------------------------------------------------------------------------------

_FLOOD = r"""
import sys, time
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
port, root, count, rotate = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "rotate"
c = paho.Client(CallbackAPIVersion.VERSION2, client_id="flooder", protocol=MQTTProtocolVersion.MQTTv5)
c.max_queued_messages_set(0)
c.connect("127.0.0.1", port, keepalive=30)
c.loop_start()
infos = []
for i in range(count):
    client = f"c{i}" if rotate else "mallory"
    infos.append(c.publish(f"{root}/cmd/status/{client}", b'{"args": {}, "id": "%d"}' % i, qos=0))
for info in infos[-1:]:
    info.wait_for_publish(60)
print("sent", flush=True)
c.disconnect()
c.loop_stop()
"""


@pytest.mark.parametrize("rotate", [False, True], ids=["one-client", "rotating-client-ids"])
def test_a_command_flood_does_not_stop_tracks_nor_grow_the_queue_nor_fill_the_log(
    rotate: bool,
    mosquitto: MosquittoBroker,
    node: Callable[..., tuple[MqttPublisher, Handler]],
    caplog: pytest.LogCaptureFixture,
    recorder: Callable[[str], TopicRecorder],
) -> None:
    caplog.set_level(logging.INFO, logger="cuas_node")
    pub, _ = node()
    inbox = pub.command_inbox
    assert inbox is not None
    sub = recorder(f"{ROOT}/tracks")
    stop = threading.Event()
    depths: list[int] = []

    def produce() -> None:  # the fusion thread's role: tracks at 10 Hz
        while not stop.wait(0.1):
            pub.publish_tracks(time.time(), [reports.track(1)])
            depths.append(inbox.depth)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        wait_until(lambda: len(sub.times) >= 5, what="tracks flowing before the flood")
        count = 20_000
        flood = subprocess.run(
            [
                sys.executable,
                "-c",
                _FLOOD,
                str(mosquitto.port),
                ROOT,
                str(count),
                "rotate" if rotate else "one",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert flood.stdout.strip() == "sent", flood.stderr
        start = len(sub.times)
        wait_until(lambda: len(sub.times) >= start + 20, what="tracks flowing after the flood")
    finally:
        stop.set()
        producer.join(5)
    gaps = [b - a for a, b in zip(sub.times, sub.times[1:], strict=False)]
    assert max(gaps) < 2.0, f"tracks stopped for {max(gaps):.1f} s"
    counters = pub.command_counters
    assert counters is not None
    assert counters["rate_limited"] + counters["queue_dropped"] > count // 2, counters
    assert inbox.high_water <= inbox.capacity and max(depths) <= inbox.capacity
    handled = sum(counters[k] for k in ("accepted", "malformed", "unauthorised", "stale", "replayed"))
    assert handled < count // 10, counters  # the excess never reached the parser
    assert pub.failed is None and pub.counters["thread_restarts"] == 0
    # The log says so in a few summary lines, never one per message.
    pub.stop()
    lines = [r.getMessage() for r in caplog.records if "command" in r.getMessage()]
    assert 1 <= len(lines) <= 8, lines[:20]
    assert any("dropped" in line for line in lines), lines


# -- supervision ---------------------------------------------------------------------------------


@pytest.fixture
def quick_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(link, "RESTART_MIN_S", 0.02)
    monkeypatch.setattr(link, "RESTART_MAX_S", 0.1)


@pytest.mark.usefixtures("quick_restarts")
def test_outbox_fault_restarts_the_loop_and_loses_nothing(
    mosquitto: MosquittoBroker,
    mqtt_sub: Callable[..., MqttSubscriber],
    node: Callable[..., tuple[MqttPublisher, Handler]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sub = mqtt_sub(mosquitto, f"{ROOT}/+")
    pub, _ = node()
    faults = {"left": 3}
    real_tick = DiskSpool.tick

    def flaky_tick(self: DiskSpool) -> None:
        if faults["left"] > 0:
            faults["left"] -= 1
            raise RuntimeError("injected spool fault")
        real_tick(self)

    monkeypatch.setattr(DiskSpool, "tick", flaky_tick)
    for _ in range(5):
        pub.publish_tracks(time.time(), [reports.track(1)])
        time.sleep(0.1)
    wait_until(lambda: faults["left"] == 0, what="faults injected")
    seqs = [m.payload["seq"] for m in sub.wait_count("/tracks", 5, timeout=10)]
    assert sorted(set(seqs)) == [1, 2, 3, 4, 5]
    assert pub.counters["thread_restarts"] == 3 and pub.failed is None
    tracebacks = [r for r in caplog.records if r.exc_info and "injected spool fault" in str(r.exc_info[1])]
    assert len(tracebacks) == 1  # logged once with its traceback, repeats without
    assert_still_publishing(pub, sub)
    assert_clean_stop_says_offline(pub, sub)


def test_one_failing_event_costs_only_itself(
    mosquitto: MosquittoBroker,
    mqtt_sub: Callable[..., MqttSubscriber],
    node: Callable[..., tuple[MqttPublisher, Handler]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception while handling one event (here: building `info`) is contained: the events
    queued around it (tracks before and after) are all delivered, the loop never restarts."""
    import cuas_node.publish.mqtt as mqtt_module

    sub = mqtt_sub(mosquitto, f"{ROOT}/+")
    pub, _ = node()
    real_info = mqtt_module.info_payload

    def broken_info(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("injected info fault")

    monkeypatch.setattr(mqtt_module, "info_payload", broken_info)
    for n in range(3):
        pub.publish_tracks(time.time(), [reports.track(n + 1)])
    pub.update_info(NodePosition(52.1, 4.3, 12.0, "gps"), GeoPoint(52.1, 4.3, 12.0))
    pub.update_info(NodePosition(52.2, 4.3, 12.0, "gps"), GeoPoint(52.1, 4.3, 12.0))
    for n in range(3):
        pub.publish_tracks(time.time(), [reports.track(n + 1)])
    seqs = [m.payload["seq"] for m in sub.wait_count("/tracks", 6, timeout=10)]
    assert seqs == [1, 2, 3, 4, 5, 6]
    wait_until(lambda: pub.counters["internal_errors"] == 2, what="both faults counted")
    assert pub.counters["thread_restarts"] == 0 and pub.failed is None
    tracebacks = [r for r in caplog.records if r.exc_info and "injected info fault" in str(r.exc_info[1])]
    assert len(tracebacks) == 1  # logged once with its traceback
    monkeypatch.setattr(mqtt_module, "info_payload", real_info)
    assert_still_publishing(pub, sub)
    assert_clean_stop_says_offline(pub, sub)


@pytest.mark.usefixtures("quick_restarts")
def test_outbox_that_keeps_failing_marks_the_publisher_failed_and_the_will_fires(
    mosquitto: MosquittoBroker,
    mqtt_sub: Callable[..., MqttSubscriber],
    node: Callable[..., tuple[MqttPublisher, Handler]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    status = mqtt_sub(mosquitto, f"{ROOT}/status")
    pub, _ = node()
    status.wait_for(lambda m: m.payload.get("state") == "online")

    def broken_tick(self: DiskSpool) -> None:
        raise RuntimeError("injected permanent fault")

    monkeypatch.setattr(DiskSpool, "tick", broken_tick)
    wait_until(lambda: pub.failed, timeout=30, what="publisher failed")
    assert "mqtt-outbox" in (pub.failed or "") and "injected permanent fault" in (pub.failed or "")
    assert pub.counters["thread_restarts"] == link.RESTART_LIMIT
    problem = pub.health_problem()
    assert problem is not None and "failed" in problem  # the watchdog stops feeding systemd
    # The broker's Last Will tells consumers the truth at once (the node cannot say it itself).
    status.wait_for(lambda m: m.payload.get("state") == "offline", timeout=10)
    later = mqtt_sub(mosquitto, f"{ROOT}/status")
    assert later.wait_for(lambda m: m.retain).payload["state"] == "offline"
    pub.publish_tracks(time.time(), [])  # ignored, never queued without bound
    pub.stop()  # returns promptly


@pytest.mark.usefixtures("quick_restarts", "fast_mqtt_backoff")
def test_connector_fault_restarts_the_connector(
    mosquitto: MosquittoBroker,
    mqtt_sub: Callable[..., MqttSubscriber],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import cuas_node.publish.mqtt as mqtt_module

    real_build = mqtt_module.build_client
    calls = {"n": 0}

    def flaky_build(*args: Any, **kwargs: Any) -> paho.Client:
        calls["n"] += 1
        if calls["n"] in (2, 3):  # the first is built at construction, the next after the refusal
            raise RuntimeError("injected connector fault")
        return real_build(*args, **kwargs)

    monkeypatch.setattr(mqtt_module, "build_client", flaky_build)
    mosquitto.stop()
    cfg = MqttSection(host="127.0.0.1", port=mosquitto.port, keepalive_s=5)
    pub = MqttPublisher(cfg, NODE, tmp_path / "state", SystemClock(), [], spool_dir=tmp_path / "spool")
    try:
        pub.start()
        pub.publish_tracks(time.time(), [])
        wait_until(lambda: pub.counters["thread_restarts"] >= 2, what="connector restarted")
        mosquitto.start()
        sub = mqtt_sub(mosquitto, f"{ROOT}/tracks")
        wait_until(lambda: pub.connected, what="connected after the restarts")
        # The spooled message may have gone out before `sub` subscribed: publish one more.
        pub.publish_tracks(time.time(), [])
        sub.wait_count("/tracks", 1, timeout=10)
        assert pub.failed is None
    finally:
        pub.stop()


def test_command_inbox_is_bounded_and_rate_limited_sans_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """The paho-side gate, with a fake clock: per-client and global buckets, then the bound."""
    now = [0.0]
    woken: list[int] = []
    inbox = command_inbox.CommandInbox(
        f"{ROOT}/cmd/", lambda: woken.append(1), frozenset({"ops"}), monotonic=lambda: now[0]
    )
    msg = paho.MQTTMessage(topic=f"{ROOT}/cmd/status/mallory".encode())
    for _ in range(1000):
        inbox.offer(1, msg)
    assert inbox.depth == command_inbox.CLIENT_BURST
    assert inbox.counters == {"rate_limited": 1000 - command_inbox.CLIENT_BURST, "queue_dropped": 0}
    assert len(woken) == 1  # one wake-up for a non-empty queue, not one per message
    for i in range(1000):  # rotating ids: the global bucket holds
        inbox.offer(1, paho.MQTTMessage(topic=f"{ROOT}/cmd/status/c{i}".encode()))
    assert inbox.depth == command_inbox.GLOBAL_BURST <= inbox.capacity
    taken = inbox.take(1000)
    assert len(taken) == command_inbox.GLOBAL_BURST and inbox.depth == 0
    ops = paho.MQTTMessage(topic=f"{ROOT}/cmd/status/ops".encode())
    inbox.offer(1, ops)  # an allow-listed identity is not starved by the (empty) global bucket
    assert inbox.depth == 1
    now[0] += 1.0  # the buckets refill with time
    inbox.offer(1, msg)
    assert inbox.depth == 2

    # The bound: what does not fit is dropped and counted, never queued.
    monkeypatch.setattr(command_inbox, "CAPACITY", 4)
    monkeypatch.setattr(command_inbox, "CLIENT_BURST", 1000)
    monkeypatch.setattr(command_inbox, "GLOBAL_BURST", 1000)
    small = command_inbox.CommandInbox(f"{ROOT}/cmd/", lambda: None, (), monotonic=lambda: now[0])
    for _ in range(10):
        small.offer(1, msg)
    assert small.depth == small.high_water == 4
    assert small.counters == {"rate_limited": 0, "queue_dropped": 6}
