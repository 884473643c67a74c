"""Calibration inputs and outputs: measurement JSON lines, reference tracks (GPX/CSV), TOML reports.

Why JSON lines of measurements rather than raw captures: every procedure fits in the measurement
contract's own terms (sensor frame, `t_capture`), so the same loader reads what
`cuas-node calibrate capture` writes today and what `cuas-node replay` will print later, and a
technician can cut, merge or inspect a capture with any text tool.

Measurement line format (one JSON object per line; blank lines and `#` comments are skipped)::

    {"type": "measurement", "kind": "radar", "sensor_id": "radar-n", "t_capture": 1.7e9,
     "t_receive": 12.3, "range_m": 41.2, "az_rad": 0.12, ...}

`kind` is one of `radar`, `radar-empty`, `acoustic`, `remoteid`, `rf`, `gps`, or the class name of
`node/kernel/measurement.py` (`RadarDetection`, ..., as `cuas-node replay` prints it); when it is
missing it is inferred from the fields present. The remaining keys are the dataclass fields
(unknown keys are ignored, so a newer writer stays readable). A line may also nest the fields under
`"measurement"`. Lines of any other `type` are skipped.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from cuas_node.kernel.measurement import (
    AcousticBearing,
    AnyMeasurement,
    EmptyRadarScan,
    GpsFix,
    RadarDetection,
    RemoteIdReport,
    RfPresence,
)

FloatArray = npt.NDArray[np.float64]

KINDS: dict[str, type[Any]] = {
    "radar": RadarDetection,
    "radar-empty": EmptyRadarScan,  # a radar frame with no detection (no procedure needs one)
    "acoustic": AcousticBearing,
    "remoteid": RemoteIdReport,
    "rf": RfPresence,
    "gps": GpsFix,
}
_KIND_OF = {cls: name for name, cls in KINDS.items()}
_CLASS_NAMES = {cls.__name__: name for name, cls in KINDS.items()}
# Fields that only one class has: enough to infer the kind of a line that does not say it.
_SIGNATURE = (
    ("range_m", "radar"),
    ("uas_id", "remoteid"),
    ("freq_mhz", "rf"),
    ("drone_likelihood", "acoustic"),
    ("quality", "gps"),
)


class CalibrationInputError(ValueError):
    """An input file that cannot be used, phrased for the technician (file, line, what is wrong)."""


# ---------------------------------------------------------------------------------------------
# Measurements


def measurement_to_dict(m: AnyMeasurement) -> dict[str, Any]:
    """The JSON-lines record of one measurement (the inverse of `measurement_from_dict`)."""
    out: dict[str, Any] = {"type": "measurement", "kind": _KIND_OF[type(m)]}
    for f in dataclasses.fields(m):
        value = getattr(m, f.name)
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[f.name] = value
    return out


def measurement_from_dict(obj: Mapping[str, Any]) -> AnyMeasurement:
    """Build a measurement from a JSON object; raises `ValueError` when required fields are missing."""
    fields = obj.get("measurement", obj)
    if not isinstance(fields, Mapping):
        raise ValueError("'measurement' must be an object")
    kind = obj.get("kind", fields.get("kind"))
    if kind is None:
        kind = next((k for key, k in _SIGNATURE if key in fields), None)
    kind = _CLASS_NAMES.get(kind, kind)  # `cuas-node replay` names the class: "RadarDetection"
    if kind not in KINDS:
        raise ValueError(f"unknown measurement kind {kind!r} (known: {', '.join(KINDS)})")
    cls = KINDS[kind]
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in fields:
            continue
        value = fields[f.name]
        if isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    kwargs.setdefault("t_receive", kwargs.get("t_capture", 0.0))
    try:
        out: AnyMeasurement = cls(**kwargs)
        return out
    except TypeError as exc:
        raise ValueError(f"{kind} measurement: {exc}") from None


def iter_measurements(lines: Iterable[str], source: str = "<input>") -> Iterator[AnyMeasurement]:
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CalibrationInputError(f"{source} line {number}: not JSON: {exc.msg}") from None
        if not isinstance(obj, dict) or obj.get("type", "measurement") != "measurement":
            continue
        try:
            yield measurement_from_dict(obj)
        except ValueError as exc:
            raise CalibrationInputError(f"{source} line {number}: {exc}") from None


def load_measurements(paths: Sequence[Path] | Path) -> list[AnyMeasurement]:
    """Every measurement of one or more JSON-lines files, sorted by capture time."""
    out: list[AnyMeasurement] = []
    for path in [paths] if isinstance(paths, Path) else paths:
        try:
            with Path(path).open(encoding="utf-8") as handle:
                out.extend(iter_measurements(handle, str(path)))
        except OSError as exc:
            raise CalibrationInputError(f"cannot read {path}: {exc.strerror}") from None
    out.sort(key=lambda m: m.t_capture)
    return out


def write_measurements(handle: TextIO, measurements: Iterable[AnyMeasurement]) -> int:
    n = 0
    for m in measurements:
        handle.write(json.dumps(measurement_to_dict(m), separators=(",", ":")) + "\n")
        n += 1
    return n


# ---------------------------------------------------------------------------------------------
# Reference tracks


@dataclass(frozen=True)
class ReferenceTrack:
    """Where the reference target truly was: WGS84 (altitude above the ellipsoid) against UTC."""

    t: FloatArray
    lat: FloatArray
    lon: FloatArray
    alt_m: FloatArray
    sigma_m: float
    source: str

    def __post_init__(self) -> None:
        order = np.argsort(self.t, kind="stable")
        for name in ("t", "lat", "lon", "alt_m"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64)[order])

    def __len__(self) -> int:
        return int(self.t.shape[0])


def reference_from_remoteid(
    measurements: Iterable[AnyMeasurement], uas_id: str | None = None, sigma_m: float | None = None
) -> ReferenceTrack:
    """The Remote ID drone's own broadcast positions as the reference (the drone with most reports
    unless `uas_id` names one). Time: the drone's own UTC position time when it was decoded."""
    by_id: dict[str, list[RemoteIdReport]] = {}
    for m in measurements:
        if isinstance(m, RemoteIdReport) and m.lat is not None and m.lon is not None:
            alt = m.alt_geo_m if m.alt_geo_m is not None else m.alt_baro_m
            if alt is not None:
                by_id.setdefault(m.uas_id, []).append(m)
    if not by_id:
        raise CalibrationInputError("no Remote ID report with a position and an altitude in the capture")
    if uas_id is None:
        uas_id = max(by_id, key=lambda k: len(by_id[k]))
    elif uas_id not in by_id:
        raise CalibrationInputError(
            f"no Remote ID reports from {uas_id!r} (heard: {', '.join(sorted(by_id))})"
        )
    reports = by_id[uas_id]
    # Several receivers (BT + Wi-Fi) hear the same Location message: keep one per timestamp.
    seen: dict[float, RemoteIdReport] = {}
    for r in reports:
        seen.setdefault(round(r.time_utc if r.time_utc is not None else r.t_capture, 3), r)
    times = np.array(sorted(seen))
    rows = [seen[t] for t in times]
    acc = [r.h_accuracy_m for r in rows if r.h_accuracy_m is not None]
    sigma = sigma_m if sigma_m is not None else (float(np.median(acc)) / 2.0 if acc else 3.0)
    return ReferenceTrack(
        t=times,
        lat=np.array([r.lat for r in rows], dtype=np.float64),
        lon=np.array([r.lon for r in rows], dtype=np.float64),
        alt_m=np.array([r.alt_geo_m if r.alt_geo_m is not None else r.alt_baro_m for r in rows]),
        sigma_m=max(sigma, 0.1),
        source=f"remote-id {uas_id}",
    )


