"""The SAPIENT output against the real Apex middleware (../shared/peers/sapient-apex): a `sim demo`
run registers, and its status and detection reports pass every Apex validation rule and are
forwarded to a peer client with the right object ids and positions; tasks get a task_ack; the node
re-registers when Apex restarts; a clean stop says goodbye; a refused registration is logged and
retried with back-off. (Apex dying during a run: tests/test_outputs_peers.py.)
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from cuas_node.config import build_config
from cuas_node.kernel.reports import NodePosition
from cuas_node.outputs.outputs import Outputs
from cuas_node.outputs.sapient import StatusReport, Task, TaskAck
from cuas_node.outputs.sapient_msgs import SapientMessage, node_uuid, ulid
from cuas_node.outputs.worker import OutputWorker, PositionItem, TracksItem
from tests.apex import ApexServer, PeerClient, apex_python
from tests.certs import self_signed
from tests.conftest import free_port
from tests.test_cot_tak import horizontal_m, truth_tracks
from tests.test_sapient import a_report

pytestmark = pytest.mark.skipif(
    apex_python() is None, reason="Apex is not installed (scripts/test.sh makes .venv-apex)"
)

ULID_RE = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
NODE_UUID = node_uuid("sim-demo")


@pytest.fixture
def apex(tmp_path: Path) -> Iterator[ApexServer]:
    server = ApexServer(tmp_path / "apex")
    server.start()
    yield server
    server.stop()


def wait_until(predicate: object, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return bool(predicate())  # type: ignore[operator]


def worker(port: int, node_id: str = "mast-1") -> OutputWorker:
    section = {"host": "127.0.0.1", "port": port, "status_interval_s": 1}
    radar = {"max_range_m": 400, "az_sigma_deg": 1, "el_sigma_deg": 2, "range_sigma_m": 3, "rate_hz": 10}
    sensors = [{"id": "radar-1", "kind": "radar", **radar}]
    data = {"node": {"id": node_id}, "sensors": sensors, "outputs": {"sapient": section}}
    config = build_config(data, "test")
    [w] = Outputs.from_config(config, 5, time.time).workers
    return w


def test_sim_demo_reaches_a_peer_with_zero_validation_errors(apex: ApexServer, tmp_path: Path) -> None:
    peer = PeerClient(apex.peer_port)
    try:
        truth = tmp_path / "truth.jsonl"
        env = dict(
            os.environ,
            CUAS_MQTT__PORT="1",  # nothing listens there: MQTT spools, SAPIENT must not care
            CUAS_OUTPUTS__SAPIENT=json.dumps({"host": "127.0.0.1", "port": apex.child_port}),
            XDG_STATE_HOME=str(tmp_path / "state"),
        )
        proc = subprocess.run(
            [sys.executable, "-m", "cuas_node.cli", "sim", "demo", "--speed", "2", "--truth", str(truth)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        # the node's clean stop ends with a goodbye (status report, system GOODBYE)
        assert wait_until(lambda: (apex.messages() or [{}])[-1].get("status_report_system") == "GOODBYE")
        rows = apex.messages()
        kinds = [r["parsed_type"] for r in rows]
        assert kinds[0] == "registration"
        assert [r["status_report_system"] for r in rows].count("GOODBYE") == 1
        errors = [(r["parsed_type"], r["error_description"]) for r in rows if r["error_severity"]]
        assert errors == [], errors[:5]
        assert kinds.count("status_report") >= 2 and kinds.count("detection_report") >= 20, kinds
        assert all(r["forwarded_count"] >= 1 for r in rows), "Apex forwarded every message to the peer"
        assert wait_until(lambda: len(peer.snapshot("detection_report")) >= kinds.count("detection_report"))
        check_detections(peer.snapshot("detection_report"), truth_tracks(truth))
        [reg] = peer.snapshot("registration")
        assert reg.node_id == NODE_UUID and {n.node_type for n in reg.registration.node_definition} >= {2}
    finally:
        peer.close()


def check_detections(reports: list[SapientMessage], truth: dict[str, np.ndarray]) -> None:
    objects: dict[str, list[SapientMessage]] = {}
    for message in reports:
        det = message.detection_report
        assert (
            message.node_id == NODE_UUID
            and ULID_RE.fullmatch(det.report_id)
            and ULID_RE.fullmatch(det.object_id)
        )
        objects.setdefault(det.object_id, []).append(message)
    assert len(objects) >= 3
    for messages in objects.values():  # each object ends with one `lost` report, none before
        states = [m.detection_report.state for m in messages]
        assert states.count("lost") <= 1 and ("lost" not in states[:-1])
    within = compared = 0
    for message in reports:
        det = message.detection_report
        if det.state == "lost":
            continue
        info = {i.type: i.value for i in det.track_info}
        if "bearing_only" in info:
            continue
        t = datetime.fromisoformat(info["track_time"].replace("Z", "+00:00")).timestamp()
        loc = det.location
        sigma = max(loc.y_error * 111_320.0, loc.x_error * 111_320.0 * math.cos(math.radians(loc.y)))
        best = math.inf
        for rows in truth.values():
            if rows[0, 0] <= t <= rows[-1, 0]:
                lat, lon = (float(np.interp(t, rows[:, 0], rows[:, i])) for i in (1, 2))
                best = min(best, horizontal_m(loc.y, loc.x, lat, lon))
        if math.isfinite(best):
            compared += 1
            within += best <= max(4.0 * sigma, 2.0)
    # As for CoT (tests/test_cot_tak.py): a manoeuvring FPV racer may lag its track beyond its own
    # covariance; all else sits within 4 sigma of the truth.
    assert compared >= 20 and within >= 0.75 * compared, (within, compared)


def a_task(command: str, value: str) -> SapientMessage:
    message = SapientMessage(node_id=str(uuid.uuid4()), destination_id=node_uuid("mast-1"))
    message.timestamp.FromNanoseconds(time.time_ns())
    message.task.task_id = ulid(time.time())
    message.task.control = Task.CONTROL_START
    setattr(message.task.command, command, value)
    return message


def test_tasks_from_a_peer_get_a_task_ack(apex: ApexServer) -> None:
    peer = PeerClient(apex.peer_port)
    w = worker(apex.child_port)
    w.start()
    try:
        assert peer.wait_for("registration") and wait_until(lambda: w.state == "connected")
        w.submit(PositionItem(NodePosition(51.5, -0.14, 30.0, "config")))
        w.submit(TracksItem(time.time(), (a_report(t=time.time()),)))
        status, stop = a_task("request", "Status"), a_task("mode_change", "night")
        peer.send(status)
        peer.send(stop)
        acks = {m.task_ack.task_id: m.task_ack for m in peer.wait_for("task_ack", count=2)}
        assert acks[status.task.task_id].task_status == TaskAck.TASK_STATUS_ACCEPTED
        assert acks[stop.task.task_id].task_status == TaskAck.TASK_STATUS_REJECTED
        assert "night" in acks[stop.task.task_id].reason[0]
        [det] = peer.wait_for("detection_report")
        assert det.detection_report.location.y == pytest.approx(51.501)
    finally:
        w.stop()
        peer.close()
    errors = [(r["parsed_type"], r["error_description"]) for r in apex.messages() if r["error_severity"]]
    assert errors == []
    assert w.health()["sent"] >= 3


def test_a_clean_stop_says_goodbye_before_closing(apex: ApexServer) -> None:
    """On stop the ASM sends a NEW status report with system GOODBYE, then closes: Apex accepts it
    (no validation error), forwards it to its peer as the node's last message, and records that the
    node's connection closed."""
    peer = PeerClient(apex.peer_port)
    w = worker(apex.child_port)
    w.start()
    try:
        assert peer.wait_for("status_report") and wait_until(lambda: w.state == "connected")
        w.submit(PositionItem(NodePosition(51.5, -0.14, 30.0, "config")))
        w.submit(TracksItem(time.time(), (a_report(t=time.time()),)))
        assert peer.wait_for("detection_report")
        w.stop()
        assert w.state == "stopped"
        assert wait_until(lambda: peer.snapshot()[-1].WhichOneof("content") == "status_report")
        last = peer.snapshot()[-1].status_report
        assert last.system == StatusReport.SYSTEM_GOODBYE and last.info == StatusReport.INFO_NEW
        assert last.mode == "default" and ULID_RE.fullmatch(last.report_id)
        assert wait_until(lambda: apex.messages()[-1]["status_report_system"] == "GOODBYE")
        rows = apex.messages()
        assert [(r["parsed_type"], r["error_description"]) for r in rows if r["error_severity"]] == []
        assert rows[-1]["forwarded_count"] >= 1
        assert "Connection closed" in apex.log()  # the node closed its end after the goodbye
    finally:
        w.stop()
        peer.close()


