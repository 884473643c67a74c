"""The output framework (node/outputs/worker.py) with the CoT output over real sockets on
loopback: delivery over TCP and UDP, a dead peer that costs the caller nothing (drops counted,
health says why), reconnection when the peer comes back or hangs up, and the runtime's wiring.
"""

from __future__ import annotations

import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cuas_node.config import build_config
from cuas_node.kernel.reports import NodePosition
from cuas_node.outputs import worker as worker_module
from cuas_node.outputs.outputs import Outputs
from cuas_node.outputs.worker import OutputWorker
from tests.conftest import free_port
from tests.reports import track

SESSION = 42


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "BACKOFF_MIN_S", 0.05)
    monkeypatch.setattr(worker_module, "BACKOFF_MAX_S", 0.2)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


class TcpPeer:
    """A TAK-server stand-in that only listens: every connection's bytes, split into events."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.server = socket.create_server((host, port), family=family)
        self.port = self.server.getsockname()[1]  # port 0: any free one
        self.server.settimeout(0.2)
        self.events: list[ET.Element] = []
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buffer = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"</event>" in buffer:
                head, buffer = buffer.split(b"</event>", 1)
                self.events.append(ET.fromstring(head[head.index(b"<event") :] + b"</event>"))

    def hang_up(self) -> None:
        for conn in self.connections:
            conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self.connections.clear()

    def close(self) -> None:
        self._stop.set()
        self.hang_up()
        self.server.close()
        self._thread.join(2)

    def uids(self) -> list[str]:
        return [e.get("uid", "") for e in self.events]


def make_outputs(url: str, **changes: object) -> Outputs:
    config = build_config(
        {"node": {"id": "mast-1"}, "outputs": {"cot": [{"name": "tak", "url": url, **changes}]}}, "test"
    )
    return Outputs.from_config(config, SESSION, time.time)


@pytest.fixture
def peer_port() -> int:
    return free_port()


@pytest.fixture
def tcp_peer(peer_port: int) -> Iterator[TcpPeer]:
    peer = TcpPeer(peer_port)
    yield peer
    peer.close()


def test_tcp_delivers_the_marker_tracks_and_deletions(tcp_peer: TcpPeer, peer_port: int) -> None:
    outputs = make_outputs(f"tcp://127.0.0.1:{peer_port}")
    outputs.start()
    try:
        outputs.position(NodePosition(52.0, 4.0, 10.0, "config"))
        outputs.tracks(1.0, [track(number=1), track(number=2, status="tentative")])
        outputs.tracks(2.0, [track(number=1, status="deleted", t=1_700_000_002.0)])
        wait_until(lambda: len(tcp_peer.events) >= 3)
        health = outputs.health()[0]
        assert health["state"] == "connected" and health["connected_since"] is not None
        assert health["name"] == "tak" and health["kind"] == "cot" and health["last_error"] is None
    finally:
        outputs.stop()
    assert tcp_peer.uids() == ["cuas.mast-1", f"cuas.mast-1.{SESSION}.1", f"cuas.mast-1.{SESSION}.1"]
    assert outputs.health()[0]["sent"] == 3 and outputs.health()[0]["state"] == "stopped"


def test_a_dead_peer_costs_the_caller_nothing_and_drops_are_counted(peer_port: int) -> None:
    outputs = make_outputs(f"tcp://127.0.0.1:{peer_port}", queue_size=3)
    outputs.start()
    try:
        for n in range(10):
            outputs.tracks(float(n), [track(number=n + 1)])  # returns at once: nothing listens
        wait_until(lambda: outputs.health()[0]["last_error"] is not None)
        health = outputs.health()[0]
        assert health["state"] in ("connecting", "disconnected")
        assert "ConnectionRefusedError" in health["last_error"]
        assert health["dropped"] == 7 and health["queued"] == 3 and health["sent"] == 0
        # the peer appears: the output connects by itself and sends what it kept (the newest 3)
        peer = TcpPeer(peer_port)
        try:
            wait_until(lambda: len(peer.events) >= 3)
            assert set(peer.uids()) == {f"cuas.mast-1.{SESSION}.{n}" for n in (8, 9, 10)}
            assert outputs.health()[0]["state"] == "connected"
        finally:
            peer.close()
    finally:
        outputs.stop()


def test_a_peer_that_hangs_up_is_noticed_and_reconnected(tcp_peer: TcpPeer, peer_port: int) -> None:
    outputs = make_outputs(f"tcp://127.0.0.1:{peer_port}")
    outputs.start()
    try:
        outputs.position(NodePosition(52.0, 4.0, 10.0, "gps", 2.0))
        wait_until(lambda: len(tcp_peer.events) == 1)
        tcp_peer.hang_up()
        # noticed without anything to send (the read side sees the end), then a new connection,
        # which begins with the node marker again
        wait_until(lambda: len(tcp_peer.events) == 2)
        assert tcp_peer.uids() == ["cuas.mast-1", "cuas.mast-1"]
        health = outputs.health()[0]
        assert "closed the connection" in (health["last_error"] or "")
    finally:
        outputs.stop()


def udp_event_uids(host: str) -> list[str | None]:
    """A node marker and two tracks sent by a CoT output to a UDP receiver on `host` (an IPv4 or
    IPv6 loopback address): the uids of the first three datagrams."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    receiver = socket.socket(family, socket.SOCK_DGRAM)
    receiver.bind((host, 0))
    receiver.settimeout(10)
    in_url = f"[{host}]" if family == socket.AF_INET6 else host
    outputs = make_outputs(f"udp://{in_url}:{receiver.getsockname()[1]}")
    outputs.start()
    try:
        outputs.position(NodePosition(52.0, 4.0, 10.0, "config"))
        outputs.tracks(1.0, [track(number=1), track(number=2)])
        datagrams = [receiver.recv(65536) for _ in range(3)]
    finally:
        outputs.stop()
        receiver.close()
    return [ET.fromstring(d).get("uid") for d in datagrams]


