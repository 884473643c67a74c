"""The pcapng file format of a recording: the blocks cuas-node writes, and reading them back.

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

This module is pure bytes (no clock, no threads, no drivers); `cuas_node.drivers.record` writes files with it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


# -- writing ------------------------------------------------------------------------------------


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
