"""`cuas-node decode ti-mmwave FILE`: the parser's frames as the public JSON form
(docs/decode-ti-mmwave.md)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from cuas_node.drivers.radar.ti_frames import TEMPERATURE_SENSORS, TiFrame, TiFrameParser, TiFrameSdk2
from cuas_node.drivers.radar.ti_frames_sdk2 import unsupported_version_message


class UnsupportedFirmware(Exception):
    """The recording holds frames of a firmware version the parser does not decode. Raised after
    every decodable frame was yielded; the message names the version and what to do."""


def _r6(value: Any) -> float:
    return round(float(value), 6)


def frame_to_json(frame: TiFrame) -> dict[str, Any]:
    """The public JSON shape of one frame (docs/decode-ti-mmwave.md): units SI, dB, °C.

    An SDK 2.x point has no SNR or noise; it carries its Doppler bin (`doppler_bin`) and the
    detection's `peak_val` as sent, and `doppler` in m/s only when the parser knew the bin width."""
    pts = frame.points.tolist()  # float32 -> float exactly, as float(np.float32) would
    snr = frame.snr_db.tolist() if frame.snr_db is not None else None
    noise = frame.noise_db.tolist() if frame.noise_db is not None else None
    sdk2 = frame.sdk2_objects if isinstance(frame, TiFrameSdk2) else None
    out_points: list[dict[str, float]] = []
    for k, (x, y, z, v) in enumerate(pts):
        point = {"x": _r6(x), "y": _r6(y), "z": _r6(z)}
        if sdk2 is None or not math.isnan(v):  # an SDK 2.x doppler is unknown without the bin width
            point["doppler"] = _r6(v)
        if snr is not None and noise is not None:
            point["snr_db"] = _r6(snr[k])
            point["noise_db"] = _r6(noise[k])
        out_points.append(point)
    if sdk2 is not None:
        bins = sdk2["doppler_idx"].tolist()
        peaks = sdk2["peak_val"].tolist()
        for point, doppler_bin, peak in zip(out_points, bins, peaks, strict=True):
            point["doppler_bin"] = doppler_bin
            point["peak_val"] = peak
    out: dict[str, Any] = {"type": "ti_frame", "frame": frame.frame_number, "points": out_points}
    if frame.stats is not None:
        out["stats"] = dict(frame.stats)
    if frame.temperature is not None and frame.temperature["report_valid"] == 0:
        out["temperature_c"] = {k: frame.temperature[k] for k in TEMPERATURE_SENSORS}
    return out


def decode_ti(data: bytes) -> Iterator[dict[str, Any]]:
    """Decode a data-UART recording for `cuas-node decode ti-mmwave FILE`: one object per frame of
    SDK 2.0, 2.1 or 3.x; then, if it held frames of another version, `UnsupportedFirmware`."""
    parser = TiFrameParser()
    for frame in parser.feed(data):
        yield frame_to_json(frame)
    skipped = parser.counters["unsupported_version"]
    if skipped and parser.unsupported_version is not None:
        message = unsupported_version_message(parser.unsupported_version)
        raise UnsupportedFirmware(f"{skipped} frame(s) skipped: {message}")
