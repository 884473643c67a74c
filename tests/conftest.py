"""Shared fixtures. The MQTT ones run a real `mosquitto`, because the behaviour that matters
(retained messages, the Last Will, reconnects, QoS acknowledgements) lives in the broker and a
mock would only test our assumptions about it."""

from __future__ import annotations

import importlib.abc
import json
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest


class _FoldersAreNotPackages(importlib.abc.MetaPathFinder):
    """The code is the `cuas_node` package; node/, drivers/ and calibration/ are only its folders.
    Tests run from the repository root, where Python would happily import those folders as
    top-level packages (a second copy of every module): make that an immediate error instead."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name in ("node", "drivers", "calibration"):
            raise ImportError(f"import cuas_node, not {name!r} (a folder of the cuas_node package)")
        return None


sys.meta_path.insert(0, _FoldersAreNotPackages())


# Modules whose tests run a node in real time against real peers and judge what it delivered (or,
# test_sdnotify, judge when the watchdog is pinged): marked `real_time`, which scripts/test.sh runs
# in a pytest process of their own at normal priority beside the rest at a lower one, so that no
# two of them and no CPU-bound test ever slows them (a node starved of CPU is slower to track: that
# is not what they test). Under pytest-xdist alone they share one worker (xdist_group).
REAL_TIME_MODULES = frozenset(
    {
        "test_e2e_sim",
        "test_outputs_peers",
        "test_cot_tak",
        "test_sapient_apex",
        "test_homeassistant",
        "test_web_browser",
        "test_wal",
        "test_broker_faults",
        "test_remote_id_flood",
        "test_sdnotify",
    }
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `slow` are opt-in (`pytest -m slow`): skipped, with the reason, unless the
    marker expression names them. The real-time end-to-end modules are marked `real_time` and form
    one xdist group: marked first (`tryfirst`), before `-m` selects and pytest-xdist's own hook
    reads the groups on each worker (after it, the marks came too late and the modules were
    spread over the workers, never grouped)."""
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__.rsplit(".", 1)[-1] in REAL_TIME_MODULES:
            item.add_marker(pytest.mark.real_time)
            item.add_marker(pytest.mark.xdist_group("real-time"))
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: opt-in with `pytest -m slow`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    """`--dist loadgroup` keeps each xdist group on one worker by renaming grouped tests' ids
    (`...@real-time`); pytest 9.2 no longer reads the field pytest-xdist 3.8 renames, and grouping
    is then off without a word (pytest-dev/pytest-xdist#1386): refuse to run so."""
    version = tuple(int(part) for part in pytest.__version__.split(".")[:2] if part.isdigit())
    if getattr(config.option, "dist", "no") == "loadgroup" and version >= (9, 2):
        raise pytest.UsageError(
            f"pytest {pytest.__version__} and pytest-xdist do not group tests (--dist loadgroup): "
            "the real-time modules would compete for the CPU. pyproject.toml pins pytest below 9.2: "
            "pip install -e '.[test]'"
        )


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A test that runs a command in-process (`cli.main(["run", ...])`) has `setup_logging` put a
    handler on the stderr of that moment, pytest's capture of that test: later tests' records
    (a web server thread's access log) then met a closed file ("--- Logging error ---" in CI's
    output). The root logger's handlers and level are put back after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
)
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class MosquittoBroker:
    """A throw-away mosquitto on a loopback port; `stop()`/`start()` keep the same port so that
    clients see an outage and a recovery, as with a broker restart in the field."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, port: int | None = None, extra: str = "") -> None:
        if MOSQUITTO is None:
            raise RuntimeError("mosquitto binary not found")
        self.port = port or free_port()
        self.config = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type all\n" + extra
        )
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 5.0) -> None:
        if self.running:
            return
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen([str(MOSQUITTO), "-c", str(self.config)], stdout=log, stderr=log)
        if not wait_for_port(self.host, self.port, timeout):
            self.stop()
            raise RuntimeError(f"mosquitto did not listen on {self.port}:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        """Terminate the broker (retained messages are lost: persistence is off)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture
def mosquitto() -> Iterator[MosquittoBroker]:
    """A fresh, running broker per test (no retained state leaks between tests)."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto binary not installed (apt-get install mosquitto)")
    with tempfile.TemporaryDirectory(prefix="mosquitto-") as tmp:
        broker = MosquittoBroker(Path(tmp))
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


@pytest.fixture
def make_mosquitto(tmp_path: Path) -> Iterator[Callable[..., MosquittoBroker]]:
    """Factory for brokers with extra config lines (ACLs, TLS, persistence); stopped at teardown.

    `make_mosquitto(extra="...", listener=False)` leaves out the default plain listener so that
    `extra` can declare its own (e.g. TLS) on `broker.port`."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto binary not installed (apt-get install mosquitto)")
    created: list[MosquittoBroker] = []

    def make(extra: str = "", start: bool = True, listener: bool = True) -> MosquittoBroker:
        workdir = tmp_path / f"mosquitto-{len(created)}"
        workdir.mkdir()
        broker = MosquittoBroker(workdir, extra=extra.replace("{workdir}", str(workdir)))
        if not listener:
            text = broker.config.read_text().replace(f"listener {broker.port} 127.0.0.1\n", "")
            broker.config.write_text(text.replace("{port}", str(broker.port)))
        created.append(broker)
        if start:
            broker.start()
        return broker

    yield make
    for broker in created:
        broker.stop()


