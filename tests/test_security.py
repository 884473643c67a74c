"""Security against a real mosquitto: the shipped ACL example (with a password file made by
mosquitto_passwd), ACL refusal, and TLS with certificate verification (CA made with openssl)."""

from __future__ import annotations

import logging
import shutil
import subprocess
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

from cuas_node.commands import Command, Result
from cuas_node.config import CommandsSection, MqttSection
from cuas_node.kernel.clock import SystemClock
from cuas_node.publish.mqtt import MqttPublisher
from tests.fakes import wait_for_records, wait_until

if TYPE_CHECKING:
    from conftest import MosquittoBroker

ACL_EXAMPLE = Path(__file__).resolve().parent.parent / "systemd" / "mosquitto-acl.example"
PASSWORDS = {
    "mast-1": "pw-mast-1-secret",
    "mast-2": "pw-mast-2-secret",
    "ops": "pw-ops-secret",
    "central": "pw-c",
    "homeassistant": "pw-ha",
}


pytestmark = pytest.mark.usefixtures("fast_mqtt_backoff")


class Client:
    """A raw MQTT 5 client as a given user, recording messages and PUBACK/SUBACK reason codes."""

    def __init__(self, broker: MosquittoBroker, user: str, client_id: str | None = None) -> None:
        self.messages: list[tuple[str, bytes, Any]] = []
        self.acks: dict[int, Any] = {}
        self.subacks: list[Any] = []
        self.cond = threading.Condition()
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"{user}-test",
                             protocol=MQTTProtocolVersion.MQTTv5)  # fmt: skip
        self.c.username_pw_set(user, PASSWORDS[user])
        connected = threading.Event()
        self.c.on_connect = lambda *a: connected.set()
        self.c.on_message = self._message
        self.c.on_publish = self._ack
        self.c.on_subscribe = self._suback
        self.c.connect(broker.host, broker.port, keepalive=5)
        self.c.loop_start()
        assert connected.wait(5)

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.cond:
            self.messages.append((msg.topic, bytes(msg.payload), getattr(msg, "properties", None)))
            self.cond.notify_all()

    def _ack(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self.cond:
            self.acks[mid] = reason
            self.cond.notify_all()

    def _suback(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        with self.cond:
            self.subacks.append(reasons)
            self.cond.notify_all()

    def subscribe(self, topic_filter: str) -> Any:
        before = len(self.subacks)
        self.c.subscribe(topic_filter, qos=1)
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.subacks) > before, 5)
            return self.subacks[-1][0]

    def publish(self, topic: str, payload: bytes, properties: Properties | None = None) -> Any:
        info = self.c.publish(topic, payload, qos=1, properties=properties)
        with self.cond:
            assert self.cond.wait_for(lambda: info.mid in self.acks, 5)
            return self.acks[info.mid]

    def wait_message(self, predicate: Callable[[str], bool], timeout: float = 5.0) -> tuple[str, bytes, Any]:
        with self.cond:
            found: list[tuple[str, bytes, Any]] = []

            def check() -> bool:
                found[:] = [m for m in self.messages if predicate(m[0])]
                return bool(found)

            assert self.cond.wait_for(check, timeout), [m[0] for m in self.messages]
            return found[0]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def acl_broker(make_mosquitto: Callable[..., MosquittoBroker], broker_files: Path) -> MosquittoBroker:
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd not installed")
    passwd = broker_files / "passwd"
    passwd.write_text("")
    for user, password in PASSWORDS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True)
    acl = broker_files / "acl"
    shutil.copy(ACL_EXAMPLE, acl)
    for path in (passwd, acl):
        path.chmod(0o644)
    return make_mosquitto(f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n")


@pytest.fixture
def clients() -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(broker: MosquittoBroker, user: str, client_id: str | None = None) -> Client:
        made.append(Client(broker, user, client_id))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def publishers(tmp_path: Path) -> Iterator[Callable[..., MqttPublisher]]:
    made: list[MqttPublisher] = []

    def make(node_id: str, port: int, **overrides: Any) -> MqttPublisher:
        cfg = MqttSection(host="127.0.0.1", port=port, keepalive_s=5, **overrides)
        state = tmp_path / f"state-{len(made)}"
        pub = MqttPublisher(cfg, node_id, state, SystemClock(), [], spool_dir=state / "spool")
        made.append(pub)
        return pub

    yield make
    for pub in made:
        pub.stop()


class Handler:
    def __init__(self) -> None:
        self.seen: list[Command] = []

    def handle_command(self, command: Command, reply: Callable[[Result], None]) -> None:
        self.seen.append(command)
        reply(Result("ok", "done"))


def test_acl_example_confines_each_node_to_its_own_topics(
    acl_broker: MosquittoBroker,
    clients: Callable[..., Client],
    publishers: Callable[..., MqttPublisher],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    central = clients(acl_broker, "central")
    assert not central.subscribe("cuas/v1/#").is_failure
    ops = clients(acl_broker, "ops")
    assert not ops.subscribe("cuas/v1/+/response/#").is_failure

    secret = tmp_path / "pw"
    secret.write_text(PASSWORDS["mast-1"])
    handler = Handler()
    commands = CommandsSection(enabled=True, allow_clients=["ops"])
    node = publishers("mast-1", acl_broker.port, username="mast-1", password_file=secret, commands=commands)
    node.set_command_handler(handler)
    node.start()
    wait_until(lambda: node.connected and node.commands_ready, what="node connected and subscribed to cmd/")
    node.publish_tracks(time.time(), [])
    central.wait_message(lambda t: t == "cuas/v1/mast-1/tracks")

    # Commands: the operator, under its own identity, reaches the node and gets an answer.
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = "cuas/v1/mast-1/response/ops-1"
    props.CorrelationData = b"req-1"
    assert not ops.publish("cuas/v1/mast-1/cmd/status/ops", b'{"args": {}}', props).is_failure
    _, body, rprops = ops.wait_message(lambda t: t == "cuas/v1/mast-1/response/ops-1")
    assert b'"status":"ok"' in body and rprops.CorrelationData == b"req-1"
    assert [c.name for c in handler.seen] == ["status"]
    # ... but cannot pretend to be someone else, and a node cannot command another node.
    assert ops.publish("cuas/v1/mast-1/cmd/status/admin", b'{"args": {}}').is_failure
    mast2 = clients(acl_broker, "mast-2")
    assert mast2.publish("cuas/v1/mast-1/cmd/status/mast-2", b'{"args": {}}').is_failure
    # A node writes only under its own prefix and reads only its own cmd/.
    assert mast2.publish("cuas/v1/mast-1/tracks", b"{}").is_failure
    assert not mast2.publish("cuas/v1/mast-2/tracks", b"{}").is_failure
    mast2.subscribe("cuas/v1/mast-1/#")  # granted by mosquitto 2.0, but it delivers nothing
    assert not mast2.subscribe("cuas/v1/mast-2/cmd/#").is_failure
    assert not ops.publish("cuas/v1/mast-1/cmd/status/ops", b'{"args": {}, "id": "two"}').is_failure
    node.publish_tracks(time.time(), [])
    central.wait_message(lambda t: t == "cuas/v1/mast-1/response/status")  # default response topic
    wait_until(
        lambda: len([m for m in central.messages if m[0].endswith("mast-1/tracks")]) == 2, what="2nd track"
    )
    # Proof of silence without a sleep: a message mast-2 may read, sent after the broker routed all
    # of the above, reaches it over the same connection after anything of mast-1's would have.
    assert not ops.publish("cuas/v1/mast-2/cmd/status/ops", b'{"args": {}}').is_failure
    mast2.wait_message(lambda t: t == "cuas/v1/mast-2/cmd/status/ops")
    assert not [m for m in mast2.messages if m[0].startswith("cuas/v1/mast-1/")]
    assert [c.name for c in handler.seen] == ["status", "status"]  # the forged ones never arrived

    # A node configured under the wrong id: refused by the ACL, said once, kept, retried.
    caplog.set_level(logging.INFO, logger="cuas_node.publish.mqtt")
    wrong = publishers("mast-9", acl_broker.port, username="mast-1", password_file=secret)
    wrong.start()
    # Published once connected, the message goes out live and its refusal names it; published
    # before, it would be spooled first and named "spooled message" (a race with the connection).
    wait_until(lambda: wrong.connected, what="mast-9 connected (its status is refused, not the login)")
    wrong.publish_tracks(time.time(), [])
    wait_until(lambda: wrong.broker_state == "acl_refused", what="acl_refused")
    wait_until(
        lambda: acl_broker.log.read_text().count("Denied PUBLISH from cuas-node-mast-9") >= 4,
        timeout=30.0,  # retries are quick; a loaded CI machine is not
        what="retries",
    )
    # Each connection ends in a refusal and then this warning, logged after the refusal's own line
    # (or its suppression): two of them mean the first retry was handled completely.
    wait_for_records(caplog, "lost connection to broker (Not authorized)", count=2, timeout=30.0)
    assert wrong.spool_counters["pending"] == 1  # not lost: delivered once the ACL is fixed
    lines = [r.getMessage() for r in caplog.records if "refused a tracks message" in r.getMessage()]
    assert len(lines) == 1 and "check the broker ACL" in lines[0]
    refusals = [r.getMessage() for r in caplog.records if "check the broker ACL" in r.getMessage()]
    assert len(refusals) == len(set(refusals)), refusals  # said once, not once per retry
    assert PASSWORDS["mast-1"] not in caplog.text


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", str(key), "-out", str(cert))  # fmt: skip
    return key, cert


@pytest.fixture
def tls_broker(
    make_mosquitto: Callable[..., MosquittoBroker], broker_files: Path
) -> tuple[MosquittoBroker, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    ca_key, ca = _make_ca(broker_files, "test-ca")
    key, csr, cert = broker_files / "server.key", broker_files / "server.csr", broker_files / "server.pem"
    ext = broker_files / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    for path in broker_files.iterdir():
        path.chmod(0o644)
    extra = f"listener {{port}} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
    return make_mosquitto(extra, listener=False), ca


def test_tls_verifies_the_broker_and_a_wrong_ca_is_one_clear_line(
    tls_broker: tuple[MosquittoBroker, Path],
    publishers: Callable[..., MqttPublisher],
    broker_files: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker, ca = tls_broker
    good = publishers("mast-1", broker.port, tls=True, ca_file=ca)
    good.start()
    wait_until(lambda: good.connected, what="TLS connection with the right CA")
    good.stop()

    caplog.set_level(logging.INFO, logger="cuas_node.publish.mqtt")
    _, other_ca = _make_ca(broker_files, "other-ca")
    bad = publishers("mast-1", broker.port, tls=True, ca_file=other_ca)
    bad.start()
    bad.publish_tracks(time.time(), [])
    wait_until(lambda: bad.broker_state == "tls_error", what="tls_error")
    wait_for_records(caplog, "failed verification")  # the state is set first, then the line logged
    wait_until(lambda: broker.log.read_text().count("OpenSSL Error") >= 3, timeout=30.0, what="retries")
    lines = [r.getMessage() for r in caplog.records if "TLS" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "failed verification" in lines[0] and "mqtt.ca_file" in lines[0]
    assert not bad.connected
    wait_until(lambda: bad.spool_counters["pending"] == 1, what="spooled meanwhile")


def test_acl_example_lets_a_node_announce_only_itself_to_home_assistant(
    acl_broker: MosquittoBroker,
    clients: Callable[..., Client],
    publishers: Callable[..., MqttPublisher],
    tmp_path: Path,
) -> None:
    """The Home Assistant output's retained documents (docs/outputs.md): the node's own discovery
    configs and HA state pass the shipped ACL, another node's are refused (reported, not fatal),
    and Home Assistant's user reads them."""
    secret = tmp_path / "pw"
    secret.write_text(PASSWORDS["mast-1"])
    node = publishers("mast-1", acl_broker.port, username="mast-1", password_file=secret)
    mine = {
        "homeassistant/sensor/mast-1/drones/config": b'{"name": "Drones detected"}',
        "cuas/v1/mast-1/homeassistant": b'{"drones": 0}',
    }
    forged = "homeassistant/sensor/mast-2/drones/config"
    for topic, data in mine.items():
        node.retain(topic, data)
    node.retain(forged, b'{"name": "not mine"}')
    node.start()
    wait_until(
        lambda: (
            all(node.retained_confirmed(t, d) for t, d in mine.items()) and forged in node.retained_refused()
        ),
        what="own HA documents acknowledged, the other node's refused",
    )
    assert node.connected and node.broker_state == "connected"  # a refused HA document costs nothing else
    ha = clients(acl_broker, "homeassistant")
    assert not ha.subscribe("homeassistant/#").is_failure
    assert not ha.subscribe("cuas/v1/+/homeassistant").is_failure
    ha.wait_message(lambda t: t == "cuas/v1/mast-1/homeassistant")
    ha.wait_message(lambda t: t == "homeassistant/sensor/mast-1/drones/config")
    # Proof that the forged one is not held, without a sleep: HA's own message on its prefix comes
    # after the retained ones of its subscription.
    assert not ha.publish("homeassistant/status", b"online").is_failure
    ha.wait_message(lambda t: t == "homeassistant/status")
    assert not [m for m in ha.messages if m[0] == forged]
