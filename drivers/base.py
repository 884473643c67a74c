"""The driver interface: a sans-IO parser inside, a transport outside.

A parser is fed bytes and returns records; it never touches a port, so it is tested on recorded
bytes and fuzzed. A transport moves bytes (serial port, pty, replay file). A driver owns one of
each and turns parser records into measurements in the sensor's own frame.
"""

from __future__ import annotations

import abc
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import serial

from drivers.port_errors import port_error, read_error
from node.clock import Clock
from node.measurement import AnyMeasurement, SensorState

R_co = TypeVar("R_co", covariant=True)


class ParseError(Exception):
    """The only exception a parser may raise; drivers count it and carry on."""


class Parser(Protocol[R_co]):
    def feed(self, data: bytes) -> Sequence[R_co]:
        """Consume `data` and return every record completed by it (possibly none)."""
        ...

    @property
    def counters(self) -> dict[str, int]:
        """Monotonic counts for health: records, resyncs, dropped bytes, checksum errors, ..."""
        ...


class Transport(Protocol):
    def open(self) -> None: ...

    def read(self, max_bytes: int = 4096) -> bytes:
        """Return what arrived, or b"" after the transport's read timeout."""
        ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    @property
    def is_open(self) -> bool: ...


class SerialTransport:
    """A serial port (or a pty standing in for one) through pyserial, exactly as on the Pi."""

    def __init__(self, port: str, baudrate: int, timeout_s: float = 0.05) -> None:
        self.port = port
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self._serial: serial.Serial | None = None

    def open(self) -> None:
        """Open exclusively (POSIX flock) so a second reader fails instead of silently splitting the
        sensor's bytes; failures become `drivers.port_errors.PortError`s whose message says what to do."""
        try:
            excl = True if os.name == "posix" else None
            self._serial = serial.Serial(self.port, self.baudrate, timeout=self.timeout_s, exclusive=excl)
        except (serial.SerialException, OSError) as exc:
            self._serial = None
            raise port_error(self.port, exc) from exc

    def read(self, max_bytes: int = 65536) -> bytes:
        if self._serial is None:
            raise serial.SerialException(f"{self.port} is not open")
        try:
            waiting = self._serial.in_waiting
            return bytes(self._serial.read(max(1, min(max_bytes, waiting))))
        except (serial.SerialException, OSError) as exc:
            raise read_error(self.port, exc) from exc

    def write(self, data: bytes) -> None:
        if self._serial is None:
            raise serial.SerialException(f"{self.port} is not open")
        try:
            self._serial.write(data)
        except (serial.SerialException, OSError) as exc:
            raise read_error(self.port, exc) from exc

    def close(self) -> None:
        if self._serial is not None:
            self._serial.close()
            self._serial = None

    @property
    def is_open(self) -> bool:
        return self._serial is not None and self._serial.is_open


@dataclass
class SensorHealth:
    """A snapshot of one sensor for the `health` topic."""

    sensor_id: str
    kind: str
    state: SensorState
    measurements: int
    last_seen: float | None
    counters: dict[str, int] = field(default_factory=dict)
    detail: str = ""


class SensorDriver(Protocol):
    """What the runtime needs of any sensor driver, byte-stream or not (an SPI scanner that tunes,
    waits and samples has no parser, yet is run, supervised and reported on the same way)."""

    sensor_id: str
    kind: str
    state: SensorState
    detail: str

    def open(self) -> None: ...

    def read(self) -> list[AnyMeasurement]:
        """New measurements; blocks at most about 0.1 s so the loop can notice a stop request."""
        ...

    def close(self) -> None: ...

    def health(self) -> SensorHealth: ...


RecordT = TypeVar("RecordT")

VALID_RECORD_COUNTERS = ("sentences", "frames", "epochs", "records", "messages", "packets")
"""Parser counters that grow only on well-formed input (a GPS without a fix still makes sentences)."""
GARBAGE_COUNTERS = (
    "dropped_bytes", "checksum_errors", "malformed", "overlong", "crc_errors", "header_crc_errors",
    "unsupported", "noise_lines",
)  # fmt: skip
"""Parser counters that grow on bytes that are not the protocol: line noise, or a wrong baud rate."""


