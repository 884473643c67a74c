"""A pseudo-terminal standing in for a serial port: the simulator writes the master side, the real
driver opens the slave path through pyserial exactly as it would open /dev/ttyACM1 on the Pi."""

from __future__ import annotations

import contextlib
import errno
import os
import tty


class PtyPort:
    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        # Raw mode: no echo, no CR/LF translation, so bytes arrive exactly as written.
        tty.setraw(self._slave)
        tty.setraw(self.master)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
        self.bytes_written = 0
        self.bytes_dropped = 0

    def write(self, data: bytes) -> None:
        """Write without blocking; what the reader has not drained is dropped and counted (a UART
        with nobody listening loses bytes the same way)."""
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                self.bytes_dropped += len(view)
                return
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EBADF):
                    self.bytes_dropped += len(view)
                    return
                raise
            self.bytes_written += n
            view = view[n:]

    def read(self, max_bytes: int = 4096) -> bytes:
        """What the node wrote to the device (e.g. CLI commands to a radar)."""
        try:
            return os.read(self.master, max_bytes)
        except (BlockingIOError, OSError):
            return b""

    def close(self) -> None:
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
