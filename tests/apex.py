"""A real SAPIENT middleware for the SAPIENT tests: Apex (../shared/peers/sapient-apex, Apache-2.0)
in a venv of its own, started on free 127.0.0.1 ports, its message database read back, and a
plain Peer client that receives what Apex forwards and can send it tasks.

Apex's venv is `$CUAS_APEX_PYTHON`, else `.venv-apex/bin/python` (scripts/test.sh makes it with the
peer's own setup.sh); tests that need it skip without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from sapient_msg.bsi_flex_335_v2_0.sapient_message_pb2 import SapientMessage

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]
APEX = REPO.parent / "shared" / "peers" / "sapient-apex"


def apex_python() -> Path | None:
    for candidate in (os.environ.get("CUAS_APEX_PYTHON"), REPO / ".venv-apex" / "bin" / "python"):
        if candidate and Path(candidate).is_file() and (APEX / "run_apex_loopback.py").is_file():
            return Path(candidate)
    return None


class ApexServer:
    """One Apex process in `workdir` with a Child port (the node) and a Peer port (a client)."""

    def __init__(self, workdir: Path, child_port: int | None = None, peer_port: int | None = None) -> None:
        python = apex_python()
        assert python is not None
        self.python = python
        self.workdir = workdir
        self.child_port = child_port or free_port()
        self.peer_port = peer_port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        config = json.loads((APEX / "apex_minimal.json").read_text())
        ports = {"Child": self.child_port, "Peer": self.peer_port}
        for connection in config["connections"]:
            connection["port"] = ports[connection["type"]]
        (workdir / "apex.json").write_text(json.dumps(config))

    def start(self) -> None:
        log = (self.workdir / "apex.log").open("ab")
        self.proc = subprocess.Popen(
            [str(self.python), str(APEX / "run_apex_loopback.py"), "apex.json"],
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60.0
        while "APEX READY" not in self.log() and time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            time.sleep(0.2)
        assert "APEX READY" in self.log(), self.log()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log(self) -> str:
        path = self.workdir / "apex.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def messages(self) -> list[dict[str, Any]]:
        """Every row of Apex's `Message` table (all data-*.sqlite files), oldest first."""
        rows: list[dict[str, Any]] = []
        for path in sorted((self.workdir / "data").glob("data-*.sqlite")):
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                db.row_factory = sqlite3.Row
                rows += [dict(r) for r in db.execute("SELECT * FROM Message")]
        return rows


class PeerClient:
    """A SAPIENT client on Apex's Peer port (as a fusion node or C2 would be): collects every
    message Apex forwards, and sends messages (tasks) to it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10.0)
        self.received: list[SapientMessage] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffer = b""
        self.sock.settimeout(None)
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while len(buffer) >= 4:
                (length,) = struct.unpack_from("<I", buffer)
                if len(buffer) < 4 + length:
                    break
                message = SapientMessage.FromString(buffer[4 : 4 + length])
                buffer = buffer[4 + length :]
                with self._lock:
                    self.received.append(message)

    def send(self, message: SapientMessage) -> None:
        body = message.SerializeToString()
        self.sock.sendall(struct.pack("<I", len(body)) + body)

    def snapshot(self, content: str | None = None) -> list[SapientMessage]:
        with self._lock:
            found = list(self.received)
        return [m for m in found if content is None or m.WhichOneof("content") == content]

    def wait_for(self, content: str, count: int = 1, timeout_s: float = 30.0) -> list[SapientMessage]:
        deadline = time.monotonic() + timeout_s
        while len(self.snapshot(content)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.snapshot(content)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
