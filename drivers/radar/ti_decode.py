"""`cuas-node decode ti-mmwave FILE`: the parser's frames as the public JSON form
(docs/decode-ti-mmwave.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cuas_node.drivers.radar.ti_frames import TEMPERATURE_SENSORS, TiFrame, TiFrameParser


def _r6(value: Any) -> float:
    return round(float(value), 6)


def frame_to_json(frame: TiFrame) -> dict[str, Any]:
    """The public JSON shape of one frame (docs/decode-ti-mmwave.md): units SI, dB, °C."""
    pts = frame.points.tolist()  # float32 -> float exactly, as float(np.float32) would
    snr = frame.snr_db.tolist() if frame.snr_db is not None else None
    noise = frame.noise_db.tolist() if frame.noise_db is not None else None
    out_points: list[dict[str, float]] = []
    for k, (x, y, z, v) in enumerate(pts):
        point = {"x": _r6(x), "y": _r6(y), "z": _r6(z), "doppler": _r6(v)}
        if snr is not None and noise is not None:
            point["snr_db"] = _r6(snr[k])
            point["noise_db"] = _r6(noise[k])
        out_points.append(point)
    out: dict[str, Any] = {"type": "ti_frame", "frame": frame.frame_number, "points": out_points}
    if frame.stats is not None:
        out["stats"] = dict(frame.stats)
    if frame.temperature is not None and frame.temperature["report_valid"] == 0:
        out["temperature_c"] = {k: frame.temperature[k] for k in TEMPERATURE_SENSORS}
    return out


def decode_ti(data: bytes) -> Iterator[dict[str, Any]]:
    """Decode a data-UART recording for `cuas-node decode ti-mmwave FILE`: one object per frame."""
    parser = TiFrameParser()
    for frame in parser.feed(data):
        yield frame_to_json(frame)
