"""NMEA 0183 sentences out, for the simulator: exactly what a receiver would send.

The simulator feeds the real `NmeaParser` through a pty, so the bytes must be what a receiver
sends: talker-prefixed sentences, an XOR checksum and CRLF. Positions are printed with six
decimals of arc-minute (about 2 mm) so that the simulated node position survives the trip through
text with no error that fusion could notice; times carry centiseconds like u-blox receivers.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from cuas_node.drivers.nmea.fields import KNOT_MPS, checksum

_CS_PER_DAY = 8_640_000
_MICRO_MINUTES_PER_DEG = 60_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def frame(body: str) -> bytes:
    """Wrap a sentence body (`GPGGA,...`, without `$`) into a complete line with checksum and CRLF."""
    raw = body.encode("ascii")
    return b"$" + raw + b"*" + f"{checksum(raw):02X}".encode("ascii") + b"\r\n"


def _centiseconds(t_utc: float) -> int:
    if not math.isfinite(t_utc):
        raise ValueError(f"time must be finite, got {t_utc!r}")
    return round(t_utc * 100)


def _time_field(cs: int) -> str:
    tod = cs % _CS_PER_DAY
    seconds, frac = divmod(tod, 100)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}{minutes:02d}{secs:02d}.{frac:02d}"


def _date_field(cs: int) -> str:
    # Two-digit years are read back with a 1980-2079 pivot, so refuse what cannot round-trip.
    day = _EPOCH + timedelta(days=cs // _CS_PER_DAY)
    if not 1980 <= day.year <= 2079:
        raise ValueError(f"RMC dates can only carry years 1980-2079, got {day.year}")
    return f"{day.day:02d}{day.month:02d}{day.year % 100:02d}"


def _angle_fields(value: float, limit: float, deg_digits: int, hemispheres: str) -> tuple[str, str]:
    if not (math.isfinite(value) and -limit <= value <= limit):
        raise ValueError(f"coordinate {value!r} outside ±{limit}")
    # Work in integer micro-minutes so rounding can never print a "60.000000" minute field.
    total = round(abs(value) * _MICRO_MINUTES_PER_DEG)
    degrees, micro = divmod(total, _MICRO_MINUTES_PER_DEG)
    whole, frac = divmod(micro, 1_000_000)
    text = f"{degrees:0{deg_digits}d}{whole:02d}.{frac:06d}"
    # The hemisphere follows the printed value: a tiny negative number prints as 0 north/east.
    return text, hemispheres[1] if value < 0 and total else hemispheres[0]


def _finite(name: str, value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def encode_gga(
    t_utc: float,
    lat: float,
    lon: float,
    alt_msl_m: float,
    geoid_sep_m: float = 0.0,
    quality: int = 1,
    num_sats: int = 10,
    hdop: float = 0.9,
    talker: str = "GP",
) -> bytes:
    """A GGA sentence: position, altitude above MSL (2 decimals), geoid separation, fix quality."""
    if not 0 <= quality <= 9:
        raise ValueError(f"GGA quality is one digit, got {quality}")
    if not 0 <= num_sats <= 99:
        raise ValueError(f"num_sats must be 0-99, got {num_sats}")
    if not (math.isfinite(hdop) and hdop >= 0):
        raise ValueError(f"hdop must be a non-negative number, got {hdop!r}")
    cs = _centiseconds(t_utc)
    lat_s, ns = _angle_fields(lat, 90.0, 2, "NS")
    lon_s, ew = _angle_fields(lon, 180.0, 3, "EW")
    alt = _finite("alt_msl_m", alt_msl_m)
    sep = _finite("geoid_sep_m", geoid_sep_m)
    body = (
        f"{talker}GGA,{_time_field(cs)},{lat_s},{ns},{lon_s},{ew},{quality},{num_sats:02d},"
        f"{hdop:.2f},{alt:.2f},M,{sep:.2f},M,,"
    )
    return frame(body)


def encode_rmc(
    t_utc: float,
    lat: float,
    lon: float,
    speed_mps: float = 0.0,
    course_deg: float = 0.0,
    talker: str = "GP",
) -> bytes:
    """An RMC sentence (status A, mode A): the only standard sentence that carries the date.

    Speed is printed in knots with 3 decimals (about 0.5 mm/s) and course with 2 decimals.
    """
    if not (math.isfinite(speed_mps) and speed_mps >= 0):
        raise ValueError(f"speed_mps must be a non-negative number, got {speed_mps!r}")
    course = _finite("course_deg", course_deg) % 360.0
    cs = _centiseconds(t_utc)
    lat_s, ns = _angle_fields(lat, 90.0, 2, "NS")
    lon_s, ew = _angle_fields(lon, 180.0, 3, "EW")
    course_s = f"{course:.2f}"
    if course_s == "360.00":
        course_s = "0.00"
    body = (
        f"{talker}RMC,{_time_field(cs)},A,{lat_s},{ns},{lon_s},{ew},{speed_mps / KNOT_MPS:.3f},"
        f"{course_s},{_date_field(cs)},,,A"
    )
    return frame(body)
