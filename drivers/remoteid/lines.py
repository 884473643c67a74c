"""The two serial line formats a Remote ID receiver may speak, as sans-IO parsers.

1. The node's own line protocol (docs/remoteid.md), one received frame per line, carrying the raw
   bytes so that the node decodes every message itself:

       ODID,<carrier>,<mac>,<rssi_dbm>,<hex>      hex = 0D, counter, message or message pack

2. The JSON lines of the drone-mesh-mapper ESP32 firmware, which decodes on the ESP32 and prints a
   summary per frame (`{"mac","rssi","drone_lat","drone_long","drone_altitude","pilot_lat",
   "pilot_long","basic_id"}`, some builds add more). Its fields are turned into the same message
   types (Basic ID, Location, System, Operator ID) so that the driver has one path; such frames
   carry `source="drone-mesh-mapper"` because their values were rounded by the firmware (6
   decimals of a degree, whole metres) and the ID type is not known.

Both split on LF (a CR before it is ignored), bound a line to `MAX_LINE_BYTES`, and count instead
of raising: `lines`, `malformed` (a line of the format that does not parse), `ignored_lines`
(other text: boot banners, heartbeats), `overlong`, `noise_lines` (lines that are not printable
ASCII at all: line noise or a wrong baud rate; counted in `ignored_lines` or `malformed` as well),
plus the payload counters of `FrameDecoder`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from cuas_node.drivers.remoteid.carriers import CARRIERS, ODID_APP_CODE, FrameDecoder, OdidFrame
from cuas_node.drivers.remoteid.messages import BasicId, Location, OdidMessage, OperatorId, System

MAX_LINE_BYTES = 1024
"""The longest valid ODID line is about 520 bytes (a 9-message pack); JSON lines are shorter."""

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")
_TEXT = re.compile(rb"[\t\r\x20-\x7e]*")


class _LineSplitter:
    """Bounded LF framing shared by both formats."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False
        self.counts: dict[str, int] = {
            "lines": 0, "malformed": 0, "ignored_lines": 0, "overlong": 0, "noise_lines": 0,
        }  # fmt: skip

    def split(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        parts = data.split(b"\n")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if self._discarding:
                if not last:
                    self._discarding = False
                continue
            self._buf += part
            if len(self._buf) > MAX_LINE_BYTES:
                self.counts["overlong"] += 1
                self._buf.clear()
                self._discarding = last
                continue
            if not last:
                line = bytes(self._buf).strip()
                self._buf.clear()
                if line:
                    self.counts["lines"] += 1
                    if not _TEXT.fullmatch(line):
                        # Not text at all: line noise or a wrong baud rate (drivers.parsing.BaudWatch).
                        self.counts["noise_lines"] += 1
                    lines.append(line)
        return lines

    def flush(self) -> list[bytes]:
        """End of input: a last line without LF."""
        return self.split(b"\n") if self._buf else []


def parse_odid_line(line: str) -> tuple[str, str | None, float | None, int, bytes]:
    """(carrier, mac, rssi_dbm, counter, payload) of one line; ValueError if it does not parse."""
    fields = line.split(",")
    if len(fields) != 5 or fields[0] != "ODID":
        raise ValueError("not 5 comma-separated fields starting with ODID")
    _, carrier, mac_text, rssi_text, hex_text = fields
    if carrier not in CARRIERS:
        raise ValueError(f"unknown carrier {carrier!r}")
    mac = mac_text.lower() or None
    if mac is not None and not _MAC.fullmatch(mac):
        raise ValueError(f"bad MAC {mac_text!r}")
    rssi = float(rssi_text) if rssi_text else None
    if rssi is not None and not math.isfinite(rssi):
        raise ValueError("RSSI is not a number")
    if not _HEX.fullmatch(hex_text):
        raise ValueError("payload is not hex")
    raw = bytes.fromhex(hex_text)
    if len(raw) < 3 or raw[0] != ODID_APP_CODE:
        raise ValueError("payload does not start with 0D and a counter")
    return carrier, mac, rssi, raw[1], raw[2:]


class _LineParser:
    """What both serial line formats share: bounded line splitting, counters, feed and flush;
    each format only says how a batch of complete lines becomes frames (`_take`)."""

    def __init__(self) -> None:
        self._lines = _LineSplitter()

    @property
    def counters(self) -> dict[str, int]:
        return dict(self._lines.counts)

    def feed(self, data: bytes) -> list[OdidFrame]:
        return self._take(self._lines.split(data))

    def flush(self) -> list[OdidFrame]:
        return self._take(self._lines.flush())

    def _take(self, lines: list[bytes]) -> list[OdidFrame]:
        raise NotImplementedError


class OdidLineParser(_LineParser):
    """`ODID,...` lines → `OdidFrame`s (see the module docstring and docs/remoteid.md)."""

    def __init__(self) -> None:
        super().__init__()
        self._decoder = FrameDecoder(self._lines.counts)

    def _take(self, lines: list[bytes]) -> list[OdidFrame]:
        out: list[OdidFrame] = []
        for raw in lines:
            if not raw.startswith(b"ODID,"):
                self._lines.counts["ignored_lines"] += 1
                continue
            try:
                carrier, mac, rssi, counter, payload = parse_odid_line(raw.decode("ascii"))
            except (ValueError, UnicodeDecodeError):
                self._lines.counts["malformed"] += 1
                continue
            frame = self._decoder.frame(carrier, mac, rssi, counter, payload)
            if frame is not None:
                out.append(frame)
        return out


def _num(obj: dict[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = obj.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def _int(obj: dict[str, Any], key: str, lo: int, hi: int) -> int | None:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi else None


def mesh_mapper_messages(obj: dict[str, Any]) -> list[OdidMessage]:
    """The messages a drone-mesh-mapper JSON object stands for. The firmware prints 0 (and -1000 m)
    for what it has not heard, so those mean "unknown" here, as in ODID itself."""
    out: list[OdidMessage] = []
    basic_id = obj.get("basic_id")
    if isinstance(basic_id, str) and basic_id.strip("\0 "):
        raw = basic_id.encode("ascii", errors="replace")[:20]
        ua_type = _int(obj, "ua_type", 0, 15) or 0
        out.append(BasicId(_int(obj, "id_type", 0, 15), ua_type, raw.ljust(20, b"\0")))
    lat, lon = _num(obj, "drone_lat"), _num(obj, "drone_long")
    if lat is not None and lon is not None and (lat or lon) and abs(lat) <= 90 and abs(lon) <= 180:
        alt = _num(obj, "drone_altitude")
        height = _num(obj, "height_agl", "alt_agl")
        speed = _num(obj, "speed_horizontal", "spd")
        heading = _num(obj, "heading", "hdg")
        out.append(
            Location(
                lat=lat,
                lon=lon,
                alt_geo_m=alt if alt is not None and alt > -1000 else None,
                height_m=height if height is not None and height > -1000 else None,
                speed_h_mps=speed if speed is not None and 0 <= speed < 255 else None,
                direction_deg=heading if heading is not None and 0 <= heading < 360 else None,
            )
        )
    op_lat, op_lon = _num(obj, "pilot_lat"), _num(obj, "pilot_long")
    valid_operator = op_lat is not None and op_lon is not None and (op_lat or op_lon)
    if (
        valid_operator
        and op_lat is not None
        and op_lon is not None
        and abs(op_lat) <= 90
        and abs(op_lon) <= 180
    ):
        out.append(System(operator_lat=op_lat, operator_lon=op_lon))
    operator_id = obj.get("operator_id")
    if isinstance(operator_id, str) and operator_id:
        out.append(OperatorId(0, operator_id[:20]))
    return out


class MeshMapperLineParser(_LineParser):
    """drone-mesh-mapper JSON lines → `OdidFrame`s with `source="drone-mesh-mapper"`.

    Lines that are JSON but not a detection (heartbeats, status) count as `ignored_lines`; a
    detection that yields no message at all (no ID, no position) counts as `empty_detections`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lines.counts.update(frames=0, messages=0, empty_detections=0)

    def _take(self, lines: list[bytes]) -> list[OdidFrame]:
        out: list[OdidFrame] = []
        counts = self._lines.counts
        for raw in lines:
            if not raw.startswith(b"{"):
                counts["ignored_lines"] += 1
                continue
            try:
                obj = json.loads(raw)
            except (ValueError, RecursionError):  # RecursionError: ~1000 nested brackets fit in a line
                counts["malformed"] += 1
                continue
            mac = obj.get("mac") if isinstance(obj, dict) else None
            if not isinstance(mac, str) or not _MAC.fullmatch(mac.lower()):
                counts["ignored_lines"] += 1
                continue
            messages = mesh_mapper_messages(obj)
            if not messages:
                counts["empty_detections"] += 1
                continue
            counts["frames"] += 1
            counts["messages"] += len(messages)
            rssi = _num(obj, "rssi")
            out.append(OdidFrame(None, mac.lower(), rssi, None, tuple(messages), source="drone-mesh-mapper"))
        return out
