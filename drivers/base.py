"""The driver interface: a sans-IO parser inside, a transport outside.

A parser is fed bytes and returns records; it never touches a port, so it is tested on recorded
bytes and fuzzed. A transport moves bytes (serial port, pty, replay file). A driver owns one of
each and turns parser records into measurements in the sensor's own frame.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import serial

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
        self._serial = serial.Serial(self.port, self.baudrate, timeout=self.timeout_s)

    def read(self, max_bytes: int = 65536) -> bytes:
        if self._serial is None:
            raise serial.SerialException(f"{self.port} is not open")
        waiting = self._serial.in_waiting
        return bytes(self._serial.read(max(1, min(max_bytes, waiting))))

    def write(self, data: bytes) -> None:
        if self._serial is None:
            raise serial.SerialException(f"{self.port} is not open")
        self._serial.write(data)

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

    def open(self) -> None:
        self.transport.open()
        self.state = SensorState.OK
        self.detail = ""

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
        for record in self.parser.feed(data):
            out.extend(self.to_measurements(record, t_capture, t_receive))
        if out:
            self.measurement_count += len(out)
            self.last_seen = t_capture
        return out

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
