"""The sans-IO parser contract: what every protocol parser is, raises and counts.

A parser is fed bytes and returns the records they complete; it never touches a port, a thread or
a clock, so it is tested on recorded bytes and fuzzed. This module is stdlib-only on purpose:
importing a protocol module must never drag in pyserial, paho or threading.

The counters are the one definition of "well-formed input" in the node: the wrong-baud watch
(`BaudWatch`, used by every byte-stream driver) and `doctor` both read them through
`valid_records` and `garbage`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeVar

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


VALID_RECORD_COUNTERS = ("sentences", "frames", "epochs", "records", "messages", "packets")
"""Parser counters that grow only on well-formed input (a GPS without a fix still makes sentences)."""
GARBAGE_COUNTERS = (
    "dropped_bytes", "checksum_errors", "malformed", "overlong", "crc_errors", "header_crc_errors",
    "unsupported", "noise_lines",
)  # fmt: skip
"""Parser counters that grow on bytes that are not the protocol: line noise, or a wrong baud rate."""
UNUSABLE_RECORD_COUNTERS = ("unsupported_version",)
"""Parser counters of well-formed records that the node cannot use (a radar firmware version it does
not decode): proof that the baud rate and the wiring are right, though not valid records. The
driver says what is wrong instead of `BaudWatch`."""


def valid_records(counters: Mapping[str, int]) -> int:
    """How many well-formed records a parser's counters show: the node's one proof that the wiring
    and the baud rate are right (a line counter is no proof: noise splits into lines too)."""
    return sum(counters.get(k, 0) for k in VALID_RECORD_COUNTERS)


def garbage(counters: Mapping[str, int]) -> int:
    """How much input a parser's counters show as not the protocol (noise, a wrong baud rate)."""
    return sum(counters.get(k, 0) for k in GARBAGE_COUNTERS)


class BaudWatch:
    """The wrong-baud heuristic, the same for every byte-stream sensor.

    At a wrong baud rate a UART still delivers bytes, just not the protocol: the parser counts them
    as dropped or malformed and never completes a record. When for `window_s` of wall time at
    least `min_bytes` arrived, no record was completed, no valid-record counter grew and a garbage
    counter did, the sensor is DEGRADED with a hint to check the baud rate. Wall time, because bytes
    arrive in hardware time (the simulator's clock stands still before a scenario starts). Records
    the node cannot use (`UNUSABLE_RECORD_COUNTERS`) count as progress here: they prove the link.
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
        valid = valid_records(counters) + sum(counters.get(k, 0) for k in UNUSABLE_RECORD_COUNTERS)
        bad = garbage(counters)
        progress = n_records > 0 or valid > self._valid
        self._valid = valid
        now = self.monotonic()
        if progress:
            was = self.flagged
            self.reset()
            self._garbage = bad
            return False if was else None
        if self._since is None:
            self._since, self._bytes, self._garbage = now, 0, bad
        self._bytes += n_bytes
        if (
            not self.flagged
            and now - self._since >= self.window_s
            and self._bytes >= self.min_bytes
            and bad > self._garbage
        ):
            self.flagged = True
            return True
        return None
