"""The live view's server on loopback, without a browser: authentication, TLS, the API documents,
Server-Sent Events, slow and surplus clients, bad requests, a taken port, and the checks that
`run`, `config check` and `doctor` make of `[web]`. Real sockets and a real Tornado server; the
documents are offered as the MQTT publisher offers them (`WebServer.offer`), and one test checks
that hand-over against a real publisher and broker."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cuas_node.config import ConfigError, WebSection, build_config
from cuas_node.doctor import Doctor
from cuas_node.doctor_platform import port_problem
from cuas_node.preflight import preflight, startup_problems
from cuas_node.web import live
from cuas_node.web.server import WebServer
from tests.certs import self_signed
from tests.conftest import MosquittoBroker, free_port

PASSWORD = "s3cret-Mast-7"
SCENE = {"node_id": "web-1", "sensors": [], "zones": [], "tiles": None, "tracks_max_rate_hz": 5.0}


def tracks_doc(seq: int, n: int = 1, pad: int = 0) -> bytes:
    tracks = [{"id": f"1.{i}", "status": "confirmed", "enu_m": [i, i, 0], "pad": "x" * pad} for i in range(n)]
    return json.dumps({"type": "tracks", "seq": seq, "t": float(seq), "tracks": tracks}).encode()


def auth(password: str = PASSWORD, user: str = "tech") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., WebServer]]:
    started: list[WebServer] = []

    def make(**keys: Any) -> WebServer:
        web = WebSection(enabled=True, port=keys.pop("port", None) or free_port(), **keys)
        server = WebServer(web, SCENE)
        assert server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def get(
    server: WebServer, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, Any, bytes]:
    """(status, headers (case-insensitive), body)."""
    assert server.port is not None
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached")
        time.sleep(0.02)


class Events:
    """A Server-Sent Events reader on a raw HTTP connection."""

    def __init__(self, server: WebServer, headers: dict[str, str] | None = None) -> None:
        assert server.port is not None
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        self.conn.request("GET", "/api/events", headers=headers or {})
        self.response = self.conn.getresponse()

    def next(self) -> tuple[str, Any]:
        """The next (event, decoded data), skipping comments and the retry line."""
        event = ""
        while True:
            line = self.response.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                return event, json.loads(line[6:])

    def close(self) -> None:
        self.conn.close()


# --- authentication --------------------------------------------------------------------------------


def test_password_is_required_and_never_echoed(serve: Callable[..., WebServer], tmp_path: Path) -> None:
    secret = tmp_path / "web-password"
    secret.write_text(PASSWORD + "\n")
    server = serve(password_file=secret)
    server.offer("tracks", tracks_doc(1))
    paths = ["/", "/static/app.js", "/static/style.css", "/api/tracks", "/api/health", "/api/scene", "/nope"]
    seen: list[bytes] = []
    for path in paths:
        status, headers, body = get(server, path)
        assert status == 401, path
        assert headers["WWW-Authenticate"].startswith("Basic ")
        status, headers, body2 = get(server, path, auth("wrong"))
        assert status == 401, path
        status, headers, body3 = get(server, path, auth())
        assert status == (404 if path == "/nope" else 200 if path != "/api/health" else 503), path
        seen += [body, body2, body3, str(headers).encode()]
    for bad in (
        "Basic",
        "Basic !!!",
        "Bearer " + PASSWORD,
        "Basic " + base64.b64encode(PASSWORD.encode()).decode(),
    ):
        assert get(server, "/api/tracks", {"Authorization": bad})[0] == 401
    events = Events(server, auth())
    assert events.next()[0] == "tracks"
    events.close()
    assert Events(server).response.status == 401
    assert all(PASSWORD.encode() not in chunk for chunk in seen)
    counters = server.health()
    assert counters["unauthorised"] >= 2 * len(paths) + 5


def test_unreadable_or_empty_password_file_stops_the_start(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for path, reason in ((tmp_path / "missing", "cannot read"), (empty, "empty")):
        config = build_config(
            {"node": {"id": "w"}, "web": {"enabled": True, "password_file": str(path)}}, "t"
        )
        problems, _notes = startup_problems(config)
        assert any(
            p.startswith("web.password_file (env CUAS_WEB__PASSWORD_FILE)") and reason in p for p in problems
        )
        with pytest.raises(ConfigError):
            WebServer(config.web, SCENE)


# --- documents and live updates -------------------------------------------------------------------


def test_documents_are_the_offered_bytes(serve: Callable[..., WebServer]) -> None:
    server = serve()
    status, headers, body = get(server, "/api/tracks")
    assert status == 503 and json.loads(body) == {"error": "no tracks message yet"}
    doc = tracks_doc(7, n=3)
    server.offer("tracks", doc)
    server.offer("health", b'{"type":"health","seq":2}')
    server.offer("unknown-topic", b"{}")  # ignored
    wait_until(lambda: get(server, "/api/tracks")[2] == doc)
    status, headers, body = get(server, "/api/tracks")
    assert headers["Content-Type"] == "application/json" and headers["Cache-Control"] == "no-store"
    assert get(server, "/api/health")[2] == b'{"type":"health","seq":2}'
    assert json.loads(get(server, "/api/scene")[2]) == SCENE
    page = get(server, "/")
    assert page[0] == 200 and b"cuas-node live view" in page[2]
    assert "default-src 'self'" in page[1]["Content-Security-Policy"]


def test_alerts_are_kept_until_cleared(serve: Callable[..., WebServer]) -> None:
    server = serve()

    def alert(alert_id: str, state: str, since: float) -> bytes:
        return json.dumps({"type": "alert", "alert_id": alert_id, "state": state, "since": since}).encode()

    server.offer("alerts", alert("1.1@a#1", "new", 1.0))
    server.offer("alerts", alert("1.2@a#1", "new", 2.0))
    server.offer("alerts", alert("1.1@a#1", "updated", 1.0))
    wait_until(lambda: len(json.loads(get(server, "/api/alerts")[2])["alerts"]) == 2)
    server.offer("alerts", alert("1.2@a#1", "cleared", 2.0))
    wait_until(lambda: len(json.loads(get(server, "/api/alerts")[2])["alerts"]) == 1)
    (only,) = json.loads(get(server, "/api/alerts")[2])["alerts"]
    assert (only["alert_id"], only["state"]) == ("1.1@a#1", "updated")


def test_events_carry_the_latest_documents(serve: Callable[..., WebServer]) -> None:
    server = serve()
    server.offer("info", b'{"type":"info","node_id":"web-1"}')
    server.offer("tracks", tracks_doc(1))
    wait_until(lambda: get(server, "/api/tracks")[0] == 200)
    events = Events(server)
    assert events.response.getheader("Content-Type") == "text/event-stream"
    assert events.next() == ("info", {"type": "info", "node_id": "web-1"})
    assert events.next()[1]["seq"] == 1
    assert events.next() == ("alerts", {"type": "alerts", "alerts": []})
    for seq in range(2, 40):  # a burst: superseded documents are not queued, the latest arrives
        server.offer("tracks", tracks_doc(seq))
    got = 0
    while got != 39:
        event, data = events.next()
        assert event == "tracks" and data["seq"] > got
        got = data["seq"]
    events.close()


def test_a_slow_client_is_dropped_and_counted(
    serve: Callable[..., WebServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "CLIENT_QUEUE", 2)
    monkeypatch.setattr(live, "MAX_RATE_HZ", 1000.0)
    server = serve()
    assert server.port is not None
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", server.port))
    slow.sendall(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
    wait_until(lambda: server.health()["clients"] == 1)
    reader = Events(server)  # a client that reads keeps up
    seq = 0
    while server.health()["slow_dropped"] == 0:
        seq += 1
        assert seq < 2000, "the slow client was never dropped"
        server.offer("tracks", tracks_doc(seq, pad=100_000))
        while (data := reader.next())[0] != "tracks" or data[1]["seq"] != seq:
            pass
    health = server.health()
    assert health["slow_dropped"] == 1 and health["clients"] == 1 and health["state"] == "serving"
    assert health["cpu_s"] > 0  # the server thread's own CPU clock
    server.offer("tracks", tracks_doc(seq + 1))
    while reader.next()[1].get("seq") != seq + 1:
        pass
    reader.close()
    slow.close()


def test_surplus_clients_are_refused(serve: Callable[..., WebServer]) -> None:
    server = serve(max_clients=1)
    first = Events(server)
    assert first.response.status == 200
    wait_until(lambda: server.health()["clients"] == 1)
    second = Events(server)
    assert second.response.status == 503
    second.close()
    assert server.health()["refused"] == 1
    first.close()
    wait_until(lambda: server.health()["clients"] == 0)
    third = Events(server)
    assert third.response.status == 200
    third.close()


# --- bad requests ---------------------------------------------------------------------------------


def test_bad_requests_get_errors_and_the_server_goes_on(
    serve: Callable[..., WebServer], tmp_path: Path
) -> None:
    tiles = tmp_path / "tiles"
    (tiles / "3" / "4").mkdir(parents=True)
    (tiles / "3" / "4" / "5.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "secret.png").write_bytes(b"no")
    server = serve(tiles_dir=tiles)
    assert server.port is not None
    stalled = socket.create_connection(("127.0.0.1", server.port))
    stalled.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # the rest of the headers never comes
    assert get(server, "/tiles/3/4/5.png")[2] == b"\x89PNG fake"
    assert json.loads(get(server, "/api/scene")[2]) == SCENE  # the scene given (tiles come from it)
    for path in (
        "/tiles/3/4/6.png",
        "/tiles/../secret.png",
        "/tiles/3/4/..%2F..%2F..%2Fsecret.png",
        "/x",
        "/api/",
    ):
        status, headers, body = get(server, path)
        assert status == 404 and path.encode() not in body, path
        assert headers["X-Content-Type-Options"] == "nosniff"
    assert get(server, "/api/tracks", method="POST")[0] == 405
    assert get(server, "/", method="PUT")[0] == 405
    try:
        status = get(server, "/api/scene", {"X-Huge": "a" * 100_000})[0]
    except (ConnectionError, http.client.HTTPException):
        status = 0  # closed without an answer: refused too
    assert status in (0, 431)
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(b"\x00\x01garbage\r\n\r\n")
        reply = raw.recv(100)
        assert reply == b"" or reply.startswith(b"HTTP/1.1 400"), reply  # answered or closed, never hung
    assert get(server, "/api/scene")[0] == 200  # still serving, the stalled connection still open
    stalled.close()
    assert server.health()["state"] == "serving"


def test_a_taken_port_is_reported_not_fatal() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        server = WebServer(WebSection(enabled=True, port=port), SCENE)
        assert server.start() is False
        health = server.health()
        assert health["state"] == "failed" and f"127.0.0.1:{port}" in health["detail"]
        server.offer("tracks", tracks_doc(1))  # the publisher's listener still returns at once
        server.stop()
        assert port_problem("127.0.0.1", port) == "the port is in use by another program"
    assert port_problem("127.0.0.1", port) is None


# --- TLS ---------------------------------------------------------------------------------------------


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path, "web", "localhost", "IP:127.0.0.1")


def test_https_with_the_configured_certificate(serve: Callable[..., WebServer], tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server = serve(tls_cert_file=cert, tls_key_file=key)
    assert server.port is not None and server.url.startswith("https://")
    server.offer("tracks", tracks_doc(3))
    context = ssl.create_default_context(cafile=str(cert))
    wait_until(lambda: _https(server.port or 0, context)[0] == 200)
    assert json.loads(_https(server.port, context)[1])["seq"] == 3
    with socket.create_connection(("127.0.0.1", server.port)) as raw:  # plain HTTP on the TLS port
        raw.sendall(b"GET /api/tracks HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            reply = raw.recv(1000)
        except ConnectionResetError:
            reply = b""
        assert b'"seq"' not in reply
    (tmp_path / "other").mkdir()
    other_cert, _other_key = _self_signed(tmp_path / "other")  # a certificate that is not the key's
    config = build_config(
        {
            "node": {"id": "w"},
            "web": {"enabled": True, "tls_cert_file": str(other_cert), "tls_key_file": str(key)},
        },
        "t",
    )
    problems, _notes = startup_problems(config)
    assert any("cannot load the certificate and key" in p for p in problems)


def _https(port: int, context: ssl.SSLContext) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.request("GET", "/api/tracks")
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_password_without_tls_off_loopback_is_warned(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD)
    secret.chmod(0o600)
    data = {
        "node": {"id": "w", "state_dir": str(tmp_path / "s")},
        "web": {"enabled": True, "password_file": str(secret)},
    }
    assert not any("web." in w for w in preflight(build_config(data, "t"), "t"))
    data["web"]["bind"] = "0.0.0.0"
    warnings = preflight(build_config(data, "t"), "t")
    assert any(w.startswith("web.tls_cert_file") and "without TLS" in w for w in warnings)
    assert all(PASSWORD not in w for w in warnings)
    # doctor says it too, as `config check` and `run` do (one check: preflight.startup_problems)
    from tests.test_doctor import by_name, probe

    path = tmp_path / "config.toml"
    path.write_text(
        f'[node]\nid = "w"\nstate_dir = "{tmp_path / "s"}"\n[mqtt]\nhost = "127.0.0.1"\nport = 1\n'
        f'[web]\nenabled = true\nbind = "0.0.0.0"\nport = {free_port()}\npassword_file = "{secret}"\n'
    )
    check = by_name(Doctor(path, 0.2, probe(tmp_path)).run())["start-up"]
    assert check.status == "WARN" and "without TLS" in check.message


# --- doctor and the publisher's hand-over -----------------------------------------------------------


def test_doctor_checks_the_port(tmp_path: Path) -> None:
    from tests.test_doctor import by_name, probe

    port = free_port()
    path = tmp_path / "config.toml"
    path.write_text(
        f'[node]\nid = "doc-1"\nstate_dir = "{tmp_path / "state"}"\n[mqtt]\nhost = "127.0.0.1"\nport = 1\n'
        f"[web]\nenabled = true\nport = {port}\n"
    )
    assert by_name(Doctor(path, 0.2, probe(tmp_path)).run())["web"].status == "PASS"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen(1)
        check = by_name(Doctor(path, 0.2, probe(tmp_path)).run())["web"]
    assert check.status == "FAIL" and "in use" in check.message and "ss -ltnp" in check.fix


def test_the_publisher_hands_over_what_it_sends(
    tmp_path: Path, mosquitto: MosquittoBroker, mqtt_sub: Any
) -> None:
    from cuas_node.config import MqttSection
    from cuas_node.kernel.clock import SystemClock
    from cuas_node.publish.mqtt import MqttPublisher
    from tests.reports import track

    sub = mqtt_sub(mosquitto, "cuas/v1/#")
    publisher = MqttPublisher(
        MqttSection(host=mosquitto.host, port=mosquitto.port),
        "web-1",
        tmp_path,
        SystemClock(),
        [("r", "radar")],
    )
    got: list[tuple[str, bytes]] = []
    publisher.add_listener(lambda name, data: got.append((name, data)))
    assert got[0][0] == "info" and json.loads(got[0][1])["node_id"] == "web-1"
    publisher.start()
    try:
        publisher.publish_tracks(1.0, [track(number=1)])
        publisher.publish_health({"sensors": []})
        message = sub.wait_for(lambda m: m.topic.endswith("/tracks"))
        health = sub.wait_for(lambda m: m.topic.endswith("/health"))
    finally:
        publisher.stop()
    handed = dict(got[1:])
    assert json.loads(handed["tracks"]) == message.payload
    assert json.loads(handed["health"]) == health.payload


def test_zones_replaced_by_command_reach_open_pages(tmp_path: Path) -> None:
    """A `zone_update` command run by the runtime: pages that are open get a `scene` event with the
    new zones at once, and `GET /api/scene` serves them to pages opened later."""
    from cuas_node.commands import Command, CommandProcessor
    from cuas_node.config import build_config
    from cuas_node.config_sections import CommandsSection
    from cuas_node.kernel.clock import ManualClock
    from cuas_node.runtime import Runtime
    from cuas_node.web.server import serve as start
    from tests.sinks import RecordingSink

    config = build_config(
        {
            "node": {
                "id": "web-1",
                "state_dir": str(tmp_path),
                "position": {"lat": 52.0, "lon": 4.3, "alt_m": 0},
            },
            "web": {"enabled": True, "port": free_port()},
            "zones": [
                {"id": "gate", "level": "warning", "polygon": [[52.0, 4.3], [52.001, 4.3], [52.001, 4.301]]}
            ],
        },
        "test",
    )
    runtime = Runtime(config, ManualClock(0.0), [], RecordingSink("web-1"), session=1)
    server = start(config, lambda listener: None, runtime.health_blocks, runtime.zone_listeners)
    try:
        assert [z["id"] for z in json.loads(get(server, "/api/scene")[2])["zones"]] == ["gate"]
        events = Events(server)
        assert events.next()[0] == "alerts"  # nothing published yet: the active alerts only
        yard = {"id": "yard", "level": "critical", "polygon": [[52.0, 4.3], [52.1, 4.3], [52.1, 4.4]]}
        settings = CommandsSection(enabled=True, allow_clients=["ops"])
        command = CommandProcessor("web-1", settings, lambda: 10.0, 0.0).process(
            "zone-update/ops", json.dumps({"args": {"zones": [yard]}}).encode()
        )
        assert isinstance(command, Command)
        replies: list[Any] = []
        runtime.handle_command(command, replies.append)
        runtime.cycle(1.0, [])
        assert [r.status for r in replies] == ["ok"]
        event, scene = events.next()
        assert event == "scene" and [(z["id"], z["level"]) for z in scene["zones"]] == [("yard", "critical")]
        assert json.loads(get(server, "/api/scene")[2])["zones"] == scene["zones"]
        events.close()
    finally:
        server.stop()


def test_a_bind_address_that_is_no_address_is_a_config_error() -> None:
    from cuas_node.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        build_config({"node": {"id": "w"}, "web": {"enabled": True, "bind": "not an ip"}}, "t")
    (problem,) = caught.value.problems
    assert problem.startswith("web.bind (env CUAS_WEB__BIND): 'not an ip' is neither an IP address")
    for good in ("0.0.0.0", "::", "192.168.1.20", "mast-1.local"):
        assert build_config({"node": {"id": "w"}, "web": {"bind": good}}, "t").web.bind == good
