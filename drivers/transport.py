"""Transports: what moves a sensor's bytes (a serial port, a pty standing in for one, a replay).

Kept apart from the parsers (drivers/parsing.py) so that protocol code never imports pyserial.
"""

from __future__ import annotations

import os
from typing import Protocol

import serial

from cuas_node.drivers.port_errors import port_error, read_error


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
        sensor's bytes; failures become `port_errors.PortError`s whose message says what to do."""
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