def test_udp_sends_one_event_per_datagram() -> None:
    assert udp_event_uids("127.0.0.1") == [
        "cuas.mast-1",
        f"cuas.mast-1.{SESSION}.1",
        f"cuas.mast-1.{SESSION}.2",
    ]


def test_an_encoder_bug_is_contained_and_reported(tcp_peer: TcpPeer, peer_port: int) -> None:
    """A bug in a codec costs its output one connection and a back-off, never the thread."""
    outputs = make_outputs(f"tcp://127.0.0.1:{peer_port}")
    worker: OutputWorker = outputs.workers[0]
    original = worker.codec.encode
    calls = {"n": 0}

    def flaky(item: object, now: float) -> list[bytes]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("a bug")
        return original(item, now)  # type: ignore[arg-type]

    worker.codec.encode = flaky  # type: ignore[method-assign]
    outputs.start()
    try:
        outputs.tracks(1.0, [track(number=1)])
        outputs.tracks(2.0, [track(number=2)])
        wait_until(lambda: f"cuas.mast-1.{SESSION}.2" in tcp_peer.uids())
        assert outputs.health()[0]["last_error"] == "ValueError: a bug"
        assert outputs.health()[0]["dropped"] == 1  # the item the bug met
        assert outputs.health()[0]["state"] == "connected"
    finally:
        outputs.stop()


def test_bad_cot_settings_are_config_errors(tmp_path: Path) -> None:
    from cuas_node.config import ConfigError

    for bad, words in (
        ({"url": "http://tak:8080"}, "outputs.cot[0].url"),
        ({"url": "tls://tak:8089"}, "tls_cert_file and tls_key_file"),
        ({"url": "tcp://tak:99999"}, "1..65535"),
        ({"url": "tcp://tak:8087", "affiliation": "x"}, "outputs.cot[0].affiliation"),
    ):
        with pytest.raises(ConfigError) as info:
            build_config({"node": {"id": "n"}, "outputs": {"cot": [bad]}}, "test")
        assert words in str(info.value) and "CUAS_OUTPUTS" in str(info.value)