def _parse_time(text: str) -> float:
    """Epoch seconds, or ISO 8601 (`2025-05-01T10:00:00.5Z`; no zone means UTC)."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def read_gpx(path: Path, sigma_m: float = 3.0) -> ReferenceTrack:
    """Track points (`trkpt`, also `rtept`/`wpt` with times) with `ele` and `time` from a GPX 1.0/1.1
    file. GPX `ele` is usually above mean sea level: give `alt_offset_m` (the geoid separation) to
    the caller's conversion when that matters."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise CalibrationInputError(f"cannot read GPX {path}: {exc}") from None
    t, lat, lon, alt = [], [], [], []
    for el in root.iter():
        if not el.tag.endswith(("trkpt", "rtept", "wpt")):
            continue
        ele = next((c.text for c in el if c.tag.endswith("ele")), None)
        when = next((c.text for c in el if c.tag.endswith("time")), None)
        if when is None or ele is None:
            continue
        try:
            t.append(_parse_time(when))
            lat.append(float(el.attrib["lat"]))
            lon.append(float(el.attrib["lon"]))
            alt.append(float(ele))
        except (KeyError, ValueError) as exc:
            raise CalibrationInputError(f"{path}: bad track point: {exc}") from None
    if len(t) < 2:
        raise CalibrationInputError(f"{path}: fewer than two track points with both <ele> and <time>")
    return ReferenceTrack(np.array(t), np.array(lat), np.array(lon), np.array(alt), sigma_m, f"gpx {path}")


