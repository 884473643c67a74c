"""`cuas-node decode nmea FILE`: the parser's records as the public JSON form (docs/decode-nmea.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cuas_node.drivers.nmea.parser import NmeaFix, NmeaParser

# Decimals in the JSON form (None: an integer). 9 decimals of a degree are 0.1 mm.
_ROUNDING: dict[str, int | None] = {
    "t": 6, "time_of_day_s": 6, "lat": 9, "lon": 9, "alt_msl_m": 3, "geoid_sep_m": 3, "quality": None,
    "num_sats": None, "hdop": 2, "speed_mps": 3, "course_deg": 3
}  # fmt: skip


def fix_to_dict(fix: NmeaFix) -> dict[str, Any]:
    """The public JSON form of one epoch (docs/decode-nmea.md): unknown values are left out."""
    out: dict[str, Any] = {"type": "nmea_fix"}
    for name, digits in _ROUNDING.items():
        value = getattr(fix, name)
        if value is not None:
            out[name] = value if digits is None else round(value, digits)
    return out


def decode_nmea(data: bytes) -> Iterator[dict[str, Any]]:
    """`cuas-node decode nmea FILE`: one dict per fix epoch, `#` comment lines skipped."""
    parser = NmeaParser()
    for line in data.splitlines(keepends=True):
        if line.startswith(b"#"):
            continue
        for fix in parser.feed(line):
            yield fix_to_dict(fix)
    for fix in parser.flush():
        yield fix_to_dict(fix)
