"""What a replay puts in place of the live world: a virtual clock, and transports and FPV bus
objects that answer a driver from the recording instead of from a device.

The FPV scanner has no byte stream: its driver tunes, waits and reads an ADC. Replay gives it a
`ReplayAdc` that answers each SPI transaction with the recorded reply and a clock that follows the
recorded transaction times (its settle waits return at once), so the very same sweep and
detection code runs on the recorded RSSI values.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence


class ReplayClock:
    """The virtual clock of a replay: set to each packet's time; sleeping never waits."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.t = t0

    def set(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t - self.t0

    def sleep(self, seconds: float) -> None:
        pass


class ReplayTransport:
    """A `Transport` that hands the driver one recorded read at a time, exactly as it arrived."""

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self._open = False

    def feed(self, data: bytes) -> None:
        self.chunks.append(data)

    def open(self) -> None:
        self._open = True

    def read(self, max_bytes: int = 65536) -> bytes:
        return self.chunks.popleft() if self.chunks else b""

    def write(self, data: bytes) -> None:
        pass  # host → device bytes (radar CLI) are in the recording but nothing answers them

    def close(self) -> None:
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open


class ReplayExhausted(Exception):
    """The recording has no more SPI transactions for this sensor."""


class ReplayAdc:
    """An `AdcSpi` answering each transaction from the recording, in order, and moving its driver's
    clock to the transaction's recorded time (so capture times are the recorded ones)."""

    def __init__(self, transactions: Sequence[tuple[int, bytes, bytes]], clock: ReplayClock) -> None:
        self.transactions = list(transactions)
        self.clock = clock
        self.position = 0
        self.mismatches = 0

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def transfer(self, out: bytes) -> bytes:
        if self.position >= len(self.transactions):
            raise ReplayExhausted
        ts_us, sent, reply = self.transactions[self.position]
        self.position += 1
        if bytes(out) != sent:
            self.mismatches += 1  # the replayed config reads another channel than the recorded one
        self.clock.set(ts_us / 1e6)
        return reply


class ReplayPins:
    """The RX5808 lines during replay: tuning goes nowhere (the recorded replies already carry it)."""

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def set_data(self, level: bool) -> None:
        pass

    def set_clock(self, level: bool) -> None:
        pass

    def set_select(self, level: bool) -> None:
        pass