@pytest.fixture
def broker_files() -> Iterator[Path]:
    """A directory for files the broker must read or write (password file, ACL, certificates,
    persistence) that it can still reach after dropping root privileges to the `mosquitto` user
    (pytest's tmp_path is private to the test's user)."""
    directory = Path(tempfile.mkdtemp(prefix="cuas-mosquitto-"))
    directory.chmod(0o777)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class Received:
    topic: str
    payload: Any  # decoded JSON, or the raw bytes if the payload is not JSON
    retain: bool


class MqttSubscriber:
    """Collects every message on a topic filter (MQTT v5), thread-safely, for assertions."""

    def __init__(self, host: str, port: int, topic_filter: str, timeout: float = 5.0) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        self.messages: list[Received] = []
        self._cond = threading.Condition()
        subscribed = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *args: subscribed.set()
        self._client.on_connect = lambda client, *args: client.subscribe(topic_filter, qos=1)
        self._client.connect(host, port, keepalive=10)
        self._client.loop_start()
        if not subscribed.wait(timeout):
            self.close()
            raise TimeoutError(f"could not subscribe to {topic_filter} on {host}:{port}")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            payload: Any = json.loads(msg.payload)
        except ValueError:
            payload = bytes(msg.payload)
        with self._cond:
            self.messages.append(Received(msg.topic, payload, bool(msg.retain)))
            self._cond.notify_all()

    def snapshot(self, suffix: str = "") -> list[Received]:
        """Messages so far, optionally only those whose topic ends with `suffix`."""
        with self._cond:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def wait_for(self, predicate: Callable[[Received], bool], timeout: float = 5.0) -> Received:
        """The first message (already received or arriving within `timeout`) matching `predicate`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for message in self.messages:
                    if predicate(message):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(m.topic, m.payload, m.retain) for m in self.messages][-10:]
                    raise TimeoutError(f"no matching message within {timeout} s; last seen: {seen}")
                self._cond.wait(remaining)

    def wait_count(self, suffix: str, count: int, timeout: float = 5.0) -> list[Received]:
        """Wait until at least `count` messages on topics ending with `suffix` arrived."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(found := [m for m in self.messages if m.topic.endswith(suffix)]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(found)}/{count} messages on *{suffix} within {timeout} s")
                self._cond.wait(remaining)
            return found

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def mqtt_sub() -> Iterator[Callable[..., MqttSubscriber]]:
    """Factory: `mqtt_sub(broker, "cuas/v1/#")` → a subscribed `MqttSubscriber`, closed at teardown."""
    created: list[MqttSubscriber] = []

    def make(broker: MosquittoBroker, topic_filter: str = "#", timeout: float = 5.0) -> MqttSubscriber:
        sub = MqttSubscriber(broker.host, broker.port, topic_filter, timeout)
        created.append(sub)
        return sub

    yield make
    for sub in created:
        sub.close()


@pytest.fixture(scope="session")
def schemas() -> dict[str, dict[str, Any]]:
    """The published JSON Schemas by message type: {"status": {...}, "tracks": {...}, ...}."""
    loaded: dict[str, dict[str, Any]] = {}
    for path in sorted(SCHEMA_DIR.glob("*.schema.json")):
        loaded[path.name.removesuffix(".schema.json")] = json.loads(path.read_text())
    return loaded


@pytest.fixture
def fast_mqtt_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconnect back-off in tenths of a second, so broker-fault tests see several retries quickly."""
    import cuas_node.publish.mqtt as mqtt_module

    monkeypatch.setattr(mqtt_module, "RECONNECT_MIN_S", 0.1)
    monkeypatch.setattr(mqtt_module, "RECONNECT_MAX_S", 0.4)


@pytest.fixture
def pd_from_every_track(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every established track teaches its radar's Pd, moved or not. For tests that read a radar's
    miss accounting off its learnt Pd with targets that stay put, which in the node teach it
    nothing (`looks.moved`: flickering reflectors tracked before the site is known would)."""
    from cuas_node.fusion import looks

    def every(table: Any, stats: Any, slots: Any, bit: int, model: Any, seen: Any) -> Any:
        return np.ones(slots.size, dtype=bool)

    monkeypatch.setattr(looks, "moved", every)