def test_the_runtime_feeds_its_outputs_and_reports_them_in_health(
    tcp_peer: TcpPeer, peer_port: int, tmp_path: Path, schemas: dict[str, dict[str, object]]
) -> None:
    """The runtime hands the outputs the reports it gives the MQTT sink, and `health.outputs`
    (docs/schemas/health.schema.json) says how each output is doing."""
    import jsonschema

    from cuas_node.core.step import StepResult
    from cuas_node.kernel.clock import ManualClock
    from cuas_node.runtime import Runtime
    from tests.sinks import RecordingSink

    config = build_config(
        {
            "node": {"id": "mast-1", "state_dir": str(tmp_path)},
            "outputs": {"cot": [{"url": f"tcp://127.0.0.1:{peer_port}"}]},
        },
        "test",
    )
    outputs = Outputs.from_config(config, SESSION, time.time)
    runtime = Runtime(config, ManualClock(0.0), [], RecordingSink("mast-1"), session=SESSION, outputs=outputs)
    outputs.start()
    try:
        runtime._deliver(StepResult(1.0, (track(number=5),), ()))
        wait_until(lambda: f"cuas.mast-1.{SESSION}.5" in tcp_peer.uids())
        wait_until(lambda: outputs.health()[0]["sent"] == 1)  # counted just after the bytes left
        health = runtime.health(2.0, 2.0)
        assert health["outputs"][0]["name"] == "cot0" and health["outputs"][0]["sent"] == 1
        jsonschema.validate({"type": "health", "node_id": "mast-1", "seq": 1, **health}, schemas["health"])
    finally:
        outputs.stop()
    assert len(runtime.sink.tracks) == 1  # type: ignore[attr-defined]


def test_doctor_opens_each_output_as_the_node_would(
    tcp_peer: TcpPeer, peer_port: int, tmp_path: Path
) -> None:
    from cuas_node.doctor_outputs import OutputChecks

    dead = free_port()
    config = build_config(
        {
            "node": {"id": "mast-1"},
            "outputs": {
                "cot": [
                    {"name": "up", "url": f"tcp://127.0.0.1:{peer_port}"},
                    {"name": "down", "url": f"tcp://127.0.0.1:{dead}"},
                    {"name": "off", "url": f"tcp://127.0.0.1:{dead}", "enabled": False},
                ]
            },
        },
        "test",
    )
    checks = OutputChecks(timeout_s=3.0)
    checks.check_outputs(config)
    lines = {c.name: c for c in checks.checks}
    assert lines["output up"].status == "PASS" and "connected" in lines["output up"].message
    assert lines["output down"].status == "FAIL" and "ConnectionRefusedError" in lines["output down"].message
    assert "listening" in lines["output down"].fix
    assert lines["output off"].status == "PASS" and "disabled" in lines["output off"].message
    assert tcp_peer.events == []  # the check sends nothing


def test_run_refuses_unreadable_tak_certificate_files(tmp_path: Path) -> None:
    from cuas_node.preflight import startup_problems

    cert = tmp_path / "node.crt"
    cert.write_text("x")
    config = build_config(
        {
            "node": {"id": "n", "state_dir": str(tmp_path)},
            "outputs": {
                "cot": [
                    {"url": "tls://t:8089", "tls_cert_file": str(cert), "tls_key_file": str(tmp_path / "k")},
                    {"url": "tls://t:1", "tls_cert_file": "/nope", "tls_key_file": "/no", "enabled": False},
                ]
            },
        },
        "test",
    )
    problems, _ = startup_problems(config)
    mine = [p for p in problems if p.startswith("outputs.")]
    assert len(mine) == 1 and mine[0].startswith("outputs.cot[0].tls_key_file (env CUAS_OUTPUTS__COT)")
