"""Recording every sensor's raw bytes into pcapng: the `Recorder` and the taps that feed it.

Why taps: they wrap the transports (and the FPV bus objects) of drivers that are already built,
so no driver knows it is being recorded and the recorded bytes are exactly what the parser was fed.
The file format itself (blocks, the config header, reading a file back) is in
`cuas_node.drivers.record_pcapng`; its names are re-exported here, where callers have always found them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from cuas_node.drivers.record_pcapng import (
    FPV_PINS,
    FPV_SPI,
    Channel,
    enhanced_packet,
    header_comments,
    interface_description,
    section_header,
)
from cuas_node.drivers.record_pcapng import KIND_LINKTYPES as KIND_LINKTYPES
from cuas_node.drivers.record_pcapng import LINKTYPE_OTHER as LINKTYPE_OTHER
from cuas_node.drivers.record_pcapng import Packet as Packet
from cuas_node.drivers.record_pcapng import Recording as Recording
from cuas_node.drivers.record_pcapng import RecordingError as RecordingError
from cuas_node.drivers.record_pcapng import read_recording as read_recording
from cuas_node.drivers.transport import Transport
from cuas_node.kernel.clock import Clock

log = logging.getLogger(__name__)


def rotated_path(path: Path, index: int) -> Path:
    """`rec.pcapng`, 3 → `rec-00003.pcapng`."""
    return path.with_name(f"{path.stem}-{index:05d}{path.suffix or '.pcapng'}")


class Recorder:
    """Writes packets from any thread into one pcapng file, or a numbered series rotated by size.

    The header blocks (section with the node's config, every interface) start every file, so each
    rotated file replays on its own. Writes are buffered and flushed at most once a second (an
    acoustic array streams ~100 kB/s: a flush per read would wear an SD card and cost CPU); a crash
    loses at most that last second.
    """

    def __init__(
        self,
        path: Path,
        clock: Clock,
        header: Mapping[str, Any] | None = None,
        *,
        rotate_bytes: int = 0,
        keep_files: int = 0,
        flush_interval_s: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.header = dict(header or {})
        self.rotate_bytes = rotate_bytes
        self.keep_files = keep_files
        self.flush_interval_s = flush_interval_s
        self.channels: list[Channel] = []
        self.files: list[Path] = []
        self.packets = 0
        self.bytes_written = 0
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._size = 0
        self._index = 0
        self._last_flush = 0.0
        self._closed = False

    def add_channel(self, channel: Channel) -> int:
        """Register a port; returns its interface id (the same in every rotated file)."""
        with self._lock:
            if channel in self.channels:
                return self.channels.index(channel)
            self.channels.append(channel)
            if self._file is not None:
                self._put(interface_description(channel.linktype, channel.name, channel.description))
            return len(self.channels) - 1

    def _open_next(self) -> None:
        if self._file is not None:
            self._file.close()
        if self.rotate_bytes > 0:
            self._index += 1
            target = rotated_path(self.path, self._index)
        else:
            target = self.path
        target.parent.mkdir(parents=True, exist_ok=True)
        self._file = target.open("wb")
        self.files.append(target)
        self._size = 0
        self._put(section_header(header_comments(self.header)))
        for ch in self.channels:
            self._put(interface_description(ch.linktype, ch.name, ch.description))
        if self.keep_files and len(self.files) > self.keep_files:
            for old in self.files[: -self.keep_files]:
                old.unlink(missing_ok=True)
            self.files = self.files[-self.keep_files :]

    def _put(self, block: bytes) -> None:
        assert self._file is not None
        self._file.write(block)
        self._size += len(block)
        self.bytes_written += len(block)

    def start(self) -> None:
        """Create the (first) file now, so a recording with no traffic still has its header."""
        with self._lock:
            if self._file is None and not self._closed:
                self._open_next()

    def write(self, interface: int, data: bytes, *, outbound: bool = False, t: float | None = None) -> None:
        ts = self.clock.now() if t is None else t
        block = enhanced_packet(interface, round(ts * 1e6), data, outbound)
        with self._lock:
            if self._closed:
                return
            if self._file is None or (
                self.rotate_bytes > 0 and self._size + len(block) > self.rotate_bytes and self.packets
            ):
                self._open_next()
            self._put(block)
            self.packets += 1
            mono = self.clock.monotonic()
            if abs(mono - self._last_flush) >= self.flush_interval_s:
                self._last_flush = mono
                assert self._file is not None
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is None and not self._closed:
                self._open_next()
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None


# -- taps ---------------------------------------------------------------------------------------


class RecordingTransport:
    """A `Transport` that passes everything through and records it: reads inbound, writes outbound."""

    def __init__(self, inner: Transport, recorder: Recorder, interface: int) -> None:
        self.inner = inner
        self.recorder = recorder
        self.interface = interface

    def open(self) -> None:
        self.inner.open()

    def read(self, max_bytes: int = 65536) -> bytes:
        data = self.inner.read(max_bytes)
        if data:
            self.recorder.write(self.interface, data)
        return data

    def write(self, data: bytes) -> None:
        self.recorder.write(self.interface, data, outbound=True)
        self.inner.write(data)

    def close(self) -> None:
        self.inner.close()

    @property
    def is_open(self) -> bool:
        return self.inner.is_open

    def __getattr__(self, name: str) -> Any:
        # Anything else a driver or doctor asks of its transport (port name, baud rate) is the inner one's.
        return getattr(self.inner, name)


class RecordingAdc:
    """An `AdcSpi` tap: each transaction is one packet `0x01 | MOSI | MISO`."""

    def __init__(self, inner: Any, recorder: Recorder, interface: int) -> None:
        self.inner = inner
        self.recorder = recorder
        self.interface = interface

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def transfer(self, out: bytes) -> bytes:
        reply = bytes(self.inner.transfer(out))
        self.recorder.write(self.interface, bytes([FPV_SPI]) + bytes(out) + reply)
        return reply

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def pack_bits(bits: Iterable[bool]) -> bytes:
    bits = list(bits)
    out = bytearray([len(bits) & 0xFF])
    for i in range(0, len(bits), 8):
        chunk = bits[i : i + 8]
        value = 0
        for b in chunk:
            value = (value << 1) | int(b)
        out.append(value << (8 - len(chunk)))
    return bytes(out)


def unpack_bits(data: bytes) -> tuple[bool, ...]:
    if not data:
        return ()
    n = data[0]
    return tuple(bool(data[1 + i // 8] >> (7 - i % 8) & 1) for i in range(n) if 1 + i // 8 < len(data))


class RecordingPins:
    """A `Pins` tap: decodes the RX5808's bit-banged frame (DATA sampled on rising CLOCK while
    SELECT is low) and records one packet per frame, rather than one per pin toggle (75 per tune)."""

    def __init__(self, inner: Any, recorder: Recorder, interface: int) -> None:
        self.inner = inner
        self.recorder = recorder
        self.interface = interface
        self._data = self._clock = False
        self._select = True
        self._bits: list[bool] = []

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def set_data(self, level: bool) -> None:
        self._data = level
        self.inner.set_data(level)

    def set_clock(self, level: bool) -> None:
        if level and not self._clock and not self._select:
            self._bits.append(self._data)
        self._clock = level
        self.inner.set_clock(level)

    def set_select(self, level: bool) -> None:
        if not level and self._select:
            self._bits = []
        elif level and not self._select:
            self.recorder.write(self.interface, bytes([FPV_PINS]) + pack_bits(self._bits), outbound=True)
        self._select = level
        self.inner.set_select(level)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def tap_driver(driver: Any, recorder: Recorder, devices: Mapping[str, str] | None = None) -> Any:
    """Wrap a built driver's transports (or FPV bus objects) so everything they move is recorded.

    `devices` maps a role (`data`, `cli`) to the device path, for the interface description."""
    devices = devices or {}
    sid, kind = driver.sensor_id, driver.kind
    if hasattr(driver, "transport"):
        port = getattr(driver.transport, "port", devices.get("data", ""))
        iface = recorder.add_channel(Channel(sid, kind, "data", str(port or "")))
        driver.transport = RecordingTransport(driver.transport, recorder, iface)
        cli = getattr(driver, "cli", None)
        if cli is not None and hasattr(cli, "transport"):
            cli_port = getattr(cli.transport, "port", devices.get("cli", ""))
            cli_iface = recorder.add_channel(Channel(sid, kind, "cli", str(cli_port or "")))
            # TiCliSetup is a frozen dataclass: replace it rather than mutate it.
            driver.cli = dataclasses.replace(
                cli, transport=RecordingTransport(cli.transport, recorder, cli_iface)
            )
    elif hasattr(driver, "adc") and hasattr(driver, "pins"):
        iface = recorder.add_channel(Channel(sid, kind, "spi", devices.get("spi", "")))
        driver.adc = RecordingAdc(driver.adc, recorder, iface)
        driver.pins = RecordingPins(driver.pins, recorder, iface)
    else:
        log.warning("sensor %s (%s): no transport to record", sid, kind)
    return driver
