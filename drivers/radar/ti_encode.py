"""TI mmWave SDK 3.x data-UART frames out, for the simulated radar: the exact layout the board
sends (non-zero padding included), so the simulator drives `ti_frames.TiFrameParser` with bytes
indistinguishable from the real board's."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cuas_node.drivers.radar.ti_frames import (
    F32,
    HEADER,
    HEADER_LEN,
    I16,
    MAGIC,
    MAX_FRAME_LEN,
    SEGMENT_LEN,
    STATS,
    STATS_KEYS,
    TEMPERATURE,
    TEMPERATURE_SENSORS,
    TL,
    TLV_DETECTED_POINTS,
    TLV_NOISE_PROFILE,
    TLV_RANGE_PROFILE,
    TLV_SIDE_INFO,
    TLV_STATS,
    TLV_TEMPERATURE,
    U16,
)


def _default_padding(n: int) -> bytes:
    """Non-zero filler: the real board sends leftover buffer bytes, so a parser must not rely on 0s."""
    return bytes((0xA5 + 29 * k) % 255 + 1 for k in range(n))


def _tlv(tlv_type: int, payload: bytes) -> bytes:
    return TL.pack(tlv_type, len(payload)) + payload


def _to_raw_db(values: ArrayLike, n: int, name: str) -> NDArray[np.int16]:
    """dB to the wire's signed 0.1 dB units, saturating like an i16 field would."""
    raw = np.round(np.asarray(values, dtype=np.float64).reshape(-1) * 10.0)
    if raw.shape != (n,):
        raise ValueError(f"{name} must have one value per point")
    return np.clip(raw, -32768, 32767).astype(I16)


def encode_frame(
    frame_number: int,
    points: ArrayLike,
    snr_db: ArrayLike | None = None,
    noise_db: ArrayLike | None = None,
    *,
    version: int = 0x03040003,
    platform: int = 0xA1642,
    time_cpu_cycles: int = 0,
    subframe: int = 0,
    range_profile: ArrayLike | None = None,
    noise_profile: ArrayLike | None = None,
    stats: Mapping[str, int] | None = None,
    temperature: Mapping[str, int] | None = None,
    padding_byte_source: Callable[[int], bytes] = _default_padding,
) -> bytes:
    """Build one data-UART packet exactly as the SDK 3.x demo lays it out (TLV order 1, 7, 2, 3, 6, 9).

    Like the demo, TLVs 1 and 7 are left out when there are no points; TLV 7 is also left out when
    neither SNR nor noise is given (the `guiMonitor` mode without side info). `stats` and
    `temperature` take the dicts that the parser produces, so a decoded frame re-encodes to itself.
    """
    pts = np.asarray(points, dtype=F32).reshape(-1, 4)
    n = pts.shape[0]
    tlvs: list[bytes] = []
    if n:
        tlvs.append(_tlv(TLV_DETECTED_POINTS, pts.tobytes()))
        if snr_db is not None or noise_db is not None:
            side = np.empty((n, 2), dtype=I16)
            side[:, 0] = _to_raw_db(np.zeros(n) if snr_db is None else snr_db, n, "snr_db")
            side[:, 1] = _to_raw_db(np.zeros(n) if noise_db is None else noise_db, n, "noise_db")
            tlvs.append(_tlv(TLV_SIDE_INFO, side.tobytes()))
    if range_profile is not None:
        tlvs.append(_tlv(TLV_RANGE_PROFILE, np.asarray(range_profile, dtype=U16).tobytes()))
    if noise_profile is not None:
        tlvs.append(_tlv(TLV_NOISE_PROFILE, np.asarray(noise_profile, dtype=U16).tobytes()))
    if stats is not None:
        tlvs.append(_tlv(TLV_STATS, STATS.pack(*(stats[k] for k in STATS_KEYS))))
    if temperature is not None:
        temps = (temperature[k] for k in TEMPERATURE_SENSORS)
        payload = TEMPERATURE.pack(temperature["report_valid"], temperature["time_ms"], *temps)
        tlvs.append(_tlv(TLV_TEMPERATURE, payload))
    body = b"".join(tlvs)
    unpadded = HEADER_LEN + len(body)
    total = -(-unpadded // SEGMENT_LEN) * SEGMENT_LEN
    if total > MAX_FRAME_LEN:
        raise ValueError(f"frame of {total} bytes exceeds {MAX_FRAME_LEN}")
    padding = padding_byte_source(total - unpadded)
    if len(padding) != total - unpadded:
        raise ValueError("padding_byte_source returned the wrong number of bytes")
    fields = (version, total, platform, frame_number & 0xFFFFFFFF, time_cpu_cycles & 0xFFFFFFFF)
    header = HEADER.pack(MAGIC, *fields, n, len(tlvs), subframe)
    return header + body + padding
