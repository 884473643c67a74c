"""Sensor faults on real pseudo-terminals (GitHub issue 8): unplug and replug, permission denied, a
busy port, a wrong baud rate.

Why a symlink: a closed pty's /dev/pts number is freed and may be reused by the next pty, so the
path itself never "vanishes" reliably. The drivers are configured with a symlink in tmp_path that
points at the current pty slave, exactly like udev's /dev/cuas-* names: unplugging removes the name
and destroys the pty, replugging creates a new pty and points the name at it.

Timing: every wait is on a condition with a generous deadline, never a fixed sleep standing in for
an assertion, so the tests hold under CPU load on a shared machine.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import random
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import serial

from cuas_node.drivers.acoustic import protocol as acoustic_protocol
from cuas_node.drivers.acoustic.driver import AcousticArrayDriver
from cuas_node.drivers.acoustic.geometry import resolve
from cuas_node.drivers.driver import Driver
from cuas_node.drivers.nmea.driver import NmeaDriver
from cuas_node.drivers.nmea.encode import encode_gga
from cuas_node.drivers.parsing import BaudWatch
from cuas_node.drivers.port_errors import (
    PortBusy,
    PortDisconnected,
    PortError,
    PortMissing,
    PortNotATty,
    PortPermissionDenied,
    busy_message,
    by_id_names,
    console_conflict,
    missing_message,
    permission_message,
    port_error,
    port_holders,
    read_error,
)
from cuas_node.drivers.radar.ti_driver import TiMmwaveDriver
from cuas_node.drivers.radar.ti_encode import encode_frame
from cuas_node.drivers.remoteid.driver import RemoteIdDriver
from cuas_node.drivers.remoteid.encode import encode_message
from cuas_node.drivers.remoteid.messages import Location
from cuas_node.drivers.sim.acoustic import synth_array_block
from cuas_node.drivers.sim.pty import PtyPort
from cuas_node.drivers.supervisor import DriverSupervisor
from cuas_node.drivers.transport import SerialTransport
from cuas_node.kernel.clock import SystemClock
from cuas_node.kernel.measurement import AnyMeasurement, SensorState
from tests.fakes import wait_until

TIMEOUT_S = 20.0
SUPERVISOR_LOG = "cuas_node.drivers.supervisor"


# --- byte streams that each driver turns into measurements ---------------------------------------

_T0 = 1.7e9
_LOCATION = encode_message(
    Location(lat=52.0, lon=4.0, alt_geo_m=50.0, speed_h_mps=1.0, direction_deg=0.0, speed_v_mps=0.0)
)
_MIC = resolve("respeaker-4")
_MIC_RATE = 8000
_MIC_AUDIO = synth_array_block(_MIC, _MIC_RATE, 0.5, 0.3, 2.0, 20.0) * 20000.0


def nmea_chunk(i: int) -> bytes:
    return encode_gga(_T0 + i, 52.0, 4.0, 10.0)


def ti_chunk(i: int) -> bytes:
    return encode_frame(i, [[1.0, 10.0, 0.0, 2.0]], [20.0], [5.0])


def remoteid_chunk(i: int) -> bytes:
    return f"ODID,bt4,aa:bb:cc:dd:ee:01,-60,0d{i % 256:02x}{_LOCATION.hex()}\n".encode()


def acoustic_chunk(i: int) -> bytes:
    """500-sample frames of a looping 2 s recording of a source; a block (0.5 s) every 8 frames."""
    n = 500
    start = (i * n) % _MIC_AUDIO.shape[0]
    return acoustic_protocol.encode_frame(_MIC_AUDIO[start : start + n], _MIC_RATE, i, i * n * 125)


@dataclass(frozen=True)
class Kind:
    name: str
    make: Callable[[str, str], Driver[Any]]
    chunk: Callable[[int], bytes]


CLOCK = SystemClock()
KINDS = [
    Kind("nmea", lambda sid, port: NmeaDriver.from_port(sid, port, CLOCK), nmea_chunk),
    Kind("ti-mmwave", lambda sid, port: TiMmwaveDriver.from_port(sid, port, CLOCK), ti_chunk),
    Kind("remoteid", lambda sid, port: RemoteIdDriver.from_port(sid, port, CLOCK), remoteid_chunk),
    Kind(
        "acoustic-array",
        lambda sid, port: AcousticArrayDriver.from_port(sid, port, CLOCK, threshold=0.0),
        acoustic_chunk,
    ),
]


class PluggablePort:
    """A pty behind a udev-like symlink, with a feeder thread that writes the sensor's stream."""

    def __init__(self, link: Path, chunk: Callable[[int], bytes], period_s: float = 0.02) -> None:
        self.link = link
        self.chunk = chunk
        self.period_s = period_s
        self._pty: PtyPort | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self.plug()
        self._thread.start()

    def plug(self) -> None:
        with self._lock:
            self._pty = PtyPort()
            self.link.symlink_to(self._pty.path)

    def unplug(self) -> None:
        """The name disappears and the device with it: master and slave closed, reads fail with EIO."""
        with self._lock:
            self.link.unlink()
            assert self._pty is not None
            self._pty.close()
            self._pty = None

    def _feed(self) -> None:
        i = 0
        while not self._stop.wait(self.period_s):
            with self._lock:
                if self._pty is not None:
                    self._pty.write(self.chunk(i), max_wait_s=0.05)
            i += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        with self._lock:
            if self._pty is not None:
                self._pty.close()
                self._pty = None


