"""TI mmWave data-UART frames out, for the simulated radar and the tests: the exact layout the board
sends (non-zero padding included), so the simulator drives `ti_frames.TiFrameParser` with bytes
indistinguishable from the real board's. The `version` picks the format, as on the board: SDK 3.x
(the default), or SDK 2.0/2.1 (`ti_frames_sdk2`); any other version is written in the 3.x layout,
which is how a test makes frames of a firmware the parser does not speak."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cuas_node.drivers.radar import ti_frames_sdk2 as sdk2
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
    xyz_q_format: int | None = None,
    doppler_bin_mps: float | None = None,
    sdk2_objects: ArrayLike | None = None,
) -> bytes:
    """Build one data-UART packet exactly as the SDK 3.x demo lays it out (TLV order 1, 7, 2, 3, 6, 9).

    Like the demo, TLVs 1 and 7 are left out when there are no points; TLV 7 is also left out when
    neither SNR nor noise is given (the `guiMonitor` mode without side info). `stats` and
    `temperature` take the dicts that the parser produces, so a decoded frame re-encodes to itself.

    With an SDK 2.0/2.1 `version` (e.g. 0x02010004) the frame is that demo's instead: see
    `encode_sdk2_tlvs` for the last three arguments; `snr_db`, `noise_db` and `temperature` have no
    place in it, and the header has no subFrameNumber on xWR14xx (`platform` 0xA1443).
    """
    n = np.asarray(points).size // 4
    if sdk2.is_sdk2(version):
        if snr_db is not None or noise_db is not None or temperature is not None:
            raise ValueError("SDK 2.x frames carry no SNR, noise or temperature")
        tlvs = encode_sdk2_tlvs(points, xyz_q_format, doppler_bin_mps, sdk2_objects)
        header_len = sdk2.header_len(platform)
    else:
        tlvs, header_len = _sdk3_points(points, snr_db, noise_db), HEADER_LEN
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
    unpadded = header_len + len(body)
    total = -(-unpadded // SEGMENT_LEN) * SEGMENT_LEN
    if total > MAX_FRAME_LEN:
        raise ValueError(f"frame of {total} bytes exceeds {MAX_FRAME_LEN}")
    padding = padding_byte_source(total - unpadded)
    if len(padding) != total - unpadded:
        raise ValueError("padding_byte_source returned the wrong number of bytes")
    fields = (version, total, platform, frame_number & 0xFFFFFFFF, time_cpu_cycles & 0xFFFFFFFF)
    header = HEADER.pack(MAGIC, *fields, n, len(tlvs), subframe)[:header_len]
    return header + body + padding


def _sdk3_points(points: ArrayLike, snr_db: ArrayLike | None, noise_db: ArrayLike | None) -> list[bytes]:
    """TLVs 1 and 7 of SDK 3.x: float32 points, and side info in 0.1 dB."""
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
    return tlvs


def encode_sdk2_tlvs(
    points: ArrayLike,
    xyz_q_format: int | None = None,
    doppler_bin_mps: float | None = None,
    objects: ArrayLike | None = None,
) -> list[bytes]:
    """The SDK 2.x type-1 TLV (as a list of none or one TLV): descriptor, then 12-byte records.

    x, y, z come from `points` ((N, 4) x, y, z [m], doppler [m/s]) in Q`xyz_q_format` fixed point,
    rounded as the demo rounds (the default is the finest Q format in which they fit), and each
    Doppler bin is round(doppler / `doppler_bin_mps`). `objects` (records of
    `ti_frames_sdk2.OBJECT`, e.g. a decoded frame's `sdk2_objects`) gives rangeIdx, peakVal and,
    without `doppler_bin_mps`, dopplerIdx as sent; otherwise they are 0. Like the demo, no TLV 1
    is written without points."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 4)
    n = pts.shape[0]
    if not n:
        return []
    q = sdk2.fitting_q_format(pts[:, :3]) if xyz_q_format is None else xyz_q_format
    if not 0 <= q <= sdk2.MAX_Q_FORMAT:
        raise ValueError(f"xyz_q_format {q} outside 0..{sdk2.MAX_Q_FORMAT}")
    records = np.zeros(n, dtype=sdk2.OBJECT)
    if objects is not None:
        given = np.asarray(objects, dtype=sdk2.OBJECT).reshape(-1)
        if given.shape != (n,):
            raise ValueError("objects must have one record per point")
        records[:] = given
    elif doppler_bin_mps is None and np.any(pts[:, 3]):
        raise ValueError("SDK 2.x frames carry Doppler bins: give doppler_bin_mps (or objects)")
    for k, name in enumerate(("x", "y", "z")):
        records[name] = sdk2.to_fixed(pts[:, k], q)
    if doppler_bin_mps is not None:
        bins = np.round(pts[:, 3] / doppler_bin_mps)
        if not np.all(np.abs(bins) <= 32767):  # NaN included
            raise ValueError("Doppler bins do not fit int16")
        records["doppler_idx"] = bins
    return [_tlv(TLV_DETECTED_POINTS, sdk2.OBJ_DESCR.pack(n, q) + records.tobytes())]
