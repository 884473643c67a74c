"""The driver interface: a sans-IO parser inside, a transport outside.

A parser (drivers/parsing.py) is fed bytes and returns records; a transport (drivers/transport.py)
moves bytes. A driver owns one of each and turns parser records into measurements in the sensor's
own frame. Drivers do no supervision of their own: `cuas_node.drivers.supervisor` runs every
driver, catches whatever it raises and reopens it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from cuas_node.drivers.parsing import BaudWatch, Parser
from cuas_node.drivers.transport import Transport
from cuas_node.kernel.clock import Clock
from cuas_node.kernel.measurement import AnyMeasurement, SensorState, saw_something


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
    age_s: float | None = None
    """Seconds since that sign of life on the monotonic clock (the wall clock may step while the
    node runs: judged by `last_seen`, a sensor dead before a step back looked alive until the
    clock caught up). None: judge by `last_seen`."""


def age_since(clock: Clock, mono: float | None) -> float | None:
    """`SensorHealth.age_s` of a sign of life seen at `mono` on the clock's monotonic time."""
    return None if mono is None else clock.monotonic() - mono


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
        self.last_seen_mono: float | None = None  # the same on the monotonic clock
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
        self.measurement_count += sum(map(saw_something, out))  # health's rates count things seen
        if records:  # a valid record is a sign of life, with or without a measurement in it
            self.last_seen, self.last_seen_mono = t_capture, t_receive
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
            age_s=age_since(self.clock, self.last_seen_mono),
        )
