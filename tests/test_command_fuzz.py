"""Fuzz of the command channel (issue 14): whatever arrives on `cmd/`, tracks keep flowing.

Against a real mosquitto, one node for the whole run (state accumulates, as in the field): each
example publishes one message with random bytes, random JSON structures, command- and
signed-command-shaped payloads or nesting bombs, on a random `cmd/` subtopic, with random MQTT 5
properties (Response Topic, Correlation Data). Each example then requires exactly one response,
in the node's own `response/` subtree, and a `tracks` message published after it to arrive; the
publisher must never have restarted a thread, contained an exception or failed. The rate limits
are lifted here so that every example reaches the parser. A sans-IO property test does the same
for the processor alone, with more examples.

Short by default (CI); `CUAS_FUZZ_EXAMPLES=2000 pytest tests/test_command_fuzz.py` for a longer run.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cuas_node.commands import Command, CommandProcessor, Refused, sign
from cuas_node.config import CommandsSection, MqttSection
from cuas_node.kernel.clock import SystemClock
from cuas_node.publish import command_inbox
from cuas_node.publish.mqtt import MqttPublisher
from tests.fakes import wait_until
from tests.test_command_hardening import KEY, NODE, ROOT, Handler

if TYPE_CHECKING:
    from conftest import MosquittoBroker

EXAMPLES = int(os.environ.get("CUAS_FUZZ_EXAMPLES", "60"))

# Characters a broker accepts in a topic or a string property (mosquitto refuses control
# characters, surrogates and non-characters, and would drop the fuzzing client, not the node).
_CHARS = st.characters(blacklist_categories=("Cc", "Cs", "Cn", "Co"))
_LEVEL = st.text(_CHARS.filter(lambda c: c not in "/#+"), max_size=12)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["NaN", "é", "\ud800", "x" * 200]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


@st.composite
def signed_payloads(draw: st.DrawFn) -> bytes:
    """Signed-command-shaped: sometimes validly signed (random ts, nonce, args, id), sometimes
    with a random signature or a random `signed` text."""
    ts = draw(st.one_of(st.floats(), st.integers(), st.just(time.time())))
    nonce = draw(st.text(max_size=70))
    name = draw(st.sampled_from(["status", "set-log-level", "alert-ack", "zone-update", "nope"]))
    args = draw(json_values)
    request_id = draw(st.none() | st.text(max_size=200))
    try:
        good = json.loads(
            sign(KEY, NODE, name, args if isinstance(args, dict) else {}, ts, nonce, request_id)
        )
    except (ValueError, TypeError):
        good = {"signed": "{}", "sig": "0" * 64}
    sig = draw(st.one_of(st.just(good["sig"]), st.text(max_size=70)))
    text = draw(st.one_of(st.just(good["signed"]), st.text(max_size=100)))
    return _dumps({"signed": text, "sig": sig})


payloads = st.one_of(
    st.binary(max_size=300),
    json_values.map(_dumps),
    st.fixed_dictionaries({"args": json_values}, optional={"id": json_values | st.text(max_size=200)}).map(
        _dumps
    ),
    signed_payloads(),
    st.integers(1, 5000).map(lambda n: b'{"args":' + b"[" * n + b"]" * n + b"}"),
)
subtopics = st.one_of(
    st.sampled_from(["status/ops", "status", "set-log-level/ops", "zone-update/ops", "alert-ack", "x/y/z"]),
    st.lists(_LEVEL, max_size=4).map("/".join),
)
response_topics = st.one_of(
    st.none(),
    st.sampled_from(["x/#", "+", f"{ROOT}/response/ok", f"{ROOT}/response/a/+", "cuas/v1/mast-2/tracks", ""]),
    st.text(_CHARS, max_size=300),
    st.text(_CHARS, max_size=40).map(lambda t: f"{ROOT}/response/{t}"),
)
correlations = st.none() | st.binary(max_size=400)


class FuzzRig:
    """The node, a fuzzing client and a raw recorder of what the node publishes."""

    def __init__(self, broker: MosquittoBroker, state: Path, key_file: Path) -> None:
        commands = CommandsSection(enabled=True, allow_clients=["ops"], hmac_key_file=key_file)
        cfg = MqttSection(host="127.0.0.1", port=broker.port, keepalive_s=10, commands=commands)
        self.pub = MqttPublisher(cfg, NODE, state, SystemClock(), [], spool_dir=state / "spool")
        self.pub.set_command_handler(Handler())
        self.lock = threading.Lock()
        self.responses: list[str] = []
        self.tracks: list[float] = []
        self.outside: list[str] = []
        self.watch = self._client(broker, "fuzz-watch", self._on_message, "#")
        self.fuzzer = self._client(broker, "fuzz-send", None, None)
        self.pub.start()
        wait_until(lambda: self.pub.connected and self.pub.commands_ready, what="node subscribed to cmd/")

    @staticmethod
    def _client(
        broker: MosquittoBroker, client_id: str, on_message: Any, topic_filter: str | None
    ) -> paho.Client:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
        ready = threading.Event()
        if topic_filter is None:
            c.on_connect = lambda *a: ready.set()
        else:
            c.on_connect = lambda client, *a: client.subscribe(topic_filter, qos=1)
            c.on_subscribe = lambda *a: ready.set()
            c.on_message = on_message
        c.connect(broker.host, broker.port, keepalive=30)
        c.loop_start()
        assert ready.wait(5)
        return c

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        name = msg.topic
        with self.lock:
            if name.startswith(f"{ROOT}/response/"):
                self.responses.append(name)
            elif name == f"{ROOT}/tracks":
                self.tracks.append(json.loads(msg.payload)["t"])
            elif not name.startswith(f"{ROOT}/"):
                self.outside.append(name)

    def send(
        self, suffix: str, payload: bytes, response_topic: str | None, correlation: bytes | None
    ) -> None:
        props: Properties | None = None
        if response_topic is not None or correlation is not None:
            props = Properties(PacketTypes.PUBLISH)
            if response_topic is not None:
                props.ResponseTopic = response_topic
            if correlation is not None:
                props.CorrelationData = correlation
        info = self.fuzzer.publish(f"{ROOT}/cmd/{suffix}", payload, qos=1, properties=props)
        info.wait_for_publish(5)
        assert info.is_published(), "the broker dropped the fuzzing client (an input it refuses)"

    def count(self, what: list[Any]) -> int:
        with self.lock:
            return len(what)

    def close(self) -> None:
        self.pub.stop()
        for c in (self.watch, self.fuzzer):
            c.disconnect()
            c.loop_stop()


@pytest.fixture
def rig(mosquitto: MosquittoBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FuzzRig]:
    # Every example must reach the parser: no rate limit, a queue that never fills.
    for name, value in [
        ("CLIENT_RATE", 1e6),
        ("CLIENT_BURST", 10**6),
        ("GLOBAL_RATE", 1e6),
        ("GLOBAL_BURST", 10**6),
    ]:
        monkeypatch.setattr(command_inbox, name, value)
    monkeypatch.setattr(command_inbox, "CAPACITY", 10_000)
    key_file = tmp_path / "cmd.key"
    key_file.write_bytes(KEY)
    r = FuzzRig(mosquitto, tmp_path / "state", key_file)
    yield r
    r.close()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(suffix=subtopics, payload=payloads, response_topic=response_topics, correlation=correlations)
def test_no_command_message_stops_the_tracks(
    rig: FuzzRig, suffix: str, payload: bytes, response_topic: str | None, correlation: bytes | None
) -> None:
    responses = rig.count(rig.responses)
    rig.send(suffix, payload, response_topic, correlation)
    # Every command gets exactly one response, in the node's own response subtree ...
    wait_until(lambda: rig.count(rig.responses) > responses, timeout=10, what="the response")
    # ... and a tracks message published after it arrives.
    marker = time.time()
    rig.pub.publish_tracks(marker, [])
    wait_until(lambda: marker in rig.tracks, timeout=10, what="tracks after the command")
    assert rig.count(rig.responses) == responses + 1
    assert rig.outside == []
    counters = rig.pub.counters
    assert counters["internal_errors"] == 0 and counters["thread_restarts"] == 0
    assert rig.pub.failed is None and rig.pub.health_problem() is None


_CLOCK_T = 1_700_000_000.0


@settings(max_examples=EXAMPLES * 5, deadline=None)
@given(suffix=subtopics, payload=payloads)
def test_the_processor_never_raises(suffix: str, payload: bytes) -> None:
    """Sans-IO: anything in, a `Command` or a `Refused` out, with a bounded echo."""
    cfg = CommandsSection(enabled=True, allow_clients=["ops"], max_skew_s=30)
    processor = CommandProcessor(NODE, cfg, lambda: _CLOCK_T, _CLOCK_T - 10, KEY)
    outcome = processor.process(suffix, payload)
    assert isinstance(outcome, Command | Refused)
    assert outcome.request_id is None or len(outcome.request_id) <= 128
    if isinstance(outcome, Refused):
        assert len(outcome.detail) <= 600
    assert sum(processor.counters.as_dict().values()) == 1