_CSV_COLUMNS = {
    "t": ("time", "t", "timestamp", "utc", "datetime", "t_utc"),
    "lat": ("lat", "latitude", "lat_deg"),
    "lon": ("lon", "lng", "long", "longitude", "lon_deg"),
    "alt": ("alt", "alt_m", "altitude", "ele", "elevation", "height", "alt_hae_m"),
}


def read_csv_track(path: Path, sigma_m: float = 3.0) -> ReferenceTrack:
    """A CSV with a header naming time, latitude, longitude and altitude columns (common spellings
    accepted: `time`/`timestamp`, `lat`/`latitude`, `lon`/`lng`/`longitude`, `alt`/`ele`/`altitude`);
    time as epoch seconds or ISO 8601."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = {h.strip().lower(): h for h in (reader.fieldnames or [])}
            cols: dict[str, str] = {}
            for key, names in _CSV_COLUMNS.items():
                found = next((header[n] for n in names if n in header), None)
                if found is None:
                    raise CalibrationInputError(
                        f"{path}: no {key} column (header: {', '.join(header)}; "
                        f"expected one of {', '.join(names)})"
                    )
                cols[key] = found
            rows = [(r[cols["t"]], r[cols["lat"]], r[cols["lon"]], r[cols["alt"]]) for r in reader]
    except OSError as exc:
        raise CalibrationInputError(f"cannot read {path}: {exc.strerror}") from None
    try:
        parsed = [(_parse_time(a), float(b), float(c), float(d)) for a, b, c, d in rows if a and b and c]
    except ValueError as exc:
        raise CalibrationInputError(f"{path}: {exc}") from None
    if len(parsed) < 2:
        raise CalibrationInputError(f"{path}: fewer than two rows")
    arr = np.array(parsed, dtype=np.float64)
    return ReferenceTrack(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], sigma_m, f"csv {path}")


def read_track(path: Path, sigma_m: float = 3.0) -> ReferenceTrack:
    """GPX or CSV by extension."""
    if path.suffix.lower() == ".gpx":
        return read_gpx(path, sigma_m)
    return read_csv_track(path, sigma_m)


# ---------------------------------------------------------------------------------------------
# TOML writer (tomllib reads, nothing in the standard library writes)


def _toml_key(key: str) -> str:
    if key and all(c.isalnum() or c in "-_" for c in key):
        return key
    return json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, Sequence | np.ndarray):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dumps_toml(data: Mapping[str, Any], header: str = "") -> str:
    """Scalars and lists first, then each nested mapping as a [table] (recursively)."""
    lines = [f"# {h}" if h else "#" for h in header.splitlines()] if header else []

    def emit(table: Mapping[str, Any], prefix: str) -> None:
        scalars = [(k, v) for k, v in table.items() if not isinstance(v, Mapping)]
        tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
        if prefix and (scalars or not tables):
            lines.append("")
            lines.append(f"[{prefix}]")
        for k, v in scalars:
            if v is None:
                continue
            lines.append(f"{_toml_key(str(k))} = {_toml_value(v)}")
        for k, v in tables:
            emit(v, f"{prefix}.{_toml_key(str(k))}" if prefix else _toml_key(str(k)))

    emit(data, "")
    return "\n".join(lines).lstrip("\n") + "\n"


def write_toml(path: Path, data: Mapping[str, Any], header: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_toml(data, header), encoding="utf-8")


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
