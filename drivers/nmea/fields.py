"""NMEA 0183 at the field level: the checksum and the strict field decoders the parser uses.

Decoders raise ValueError on anything that is not a well-formed field, and return None for an
empty one, because NMEA uses empty fields for "unknown". Their exact inverses, the sentence
encoders the simulator uses, are in `encode.py`; tests/test_nmea.py checks the round trip.
"""

from __future__ import annotations

import re
from datetime import date

KNOT_MPS = 1852.0 / 3600.0
"""One knot in metres per second (exact by definition of the international nautical mile)."""

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_TIME = re.compile(r"(\d\d)(\d\d)(\d\d)(?:\.(\d*))?")
_ANGLE = re.compile(r"(\d+)(\d\d(?:\.\d*)?)")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_UINT = re.compile(r"\d+")


def checksum(body: bytes) -> int:
    """XOR of every byte between `$` and `*`: the only integrity check NMEA has."""
    value = 0
    for byte in body:
        value ^= byte
    return value


def _checked(pattern: re.Pattern[str], text: str) -> str:
    # float() and int() alone would accept "nan", "inf", "1e9", " 1" and "1_0": none of them is NMEA.
    if not pattern.fullmatch(text):
        raise ValueError(f"bad field {text!r}")
    return text


def parse_float(text: str) -> float | None:
    """A plain decimal number (signed, no exponent) or None for an empty field."""
    return float(_checked(_NUMBER, text)) if text else None


def parse_int(text: str) -> int | None:
    """An unsigned decimal integer (satellite count, fix quality) or None for an empty field."""
    return int(_checked(_UINT, text)) if text else None


def parse_time_us(text: str) -> int | None:
    """hhmmss[.sss] to integer microseconds, so that epochs compare exactly."""
    if not text:
        return None
    m = _TIME.fullmatch(text)
    if m is None:
        raise ValueError(f"bad time {text!r}")
    hh, mm, ss = int(m[1]), int(m[2]), int(m[3])
    if hh > 23 or mm > 59 or ss > 60:
        raise ValueError(f"bad time {text!r}")
    frac = int((m[4] or "")[:6].ljust(6, "0"))
    return ((hh * 60 + mm) * 60 + ss) * 1_000_000 + frac


def parse_angle(text: str, hemi: str, limit: float, negative: str, positive: str) -> float | None:
    """(d)ddmm.mmmm plus hemisphere to signed degrees; the minutes are parsed as written."""
    if not text and not hemi:
        return None
    m = _ANGLE.fullmatch(text)
    if m is None or hemi not in (negative, positive):
        raise ValueError(f"bad coordinate {text!r},{hemi!r}")
    minutes = float(m[2])
    value = int(m[1]) + minutes / 60.0
    if minutes >= 60.0 or value > limit:
        raise ValueError(f"coordinate out of range {text!r}")
    return -value if hemi == negative else value


def days_since_epoch(year: int, month: int, day: int) -> int:
    """Whole days since 1970-01-01; ValueError for a date that does not exist (31 April)."""
    return date(year, month, day).toordinal() - _EPOCH_ORDINAL
