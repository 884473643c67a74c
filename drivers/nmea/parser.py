"""GNSS receiver over NMEA 0183: the node's own position and UTC time.

Why epochs: a receiver reports one navigation solution as several sentences (GGA for position and
altitude, RMC for date, speed and course, ZDA for the date), and NMEA has no end-of-cycle marker.
So the parser groups sentences by their UTC time of day:

    A fix epoch is every decoded GGA, RMC and ZDA sentence carrying the same time of day. The epoch
    is closed, and returned by `feed()`, when a decoded sentence with a *different* time of day
    arrives, or by `flush()` at end of input. Sentences without a time (GSA, GSV, VTG, proprietary
    ones, and GGA/RMC with an empty time field) never open or close an epoch.

Live, a fix therefore reaches the driver one sentence period late (1 s at 1 Hz); it carries the
receiver's own timestamp, so fusion loses latency but no accuracy.

Dates come only from the epoch's own RMC or ZDA (no GPS week-rollover guessing as in gpsd: a
receiver with a rollover bug is reported as it is). Once a date is known it is kept for epochs that
carry none (GGA-only streams) and rolled over at midnight: an epoch is placed on the day, among the
previous, same or next one, that puts it closest in time to the previous epoch. Two-digit RMC years
are read as 1980-2079.

Framing: `$` starts a sentence and CR or LF ends it, so CRLF and bare-LF logs, and sentences torn by
a receiver reset, resynchronise on the next `$`. The checksum is enforced: a sentence without `*hh`
or with a wrong one counts as `checksum_errors` and is dropped. Bytes outside sentences (line noise,
or the `#` comment lines of gpsd logs if fed to the parser) only count as `dropped_bytes`; a
sentence cut short by a new `$` counts as `malformed`; one longer than `MAX_SENTENCE_BYTES` counts as
`overlong`, so memory stays bounded whatever arrives on the wire.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from cuas_node.drivers.nmea.fields import (
    KNOT_MPS,
    checksum,
    days_since_epoch,
    parse_angle,
    parse_float,
    parse_int,
    parse_time_us,
)

__all__ = ["MAX_SENTENCE_BYTES", "NmeaFix", "NmeaParser"]

MAX_SENTENCE_BYTES = 200
"""NMEA allows 82 characters; real receivers exceed it (RTK GGA), none come close to this."""

_US_PER_DAY = 86_400_000_000
_STOP = re.compile(rb"[\r\n$]")
_HEX2 = re.compile(rb"[0-9A-Fa-f]{2}")
_ADDRESS = re.compile(r"[A-Z]{5}")
# RMC mode indicator (NMEA 2.3+) to the GGA quality scale, for epochs without a GGA.
_MODE_QUALITY = {"N": 0, "A": 1, "D": 2, "P": 3, "R": 4, "F": 5, "E": 6, "M": 7, "S": 8}
_COUNTERS = (
    "sentences", "epochs", "fixes", "checksum_errors", "malformed", "ignored", "untimed", "dropped_bytes",
    "overlong",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class NmeaFix:
    """One fix epoch. Position fields are None unless the receiver reports a fix (`valid`)."""

    time_of_day_s: float
    t: float | None
    lat: float | None
    lon: float | None
    alt_msl_m: float | None
    geoid_sep_m: float | None
    quality: int | None
    num_sats: int | None
    hdop: float | None
    speed_mps: float | None
    course_deg: float | None
    valid: bool
    sentences: tuple[str, ...] = ()
    """Sentence types that made the epoch, in arrival order (e.g. `("RMC", "GGA")`)."""


class _Gga(NamedTuple):
    lat: float | None
    lon: float | None
    quality: int | None
    num_sats: int | None
    hdop: float | None
    alt: float | None
    sep: float | None


class _Rmc(NamedTuple):
    active: bool
    lat: float | None
    lon: float | None
    speed_mps: float | None
    course_deg: float | None
    mode: str
    days: int | None


@dataclass(slots=True)
class _Epoch:
    tod_us: int
    gga: _Gga | None = None
    rmc: _Rmc | None = None
    zda_days: int | None = None
    kinds: list[str] = field(default_factory=list)


def _fields(parts: list[str], minimum: int, total: int) -> list[str]:
    if len(parts) < minimum:
        raise ValueError("too few fields")
    return parts + [""] * (total - len(parts))


def _parse_gga(parts: list[str]) -> tuple[int | None, _Gga]:
    f = _fields(parts, 7, 15)
    return parse_time_us(f[1]), _Gga(
        lat=parse_angle(f[2], f[3], 90.0, "S", "N"),
        lon=parse_angle(f[4], f[5], 180.0, "W", "E"),
        quality=parse_int(f[6]),
        num_sats=parse_int(f[7]),
        hdop=parse_float(f[8]),
        alt=parse_float(f[9]),
        sep=parse_float(f[11]),
    )


def _parse_rmc(parts: list[str]) -> tuple[int | None, _Rmc]:
    f = _fields(parts, 10, 14)
    if f[2] not in ("A", "V"):
        raise ValueError(f"bad RMC status {f[2]!r}")
    days = None
    if f[9]:
        if len(f[9]) != 6 or not f[9].isdigit():
            raise ValueError(f"bad RMC date {f[9]!r}")
        yy = int(f[9][4:6])
        days = days_since_epoch(yy + (2000 if yy < 80 else 1900), int(f[9][2:4]), int(f[9][0:2]))
    knots = parse_float(f[7])
    return parse_time_us(f[1]), _Rmc(
        active=f[2] == "A",
        lat=parse_angle(f[3], f[4], 90.0, "S", "N"),
        lon=parse_angle(f[5], f[6], 180.0, "W", "E"),
        speed_mps=None if knots is None else knots * KNOT_MPS,
        course_deg=parse_float(f[8]),
        mode=f[12],
        days=days,
    )


def _parse_zda(parts: list[str]) -> tuple[int | None, int | None]:
    f = _fields(parts, 5, 7)
    if not (f[2] or f[3] or f[4]):
        return parse_time_us(f[1]), None
    day, month, year = parse_int(f[2]), parse_int(f[3]), parse_int(f[4])
    if day is None or month is None or year is None or len(f[4]) != 4:
        raise ValueError("incomplete ZDA date")
    return parse_time_us(f[1]), days_since_epoch(year, month, day)


class NmeaParser:
    """Sans-IO NMEA 0183 parser: bytes in, fix epochs out (see the module docstring for the rules).

    Counters: `sentences` (checksum-valid sentences), `epochs` (records returned), `fixes` (those
    with a valid position), `checksum_errors`, `malformed` (valid checksum but undecodable, or cut
    short), `ignored` (valid sentence types we do not use, including proprietary `$P...`),
    `untimed` (GGA/RMC/ZDA with an empty time field), `dropped_bytes` (noise between sentences and
    the bytes of torn, overlong or checksum-failed sentences), `overlong`.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._in_sentence = False
        self._epoch: _Epoch | None = None
        self._day: int | None = None
        self._last_tod_us = 0
        self._counts: dict[str, int] = dict.fromkeys(_COUNTERS, 0)

    @property
    def counters(self) -> dict[str, int]:
        return dict(self._counts)

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for an unfinished sentence; never more than MAX_SENTENCE_BYTES."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[NmeaFix]:
        out: list[NmeaFix] = []
        pos, end = 0, len(data)
        while pos < end:
            if not self._in_sentence:
                start = data.find(b"$", pos)
                stop = end if start < 0 else start
                noise = stop - pos - data.count(b"\r", pos, stop) - data.count(b"\n", pos, stop)
                self._counts["dropped_bytes"] += noise
                if start < 0:
                    break
                self._buf += b"$"
                self._in_sentence = True
                pos = start + 1
                continue
            m = _STOP.search(data, pos)
            stop = end if m is None else m.start()
            if len(self._buf) + stop - pos > MAX_SENTENCE_BYTES:
                # The rest of this line is noise to the idle state, which counts it as dropped.
                self._counts["overlong"] += 1
                self._counts["dropped_bytes"] += len(self._buf) + stop - pos
                self._buf.clear()
                self._in_sentence = False
                pos = stop
                continue
            self._buf += data[pos:stop]
            if m is None:
                break
            pos = stop + 1
            if data[stop] == 0x24:  # "$": the sentence in the buffer was torn off
                self._counts["malformed"] += 1
                self._counts["dropped_bytes"] += len(self._buf)
                self._buf[:] = b"$"
                continue
            self._take_sentence(out)
        return out

    def flush(self) -> list[NmeaFix]:
        """End of input: decode a last sentence that lacks its line end, and close the open epoch.

        The known date is kept, so feeding may go on (e.g. after a replay file is rotated).
        """
        out: list[NmeaFix] = []
        if self._in_sentence:
            self._take_sentence(out)
        if self._epoch is not None:
            out.append(self._close())
        return out

    def _take_sentence(self, out: list[NmeaFix]) -> None:
        raw = bytes(self._buf).rstrip(b" \t")
        self._buf.clear()
        self._in_sentence = False
        star = raw.rfind(b"*")
        if (
            star < 0
            or not _HEX2.fullmatch(raw, star + 1)
            or checksum(raw[1:star]) != int(raw[star + 1 :], 16)
        ):
            self._counts["checksum_errors"] += 1
            self._counts["dropped_bytes"] += len(raw)
            return
        self._counts["sentences"] += 1
        try:
            parts = raw[1:star].decode("ascii").split(",")
            address = parts[0]
            if address.startswith("P"):
                self._counts["ignored"] += 1
                return
            if not _ADDRESS.fullmatch(address):
                raise ValueError(f"bad address {address!r}")
            kind = address[2:]
            handler = _HANDLERS.get(kind)
            if handler is None:
                self._counts["ignored"] += 1
                return
            tod_us, payload = handler(parts)
        except (ValueError, IndexError, OverflowError):
            self._counts["malformed"] += 1
            return
        if tod_us is None:
            self._counts["untimed"] += 1
            return
        if self._epoch is not None and self._epoch.tod_us != tod_us:
            out.append(self._close())
        if self._epoch is None:
            self._epoch = _Epoch(tod_us)
        epoch = self._epoch
        epoch.kinds.append(kind)
        if isinstance(payload, _Gga):
            epoch.gga = payload
        elif isinstance(payload, _Rmc):
            epoch.rmc = payload
        elif payload is not None:
            epoch.zda_days = payload

    def _close(self) -> NmeaFix:
        epoch = self._epoch
        assert epoch is not None
        self._epoch = None
        gga, rmc = epoch.gga, epoch.rmc
        # GGA is the authority on fix quality and position (it often prints more digits than RMC
        # and carries the altitude); RMC speaks only for epochs without a GGA. Receivers keep
        # printing a stale last position without a fix, so position fields are blanked then.
        quality: int | None = None
        if gga is not None and gga.quality is not None:
            quality = gga.quality
        elif rmc is not None:
            quality = _MODE_QUALITY.get(rmc.mode, 1) if rmc.active else 0
        lat = lon = None
        if gga is not None and gga.lat is not None and gga.lon is not None:
            lat, lon = gga.lat, gga.lon
        elif rmc is not None:
            lat, lon = rmc.lat, rmc.lon
        valid = quality is not None and quality > 0 and lat is not None and lon is not None
        t = self._utc(epoch)
        self._counts["epochs"] += 1
        self._counts["fixes"] += valid
        return NmeaFix(
            time_of_day_s=epoch.tod_us / 1e6,
            t=t,
            lat=lat if valid else None,
            lon=lon if valid else None,
            alt_msl_m=gga.alt if valid and gga is not None else None,
            geoid_sep_m=gga.sep if gga is not None else None,
            quality=quality,
            num_sats=gga.num_sats if gga is not None else None,
            hdop=gga.hdop if gga is not None else None,
            speed_mps=rmc.speed_mps if valid and rmc is not None else None,
            course_deg=rmc.course_deg if valid and rmc is not None else None,
            valid=valid,
            sentences=tuple(epoch.kinds),
        )

    def _utc(self, epoch: _Epoch) -> float | None:
        own = epoch.zda_days if epoch.zda_days is not None else (epoch.rmc.days if epoch.rmc else None)
        if own is not None:
            self._day = own
        elif self._day is not None:
            previous = self._day * _US_PER_DAY + self._last_tod_us
            self._day = min(
                (self._day - 1, self._day, self._day + 1),
                key=lambda d: abs(d * _US_PER_DAY + epoch.tod_us - previous),
            )
        self._last_tod_us = epoch.tod_us
        if self._day is None:
            return None
        return (self._day * _US_PER_DAY + epoch.tod_us) / 1e6


_HANDLERS: dict[str, Callable[[list[str]], tuple[int | None, _Gga | _Rmc | int | None]]] = {
    "GGA": _parse_gga,
    "RMC": _parse_rmc,
    "ZDA": _parse_zda,
}