@dataclass
class Bench:
    """DriverSupervisors sharing one queue, as under the Runtime, with a consumer that records arrivals."""

    loops: list[DriverSupervisor] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    out: queue.Queue[AnyMeasurement] = field(default_factory=lambda: queue.Queue(maxsize=20000))
    counts: dict[str, int] = field(default_factory=dict)
    _consumer: threading.Thread | None = None

    def add(self, driver: Driver[Any]) -> DriverSupervisor:
        loop = DriverSupervisor(
            driver, self.out, self.stop, backoff_min_s=0.01, backoff_max_s=0.05, settle_s=0.05
        )
        self.loops.append(loop)
        return loop

    def start(self) -> None:
        self._consumer = threading.Thread(target=self._consume, daemon=True)
        self._consumer.start()
        for loop in self.loops:
            loop.thread.start()

    def _consume(self) -> None:
        while not self.stop.is_set():
            try:
                m = self.out.get(timeout=0.05)
            except queue.Empty:
                continue
            self.counts[m.sensor_id] = self.counts.get(m.sensor_id, 0) + 1

    def count(self, sensor_id: str) -> int:
        return self.counts.get(sensor_id, 0)

    def close(self) -> None:
        self.stop.set()
        for loop in self.loops:
            loop.thread.join(2.0)
        if self._consumer is not None:
            self._consumer.join(2.0)


@pytest.fixture
def bench() -> Iterator[Bench]:
    b = Bench()
    yield b
    b.close()


