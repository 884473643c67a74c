"""A real TAK server for the CoT tests: `taky` (PyPI, MIT) in a venv of its own, started on
127.0.0.1 from the config in ../shared/peers/tak, and a plain client that collects what it routes.

taky is looked up as `$CUAS_TAKY`, else `.venv-taky/bin/taky` (scripts/test.sh makes that venv),
else on PATH; tests that need it skip without it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.conftest import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[1]
PEERS = REPO.parent / "shared" / "peers"


def taky_missing() -> str | None:
    """Why the TAK tests cannot run here (None: they can): taky itself, or the peers' config."""
    if taky_bin() is None:
        return "taky is not installed (scripts/test.sh makes .venv-taky)"
    if not (PEERS / "tak" / "taky-tcp.conf").is_file():
        return "../shared/peers/tak is absent"
    return None


def taky_bin() -> Path | None:
    for candidate in (
        os.environ.get("CUAS_TAKY"),
        REPO / ".venv-taky" / "bin" / "taky",
        shutil.which("taky"),
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


class TakyServer:
    """One taky process in `workdir`: plain TCP (`taky-tcp.conf`) or mutual TLS (`takyctl setup`)."""

    def __init__(self, workdir: Path, tls: bool = False) -> None:
        exe = taky_bin()
        assert exe is not None
        self.exe = exe
        self.workdir = workdir
        self.tls = tls
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        if tls:
            self._setup_tls()
        else:
            text = (PEERS / "tak" / "taky-tcp.conf").read_text()
            (workdir / "taky.conf").write_text(re.sub(r"(?m)^port = \d+", f"port = {self.port}", text))

    def _setup_tls(self) -> None:
        ctl = self.exe.with_name("takyctl")
        site = self.workdir / "site"
        user = "root" if os.geteuid() == 0 else os.environ.get("USER", "root")  # owner of its files
        setup = ["setup", "--host", "localhost", "--bind-ip", "127.0.0.1", "--public-ip", "127.0.0.1"]
        subprocess.run(
            [str(ctl), *setup, "--user", user, str(site)],
            check=True,
            capture_output=True,
            cwd=self.workdir,
        )
        conf = site / "taky.conf"
        conf.write_text(re.sub(r"(?m)^port = 8089", f"port = {self.port}", conf.read_text()))
        for name in ("sensor", "viewer"):
            subprocess.run(
                [str(ctl), "-c", "taky.conf", "build_client", "--dump_pem", name],
                check=True,
                capture_output=True,
                cwd=site,
            )
        self.workdir = site

    def client_files(self, name: str) -> tuple[Path, Path, Path]:
        """(certificate, key, CA) of a client made by `takyctl build_client`."""
        cert = next(self.workdir.glob(f"{name}-*.crt"))
        key = next(self.workdir.glob(f"{name}-*.key"))
        return cert, key, self.workdir / "ssl" / "ca.crt"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(self.exe), "-c", "taky.conf"],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "taky.log").open("wb"),
        )
        if not wait_for_port("127.0.0.1", self.port, 20.0):
            self.stop()
            raise RuntimeError("taky did not start: " + (self.workdir / "taky.log").read_text()[-2000:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def url(self) -> str:
        return f"{'tls' if self.tls else 'tcp'}://{'localhost' if self.tls else '127.0.0.1'}:{self.port}"


class CotClient:
    """A second TAK client: connects to the server and keeps every event it receives."""

    def __init__(self, server: TakyServer, name: str = "viewer") -> None:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        if server.tls:
            cert, key, ca = server.client_files(name)
            context = ssl.create_default_context(cafile=str(ca))
            context.load_cert_chain(str(cert), str(key))
            raw = context.wrap_socket(raw, server_hostname="localhost")
        self.sock = raw
        self.sock.settimeout(0.5)
        self.events: list[ET.Element] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffer = b""
        while not self._closed.is_set():
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"</event>" in buffer:
                head, buffer = buffer.split(b"</event>", 1)
                start = head.find(b"<event")
                if start >= 0:
                    element = ET.fromstring(head[start:] + b"</event>")
                    with self._lock:
                        self.events.append(element)

    def snapshot(self, uid_prefix: str = "") -> list[ET.Element]:
        with self._lock:
            return [e for e in self.events if (e.get("uid") or "").startswith(uid_prefix)]

    def wait_for(self, uid_prefix: str, count: int = 1, timeout: float = 20.0) -> list[ET.Element]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.snapshot(uid_prefix)
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(
            f"{len(self.snapshot(uid_prefix))} event(s) with uid {uid_prefix}*, wanted {count}"
        )

    def close(self) -> None:
        self._closed.set()
        try:
            self.sock.close()
        finally:
            self._thread.join(2)