class BaudWatch:
    """The wrong-baud heuristic, the same for every byte-stream sensor.

    At a wrong baud rate a UART still delivers bytes, just not the protocol: the parser counts them
    as dropped or malformed and never completes a record. When for `window_s` of wall time at
    least `min_bytes` arrived, no record was completed, no valid-record counter grew and a garbage
    counter did, the sensor is DEGRADED with a hint to check the baud rate. Wall time, because bytes
    arrive in hardware time (the simulator's clock stands still before a scenario starts).
    """

    def __init__(
        self, window_s: float = 5.0, min_bytes: int = 64, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self.min_bytes = min_bytes
        self.monotonic = monotonic
        self.flagged = False
        self._since: float | None = None
        self._bytes = 0
        self._valid = 0
        self._garbage = 0

    def reset(self) -> None:
        self.flagged = False
        self._since = None
        self._bytes = 0

    def update(self, n_bytes: int, n_records: int, counters: dict[str, int]) -> bool | None:
        """Note one read; True when the sensor just turned to garbage, False when it just recovered."""
        valid = sum(counters.get(k, 0) for k in VALID_RECORD_COUNTERS)
        garbage = sum(counters.get(k, 0) for k in GARBAGE_COUNTERS)
        progress = n_records > 0 or valid > self._valid
        self._valid = valid
        now = self.monotonic()
        if progress:
            was = self.flagged
            self.reset()
            self._garbage = garbage
            return False if was else None
        if self._since is None:
            self._since, self._bytes, self._garbage = now, 0, garbage
        self._bytes += n_bytes
        if (
            not self.flagged
            and now - self._since >= self.window_s
            and self._bytes >= self.min_bytes
            and garbage > self._garbage
        ):
            self.flagged = True
            return True
        return None


class Driver(abc.ABC, Generic[RecordT]):
    """One sensor: reads its transport, feeds its parser, yields measurements.

    Subclasses implement `to_measurements`; the read loop, the counters and the health snapshot are
    the same for every sensor so that health means one thing across the node.
    """

    kind: str = ""

    def __init__(self, sensor_id: str, transport: Transport, parser: Parser[RecordT], clock: Clock) -> None:
        self.sensor_id = sensor_id
        self.transport = transport
        self.parser = parser
        self.clock = clock
        self.measurement_count = 0
        self.last_seen: float | None = None
        self.state = SensorState.DOWN
        self.detail = "not opened"
        self.baud_watch = BaudWatch()

    def open(self) -> None:
        self.transport.open()
        self.state = SensorState.OK
        self.detail = ""
        self.baud_watch.reset()

    def close(self) -> None:
        self.transport.close()
        self.state = SensorState.DOWN
        self.detail = "closed"

    def read(self) -> list[AnyMeasurement]:
        """Read what the transport has (blocking up to its timeout) and return new measurements."""
        data = self.transport.read()
        if not data:
            return []
        t_receive = self.clock.monotonic()
        t_capture = self.clock.now()
        out: list[AnyMeasurement] = []
        records = self.parser.feed(data)
        for record in records:
            out.extend(self.to_measurements(record, t_capture, t_receive))
        if out:
            self.measurement_count += len(out)
            self.last_seen = t_capture
        self._watch_baud(len(data), len(records))
        return out

    def _watch_baud(self, n_bytes: int, n_records: int) -> None:
        """Degrade (and recover) on the wrong-baud heuristic of `BaudWatch`."""
        change = self.baud_watch.update(n_bytes, n_records, self.parser.counters)
        if change is True and self.state == SensorState.OK:
            baud = getattr(self.transport, "baudrate", None)
            self.state = SensorState.DEGRADED
            self.detail = (
                "receiving bytes but no valid frames: check the baud rate"
                + (f" (configured {baud})" if baud is not None else "")
                + ", the wiring (TX/RX, the radar's data vs CLI port) and the sensor's output protocol"
            )
        elif change is False and self.state == SensorState.DEGRADED and self.detail.startswith("receiving"):
            self.state = SensorState.OK
            self.detail = ""

    @abc.abstractmethod
    def to_measurements(self, record: RecordT, t_capture: float, t_receive: float) -> list[AnyMeasurement]:
        """Turn one parser record into measurements in the sensor's own frame."""

    def health(self) -> SensorHealth:
        return SensorHealth(
            sensor_id=self.sensor_id,
            kind=self.kind,
            state=self.state,
            measurements=self.measurement_count,
            last_seen=self.last_seen,
            counters=dict(self.parser.counters),
            detail=self.detail,
        )