def test_a_peer_that_stopped_reading_cannot_hold_the_stop() -> None:
    """A peer that accepted the registration and then never reads again (nor closes): the stop
    sends the goodbye within its time limit and lingers only briefly for the peer's end."""
    peer = MiniPeer(accept=True)
    w = worker(peer.port)
    w.start()
    try:
        # Connected comes before the registration and the first status report are counted (a
        # loaded machine read 0 here, then 2 after the stop); the next report is a second away.
        assert wait_until(lambda: w.state == "connected" and w.health()["sent"] >= 2)
        sent = w.health()["sent"]
        w.stop(timeout_s=10.0)
        assert w.state == "stopped" and not w._thread.is_alive()
        assert w.health()["sent"] == sent + 1  # the goodbye went into the connection
    finally:
        w.stop()
        peer.close()


def test_the_node_registers_again_when_apex_restarts(apex: ApexServer, tmp_path: Path) -> None:
    w = worker(apex.child_port)
    w.start()
    try:
        assert wait_until(lambda: w.state == "connected")
        apex.stop()
        assert wait_until(lambda: w.state != "connected")
        again = ApexServer(tmp_path / "apex-again", apex.child_port, apex.peer_port)
        again.start()
        try:
            peer = PeerClient(again.peer_port)
            assert wait_until(lambda: w.state == "connected", 60.0), w.health()
            assert peer.wait_for("status_report")
            peer.close()
            # Apex commits its message log to SQLite after forwarding: wait for the rows.
            assert wait_until(lambda: bool(again.messages()))
            assert again.messages()[0]["parsed_type"] == "registration"
        finally:
            again.stop()
    finally:
        w.stop()


