"""Test doubles shared by the driver tests (one of each, not one per test file)."""

from __future__ import annotations

import time
from collections.abc import Callable


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


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Wait on a condition, not a clock: the machines that run CI are shared and slow at times."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout} s")
        time.sleep(0.02)