def _lines(caplog: pytest.LogCaptureFixture, sensor_id: str, needle: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == SUPERVISOR_LOG and f"sensor {sensor_id} " in r.getMessage() and needle in r.getMessage()
    ]


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_unplug_and_replug(
    kind: Kind, tmp_path: Path, bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=SUPERVISOR_LOG)
    dut_link, other_link = tmp_path / "cuas-dut", tmp_path / "cuas-gps"
    dut_port = PluggablePort(dut_link, kind.chunk)
    other_port = PluggablePort(other_link, nmea_chunk)
    try:
        dut = bench.add(kind.make("dut", str(dut_link)))
        other = bench.add(NmeaDriver.from_port("other", str(other_link), CLOCK))
        bench.start()
        wait_until(lambda: bench.count("dut") > 0 and bench.count("other") > 0, what="first measurements")

        dut_port.unplug()
        wait_until(lambda: dut.driver.state == SensorState.DOWN, what="the sensor to go down")
        other_at_unplug = bench.count("other")
        # A long outage: many failed reopen attempts, health down all along, the rest keeps running.
        states: set[SensorState] = set()

        def outage_long_enough() -> bool:
            states.add(dut.driver.state)
            return dut.stats.errors.get("open", 0) >= 8 and bench.count("other") >= other_at_unplug + 3

        wait_until(outage_long_enough, what="a long outage while the other sensor keeps producing")
        assert states == {SensorState.DOWN}
        health = dut.driver.health()
        assert health.state == SensorState.DOWN and "does not exist" in health.detail
        assert str(dut_link) in health.detail
        assert other.driver.state == SensorState.OK

        dut_at_replug = bench.count("dut")
        dut_port.plug()
        wait_until(lambda: bench.count("dut") > dut_at_replug, what="measurements after the replug")
        assert dut.driver.state == SensorState.OK
        wait_until(lambda: bool(_lines(caplog, "dut", "is back")), what="the outage to end")

        unavailable = _lines(caplog, "dut", "unavailable")
        assert len(unavailable) == 1, unavailable
        assert "lost serial port" in unavailable[0] and str(dut_link) in unavailable[0]
        assert len(_lines(caplog, "dut", "is back")) == 1
        assert _lines(caplog, "other", "unavailable") == []
    finally:
        bench.close()
        dut_port.close()
        other_port.close()