class MiniPeer:
    """A minimal SAPIENT peer for what Apex cannot do: refuse a registration (with a reason), or
    accept one over TLS. It answers each registration and counts the attempts."""

    def __init__(
        self, accept: bool = False, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.accept, self.tls = accept, tls
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.server = socket.create_server((host, 0), family=family)
        self.port = self.server.getsockname()[1]
        self.attempts = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.server.accept()
            except OSError:
                return
            try:
                conn = self.tls.wrap_socket(raw, server_side=True) if self.tls else raw
                self._answer(conn)
            except (OSError, struct.error):
                raw.close()

    def _answer(self, conn: socket.socket) -> None:
        head = conn.recv(4)
        (length,) = struct.unpack("<I", head)
        body = b""
        while len(body) < length:
            body += conn.recv(length - len(body))
        if SapientMessage.FromString(body).WhichOneof("content") != "registration":
            conn.close()
            return
        self.attempts += 1
        reply = SapientMessage(node_id=str(uuid.uuid4()))
        reply.timestamp.FromNanoseconds(time.time_ns())
        reply.registration_ack.acceptance = self.accept
        if not self.accept:
            reply.registration_ack.ack_response_reason.append("unknown ASM: not on the site list")
        data = reply.SerializeToString()
        conn.sendall(struct.pack("<I", len(data)) + data)
        if not self.accept:
            conn.close()
        # an accepted connection stays open (the node's status reports go nowhere)

    def close(self) -> None:
        self.server.close()


def test_a_refused_registration_is_logged_and_retried_with_back_off(caplog: pytest.LogCaptureFixture) -> None:
    peer = MiniPeer()
    w = worker(peer.port)
    caplog.set_level(logging.WARNING)
    w.start()
    try:
        assert wait_until(lambda: peer.attempts >= 3)
        health = w.health()
        assert health["state"] != "connected" and "not on the site list" in health["last_error"]
        refused = [r for r in caplog.records if "not on the site list" in r.getMessage()]
        assert len(refused) == 1  # one log line per outage, not one per retry
    finally:
        w.stop()
        peer.close()


def test_doctor_connects_to_apex_without_registering(apex: ApexServer) -> None:
    from cuas_node.doctor_outputs import OutputChecks

    closed = free_port()
    for port, status in ((apex.child_port, "PASS"), (closed, "FAIL")):
        config = build_config(
            {"node": {"id": "n"}, "outputs": {"sapient": {"host": "127.0.0.1", "port": port}}}, "t"
        )
        checks = OutputChecks(timeout_s=5.0)
        checks.check_outputs(config)
        [line] = [c for c in checks.checks if c.name == "output sapient"]
        assert line.status == status, line
        if status == "FAIL":
            assert "SAPIENT middleware" in line.fix
    assert "registration" not in [r["parsed_type"] for r in apex.messages()]


def test_tls_verifies_the_peer_and_registers(tmp_path: Path) -> None:
    """Over TLS the peer's certificate must be signed by `tls_ca_file` and name `host`: the same
    peer reached as `localhost` registers, reached as 127.0.0.1 it is refused (name checked)."""
    cert, key = self_signed(tmp_path, "peer", "localhost", "DNS:localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    peer = MiniPeer(accept=True, tls=context)
    try:
        for host, connects in (("localhost", True), ("127.0.0.1", False)):
            section = {"host": host, "port": peer.port, "tls": True, "tls_ca_file": str(cert)}
            config = build_config({"node": {"id": "mast-1"}, "outputs": {"sapient": section}}, "test")
            [w] = Outputs.from_config(config, 5, time.time).workers
            assert w.health()["target"] == f"tls://{host}:{peer.port}"
            w.start()
            try:
                if connects:
                    assert wait_until(lambda: w.state == "connected"), w.health()  # noqa: B023
                else:
                    assert wait_until(lambda: w.last_error is not None), w.health()  # noqa: B023
                    assert "certificate" in str(w.last_error) and w.state != "connected"
            finally:
                w.stop()
        assert peer.attempts >= 1
    finally:
        peer.close()
