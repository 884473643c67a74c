"""Recording every sensor's raw bytes into pcapng, and reading them back.

Why pcapng and not a home-made format: a recording must outlive this code base. pcapng opens in
Wireshark (bytes, timestamps, direction, per-sensor interfaces), `editcap` cuts it by time or
packet number, `capinfos` summarises it, and it is a documented, versioned format.

Layout of a recording (see docs/recording.md):

- the Section Header Block carries the node's config and the calibration files it references as
  JSON in `opt_comment` options (prefix `cuas-node-recording/1`). A comment on the section header
  survives `editcap` cuts, so a cut file still replays;
- one Interface Description Block per sensor port (a TI radar has two: `data` and `cli`), with a
  LINKTYPE_USER0..15 link type per sensor kind, `if_name` = `<sensor id>/<role>` and
  `if_description` = `cuas-node sensor=<id> kind=<kind> role=<role> device=<path>`;
- one Enhanced Packet Block per transport read (device → host, `epb_flags` inbound) or write
  (host → device, e.g. radar CLI commands, `epb_flags` outbound), stamped with the node clock's
  time when the bytes arrived (microsecond resolution, the pcapng default);
- the FPV scanner has no byte stream: each SPI transaction is one packet `0x01 | MOSI | MISO`
  (inbound) and each frame clocked into the RX5808 is one packet `0x02 | bit count | bits packed
  MSB first` (outbound), so replay can answer the driver's ADC reads from the file.

Taps wrap the transports (and the FPV bus objects) of drivers that are already built, so no
driver knows it is being recorded and the recorded bytes are exactly what the parser was fed.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import struct
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from drivers.base import Transport
from node.clock import Clock

log = logging.getLogger("cuas.record")

BT_SHB = 0x0A0D0D0A
BT_IDB = 0x00000001
BT_EPB = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D

OPT_END = 0
OPT_COMMENT = 1
OPT_SHB_USERAPPL = 4
OPT_IF_NAME = 2
OPT_IF_DESCRIPTION = 3
OPT_IF_TSRESOL = 9
OPT_EPB_FLAGS = 2

EPB_INBOUND = 0b01
EPB_OUTBOUND = 0b10

LINKTYPE_USER0 = 147
LINKTYPE_USER15 = 162
# One user link type per sensor kind, so a Wireshark user can map a dissector per kind
# (Edit → Preferences → Protocols → DLT_USER; e.g. USER0 → nmea0183).
KIND_LINKTYPES: dict[str, int] = {
    "nmea": LINKTYPE_USER0,
    "ti-mmwave": LINKTYPE_USER0 + 1,
    "ti-mmwave-cli": LINKTYPE_USER0 + 2,
    "remoteid": LINKTYPE_USER0 + 3,
    "fpv-rx5808": LINKTYPE_USER0 + 4,
    "acoustic-array": LINKTYPE_USER0 + 5,
}
LINKTYPE_OTHER = LINKTYPE_USER15

HEADER_PREFIX = "cuas-node-recording/1"
_COMMENT_CHUNK = 60000  # an option's length is 16 bits; long headers are split over several comments
SNAPLEN = 0  # no limit
FPV_SPI = 0x01
FPV_PINS = 0x02


class RecordingError(ValueError):
    """A file that is not a readable pcapng recording (or not one made by cuas-node)."""


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * _pad4(len(value))


def _options(opts: Iterable[tuple[int, bytes]]) -> bytes:
    body = b"".join(_option(code, value) for code, value in opts)
    return body + struct.pack("<HH", OPT_END, 0) if body else b""


def _block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def section_header(comments: Iterable[str], application: str = "cuas-node") -> bytes:
    opts = [(OPT_COMMENT, c.encode()) for c in comments]
    opts.append((OPT_SHB_USERAPPL, application.encode()))
    body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + _options(opts)
    return _block(BT_SHB, body)


def interface_description(linktype: int, name: str, description: str) -> bytes:
    body = struct.pack("<HHI", linktype, 0, SNAPLEN)
    body += _options([(OPT_IF_NAME, name.encode()), (OPT_IF_DESCRIPTION, description.encode())])
    return _block(BT_IDB, body)


def enhanced_packet(interface: int, ts_us: int, data: bytes, outbound: bool = False) -> bytes:
    flags = EPB_OUTBOUND if outbound else EPB_INBOUND
    body = struct.pack("<IIIII", interface, ts_us >> 32, ts_us & 0xFFFFFFFF, len(data), len(data))
    body += data + b"\0" * _pad4(len(data))
    body += _options([(OPT_EPB_FLAGS, struct.pack("<I", flags))])
    return _block(BT_EPB, body)


def header_comments(header: Mapping[str, Any]) -> list[str]:
    """The recording header (config, calibration files) as one or more SHB comments."""
    text = json.dumps(header, separators=(",", ":"), sort_keys=True)
    chunks = [text[i : i + _COMMENT_CHUNK] for i in range(0, len(text), _COMMENT_CHUNK)] or [""]
    return [f"{HEADER_PREFIX} {i + 1}/{len(chunks)}\n{c}" for i, c in enumerate(chunks)]


@dataclass(frozen=True)
class Channel:
    """One recorded port: a sensor's byte stream (role `data`), a radar's CLI (`cli`), an FPV bus."""

    sensor_id: str
    kind: str
    role: str = "data"
    device: str = ""

    @property
    def name(self) -> str:
        return f"{self.sensor_id}/{self.role}"

    @property
    def linktype(self) -> int:
        key = f"{self.kind}-cli" if self.role == "cli" else self.kind
        return KIND_LINKTYPES.get(key, LINKTYPE_OTHER)

    @property
    def description(self) -> str:
        text = f"cuas-node sensor={self.sensor_id} kind={self.kind} role={self.role}"
        return text + (f" device={self.device}" if self.device else "")

    @classmethod
    def parse(cls, name: str, description: str) -> Channel | None:
        """Back from an IDB; None for an interface that cuas-node did not write."""
        if not description.startswith("cuas-node "):
            return None
        fields = dict(part.split("=", 1) for part in description.split()[1:] if "=" in part)
        if "sensor" not in fields or "kind" not in fields:
            return None
        return cls(fields["sensor"], fields["kind"], fields.get("role", "data"), fields.get("device", ""))


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


# -- config header ------------------------------------------------------------------------------


CALIBRATION_FIELDS = ("static_map_file", "cfg_file")


def recording_header(config: Any) -> dict[str, Any]:
    """The node's config (as JSON) and the content of every calibration file it references, so
    replay can rebuild the same drivers and fusion on another machine. Secrets are never in the
    config itself (only paths to them), and the files embedded here are not secret."""
    files: dict[str, str] = {}
    for sensor in config.sensors:
        for name in CALIBRATION_FIELDS:
            path = getattr(sensor, name, None)
            if path is None:
                continue
            try:
                files[str(path)] = base64.b64encode(Path(path).read_bytes()).decode()
            except OSError as exc:
                log.warning("recording: cannot embed %s (%s): %s", name, path, exc)
    from node import __version__

    return {
        "format": HEADER_PREFIX,
        "software_version": __version__,
        "config": config.model_dump(mode="json"),
        "files": files,
    }


# -- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Packet:
    ts_us: int
    interface: int
    data: bytes
    outbound: bool = False

    @property
    def t(self) -> float:
        return self.ts_us / 1e6


@dataclass
class Recording:
    header: dict[str, Any] | None
    interfaces: list[tuple[int, str, str]]
    """(link type, if_name, if_description) per interface id."""
    packets: list[Packet] = field(default_factory=list)

    def channel(self, interface: int) -> Channel | None:
        _, name, description = self.interfaces[interface]
        return Channel.parse(name, description)


def _parse_options(data: bytes, endian: str) -> Iterator[tuple[int, bytes]]:
    pos = 0
    while pos + 4 <= len(data):
        code, length = struct.unpack_from(endian + "HH", data, pos)
        pos += 4
        if code == OPT_END:
            return
        yield code, data[pos : pos + length]
        pos += length + _pad4(length)


def _tsresol_factor(value: bytes) -> float:
    """Ticks per second from `if_tsresol` (power of 10, or of 2 with the top bit set)."""
    if not value:
        return 1e6
    v = value[0]
    return float(2 ** (v & 0x7F)) if v & 0x80 else float(10**v)


def read_recording(path: Path | str) -> Recording:
    """Every block of a pcapng file (several sections, e.g. after `mergecap`, are concatenated);
    interfaces of later sections are numbered after those of earlier ones."""
    raw = Path(path).read_bytes()
    pos = 0
    endian = "<"
    comments: list[str] = []
    interfaces: list[tuple[int, str, str]] = []
    resolutions: list[float] = []
    section_base = 0
    packets: list[Packet] = []
    while pos + 12 <= len(raw):
        (block_type,) = struct.unpack_from("<I", raw, pos)
        if block_type == BT_SHB:
            magic = raw[pos + 8 : pos + 12]
            endian = "<" if magic == struct.pack("<I", BYTE_ORDER_MAGIC) else ">"
            if struct.unpack_from(endian + "I", raw, pos + 8)[0] != BYTE_ORDER_MAGIC:
                raise RecordingError(f"{path}: bad byte-order magic")
            section_base = len(interfaces)
        elif pos == 0:
            raise RecordingError(f"{path}: not a pcapng file")
        (total,) = struct.unpack_from(endian + "I", raw, pos + 4)
        if total < 12 or pos + total > len(raw):
            raise RecordingError(f"{path}: truncated block at offset {pos}")
        body = raw[pos + 8 : pos + total - 4]
        if block_type == BT_SHB:
            for code, value in _parse_options(body[16:], endian):
                if code == OPT_COMMENT:
                    comments.append(value.decode("utf-8", errors="replace"))
        elif block_type == BT_IDB:
            linktype = struct.unpack_from(endian + "H", body, 0)[0]
            name = description = ""
            resolution = 1e6
            for code, value in _parse_options(body[8:], endian):
                if code == OPT_IF_NAME:
                    name = value.decode("utf-8", errors="replace")
                elif code == OPT_IF_DESCRIPTION:
                    description = value.decode("utf-8", errors="replace")
                elif code == OPT_IF_TSRESOL:
                    resolution = _tsresol_factor(value)
            interfaces.append((linktype, name, description))
            resolutions.append(resolution)
        elif block_type == BT_EPB:
            iface, hi, lo, caplen, _ = struct.unpack_from(endian + "IIIII", body, 0)
            index = section_base + iface
            if index >= len(interfaces):
                raise RecordingError(f"{path}: packet on undeclared interface {iface}")
            data = body[20 : 20 + caplen]
            outbound = False
            for code, value in _parse_options(body[20 + caplen + _pad4(caplen) :], endian):
                if code == OPT_EPB_FLAGS and len(value) >= 4:
                    outbound = (struct.unpack(endian + "I", value[:4])[0] & 0b11) == EPB_OUTBOUND
            ticks = (hi << 32) | lo
            resolution = resolutions[index]
            ts_us = ticks if resolution == 1e6 else round(ticks * 1e6 / resolution)
            packets.append(Packet(ts_us, index, bytes(data), outbound))
        pos += total
    return Recording(_header_from_comments(comments), interfaces, packets)


def _header_from_comments(comments: list[str]) -> dict[str, Any] | None:
    parts: dict[int, str] = {}
    count = 0
    for comment in comments:
        if not comment.startswith(HEADER_PREFIX + " "):
            continue
        first, _, text = comment.partition("\n")
        try:
            i, n = (int(x) for x in first[len(HEADER_PREFIX) + 1 :].split("/"))
        except ValueError:
            continue
        if i in parts:
            break  # a second section (merged files) repeats the header: the first one wins
        parts[i] = text
        count = n
    if not parts or len(parts) != count:
        return None
    header: dict[str, Any] = json.loads("".join(parts[i] for i in sorted(parts)))
    return header
