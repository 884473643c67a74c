"""A pseudo-terminal standing in for a serial port: the simulator writes the master side, the real
driver opens the slave path through pyserial exactly as it would open /dev/ttyACM1 on the Pi."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import time
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

    def write(self, data: bytes, max_wait_s: float = 0.25) -> None:
        """Write, waiting up to `max_wait_s` for a slow reader; what it still has not drained by
        then is dropped and counted (a UART with nobody listening loses bytes the same way).

        The wait matters because the simulator writes a whole block at once where a real device
        trickles it out at the line rate: the pty's small buffer must not turn a burst into loss.
        """
        view = memoryview(data)
        deadline = time.monotonic() + max_wait_s
        while view:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([], [self.master], [], remaining)[1]:
                    self.bytes_dropped += len(view)
                    return
                continue
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
