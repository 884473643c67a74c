"""Test doubles shared by the driver tests (one of each, not one per test file)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class ChunkTransport:
    """A transport that hands out pre-recorded chunks, one per read, and records what is written:
    the bytes of a real capture reach a driver exactly as reads from a port would."""

    def __init__(self, chunks: list[bytes], port: str = "/dev/ttyFAKE") -> None:
        self.chunks = list(chunks)
        self.written: list[bytes] = []
        self.port = port
        self.opened = False

    @classmethod
    def split(cls, data: bytes, size: int) -> ChunkTransport:
        return cls([data[i : i + size] for i in range(0, len(data), size)])

    def open(self) -> None:
        self.opened = True

    def read(self, max_bytes: int = 4096) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.opened = False

    @property
    def is_open(self) -> bool:
        return self.opened


class StillClock:
    """A clock that never moves (drivers fed frames by hand): `now` and `monotonic` fixed."""

    def __init__(self, now: float = 1000.0, monotonic: float = 5.0) -> None:
        self._now, self._monotonic = now, monotonic

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def sleep(self, seconds: float) -> None: ...


def wait_until(predicate: Callable[[], T], timeout: float = 20.0, what: str = "condition") -> T:
    """Wait on a condition, not a clock: the machines that run CI are shared and slow at times.

    Returns the predicate's first truthy value, so a test can wait for what it then inspects."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout} s")
        time.sleep(0.02)
    return value


def wait_for_records(
    caplog: Any, text: str, count: int = 1, timeout: float = 20.0
) -> list[logging.LogRecord]:
    """The records captured by `caplog` (pytest's fixture) whose message contains `text`, once there
    are at least `count`. A line logged by another thread (the publisher's outbox or connector)
    may come after the state change a test waited for: wait for the record itself, then assert."""

    def found() -> list[logging.LogRecord]:
        matching = [r for r in list(caplog.records) if text in r.getMessage()]
        return matching if len(matching) >= count else []

    return wait_until(found, timeout, f"{count} log record(s) containing {text!r}")