def test_missing_port_at_start_is_reported_once_then_found(
    tmp_path: Path, bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    """A sensor plugged in after the node started: one line saying what is missing, one when found."""
    caplog.set_level(logging.INFO, logger=SUPERVISOR_LOG)
    link = tmp_path / "cuas-gps"
    loop = bench.add(NmeaDriver.from_port("gps", str(link), CLOCK))
    bench.start()
    wait_until(lambda: loop.stats.errors.get("open", 0) >= 5, what="failed opens")
    real = PluggablePort(link, nmea_chunk)  # plugged in only now
    try:
        wait_until(lambda: bench.count("gps") > 0, what="measurements once plugged")
        wait_until(lambda: bool(_lines(caplog, "gps", "is back")), what="the outage to end")
        unavailable = _lines(caplog, "gps", "unavailable")
        assert len(unavailable) == 1 and "does not exist" in unavailable[0]
        assert len(_lines(caplog, "gps", "is back")) == 1
    finally:
        bench.close()
        real.close()


# --- port errors: busy, permission, missing, not a tty -------------------------------------------


def test_second_opener_gets_busy_naming_the_holder(tmp_path: Path) -> None:
    pty = PtyPort()
    link = tmp_path / "cuas-radar-data"
    link.symlink_to(pty.path)
    first, second = SerialTransport(str(link), 921600), SerialTransport(str(link), 921600)
    try:
        first.open()
        with pytest.raises(PortBusy) as info:
            second.open()
        assert isinstance(info.value, serial.SerialException) and isinstance(info.value, OSError)
        message = str(info.value)
        assert f"serial port {link} is busy" in message
        assert f"pid {os.getpid()} (this process)" in message
        assert "gpsd" in message and "ModemManager" in message
        assert not second.is_open
        first.close()
        second.open()  # released: the next opener gets it
        assert second.is_open
    finally:
        first.close()
        second.close()
        pty.close()


def test_port_holders_finds_processes_through_proc(tmp_path: Path) -> None:
    pty = PtyPort()
    try:
        found = port_holders(pty.path)
        assert any(h.startswith(f"pid {os.getpid()} ") for h in found)
        assert port_holders(str(tmp_path / "nothing")) == []
    finally:
        pty.close()


def test_permission_denied_for_real_as_an_unprivileged_user() -> None:
    """Tests run as root, for whom chmod 000 means nothing: a forked child drops to `nobody` and
    opens a pty slave (root:tty, mode 620) through SerialTransport, as the service user would."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    pty = PtyPort()
    public = Path(tempfile.mkdtemp(prefix="cuas-faults-"))  # tmp_path's parents are root-only (0700)
    public.chmod(0o755)
    link = public / "cuas-gps"
    link.symlink_to(pty.path)
    os.chmod(pty.path, 0o600)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no pytest machinery from here on, just report and _exit
        code = 1
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                SerialTransport(str(link), 9600).open()
                os.write(write_fd, b"OPENED")
            except PortError as exc:
                os.write(write_fd, f"{type(exc).__name__}|{exc.errno}|{exc}".encode())
                code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    os.waitpid(pid, 0)
    pty.close()
    shutil.rmtree(public)
    kind, errno_text, message = b"".join(chunks).decode().split("|", 2)
    assert kind == "PortPermissionDenied" and int(errno_text) == errno.EACCES
    assert f"permission denied opening serial port {link} (-> {pty.path}" in message
    assert re.search(r"\(group \w+, mode crw-------\) as user nobody: nobody is not in group \w+", message)
    assert "usermod -aG" in message and "dialout cuas" in message


def test_permission_message_names_group_and_fix() -> None:
    msg = permission_message(
        "/dev/cuas-gps", user="cuas", group="dialout", mode="crw-rw----", member=False, console=""
    )
    assert "cuas is not in group dialout" in msg
    assert "sudo usermod -aG dialout cuas" in msg and "restart the service" in msg
    member = permission_message(
        "/dev/cuas-gps", user="cuas", group="dialout", mode="crw-------", member=True, console=""
    )
    assert "is in group dialout but the group may not read and write it" in member


def test_permission_message_spots_the_pi_serial_console(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("coherent_pool=1M 8250.nr_uarts=1 console=serial0,115200 console=tty1 root=PARTUUID=x")
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "ttyS0").touch()
    (dev / "serial0").symlink_to(dev / "ttyS0")
    token = console_conflict(str(dev / "serial0"), cmdline=cmdline, dev=dev)
    assert token == "console=serial0,115200"
    assert console_conflict(str(dev / "ttyS0"), cmdline=cmdline, dev=dev) == token  # the target too
    assert console_conflict("/dev/ttyUSB0", cmdline=cmdline, dev=dev) == ""
    msg = permission_message(
        "/dev/serial0", user="cuas", group="tty", mode="crw--w----", member=False, console=token
    )
    assert "serial console" in msg and "/boot/firmware/cmdline.txt" in msg
    assert "do_serial_cons 1" in msg and "reboot" in msg


@pytest.mark.parametrize(
    ("code", "cls", "needle"),
    [
        (errno.ENOENT, PortMissing, "does not exist"),
        (errno.ENODEV, PortMissing, "does not exist"),
        (errno.ENXIO, PortMissing, "does not exist"),
        (errno.EACCES, PortPermissionDenied, "permission denied"),
        (errno.EPERM, PortPermissionDenied, "permission denied"),
        (errno.EBUSY, PortBusy, "is busy"),
        (errno.EAGAIN, PortBusy, "is busy"),
        (errno.ENOTTY, PortNotATty, "not a serial device"),
        (errno.EIO, PortError, "cannot open serial port"),
    ],
)
def test_classification_by_errno(code: int, cls: type[PortError], needle: str) -> None:
    """pyserial raises SerialException(errno, "could not open port ...") for every open failure."""
    raw = serial.SerialException(code, f"could not open port /dev/cuas-x: [Errno {code}] {os.strerror(code)}")
    exc = port_error("/dev/cuas-x", raw)
    assert type(exc) is cls and exc.errno == code and needle in str(exc)
    assert isinstance(exc, serial.SerialException) and isinstance(exc, OSError)  # the back-off catches it
    wrapped = OSError("outer")
    wrapped.__cause__ = raw
    assert type(port_error("/dev/cuas-x", wrapped)) is cls


def test_missing_message_lists_by_id_names(tmp_path: Path) -> None:
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (tmp_path / "ttyUSB0").touch()
    (by_id / "usb-Silicon_Labs_CP2102_0001-if00-port0").symlink_to(tmp_path / "ttyUSB0")
    names = by_id_names(by_id)
    assert names == [f"{by_id}/usb-Silicon_Labs_CP2102_0001-if00-port0 -> ttyUSB0"]
    msg = missing_message("/dev/cuas-gps", names)
    assert "/dev/cuas-gps does not exist" in msg and "usb-Silicon_Labs_CP2102" in msg and "dmesg" in msg
    assert "present in /dev/serial/by-id: none" in missing_message("/dev/cuas-gps", [])
    assert "do_serial_hw 0" in missing_message("/dev/serial0", [])
    assert by_id_names(tmp_path / "absent") == []


def test_real_missing_and_not_a_tty(tmp_path: Path) -> None:
    with pytest.raises(PortMissing, match="does not exist"):
        SerialTransport(str(tmp_path / "cuas-gps"), 9600).open()
    plain = tmp_path / "not-a-port"
    plain.write_bytes(b"")
    with pytest.raises(PortNotATty, match="not a serial device"):
        SerialTransport(str(plain), 9600).open()


def test_read_errors_become_disconnected() -> None:
    exc = read_error("/dev/cuas-gps", serial.SerialException("read failed: [Errno 5] Input/output error"))
    assert isinstance(exc, PortDisconnected) and "lost serial port /dev/cuas-gps" in str(exc)
    assert read_error("/dev/x", exc) is exc
    assert "busy" in busy_message("/dev/x", []) and "fuser" in busy_message("/dev/x", [])


# --- wrong baud rate ------------------------------------------------------------------------------


def test_wrong_baud_degrades_with_a_hint_and_recovers(tmp_path: Path) -> None:
    """Random bytes on a real pty (what a UART at the wrong speed delivers) turn health DEGRADED with
    the baud-rate hint; valid sentences bring it back to OK."""
    pty = PtyPort()
    link = tmp_path / "cuas-gps"
    link.symlink_to(pty.path)
    driver = NmeaDriver.from_port("gps", str(link), CLOCK, baudrate=9600)
    driver.baud_watch = BaudWatch(window_s=0.3, min_bytes=64)
    rng = random.Random(8)
    driver.open()
    try:

        def garbage_seen() -> bool:
            pty.write(bytes(rng.getrandbits(8) for _ in range(64)), max_wait_s=0.05)
            driver.read()
            return driver.state == SensorState.DEGRADED

        wait_until(garbage_seen, what="the wrong-baud heuristic")
        health = driver.health()
        assert health.state == SensorState.DEGRADED
        assert "receiving bytes but no valid frames: check the baud rate (configured 9600)" in health.detail
        i = 0

        def valid_seen() -> bool:
            nonlocal i
            pty.write(b"\r\n" + nmea_chunk(i), max_wait_s=0.05)
            i += 1
            driver.read()
            return driver.state == SensorState.OK

        wait_until(valid_seen, what="recovery on valid sentences")
        assert driver.detail == ""
    finally:
        driver.close()
        pty.close()


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_baud_watch_flags_garbage_for_every_parser(kind: Kind) -> None:
    """The heuristic is generic: each parser's counters show garbage as garbage (fake clock)."""
    now = [0.0]
    driver = kind.make("dut", "/dev/null")
    driver.baud_watch = BaudWatch(window_s=1.0, min_bytes=64, monotonic=lambda: now[0])
    driver.state = SensorState.OK
    rng = np.random.default_rng(8)
    for _ in range(40):
        noise = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
        if kind.name == "remoteid":  # a wrong baud still yields line ends now and then
            noise = noise.replace(b"\n", b"").replace(b"\x0b", b"\n")
        records = driver.parser.feed(noise)
        driver._watch_baud(len(noise), len(records))
        now[0] += 0.1
    assert driver.state == SensorState.DEGRADED, driver.parser.counters
    assert "check the baud rate" in driver.detail
    # A sensor with no targets but a healthy link (valid records) is never flagged.
    quiet = kind.make("quiet", "/dev/null")
    quiet.baud_watch = BaudWatch(window_s=1.0, min_bytes=1, monotonic=lambda: now[0])
    quiet.state = SensorState.OK
    for i in range(40):
        data = kind.chunk(i)
        quiet._watch_baud(len(data), len(quiet.parser.feed(data)))
        now[0] += 0.1
    assert quiet.state == SensorState.OK
