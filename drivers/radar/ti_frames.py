"""TI mmWave SDK 3.x out-of-box demo: the data-UART frame format (protocols.md section 1.1.3).

The data UART is a raw byte stream with no checksum, so the only integrity we get is structural:
the magic word, a sane header, TLVs that fit inside the declared length, and the absence of another
frame's start inside this one. The parser is sans-IO so it can be fed recorded bytes and fuzzed,
and it counts every problem instead of raising: a radar that emits a glitch must not stop the node.

`encode_frame` writes the exact same layout (non-zero padding included) so that the simulated radar
drives this parser with bytes indistinguishable from the real board's.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

MAGIC = b"\x02\x01\x04\x03\x06\x05\x08\x07"
HEADER = struct.Struct("<8s8I")
HEADER_LEN = HEADER.size  # 40
TL = struct.Struct("<II")
SEGMENT_LEN = 32  # MMWDEMO_OUTPUT_MSG_SEGMENT_LEN: frames are padded to a multiple of this
MAX_FRAME_LEN = 64 * 1024
BUFFER_CAP = 2 * MAX_FRAME_LEN
MAX_SUBFRAMES = 4  # RL_MAX_SUBFRAMES: advanced frame config has sub-frames 0..3
KNOWN_MAJOR_VERSIONS = frozenset({3})

TLV_DETECTED_POINTS = 1
TLV_RANGE_PROFILE = 2
TLV_NOISE_PROFILE = 3
TLV_STATS = 6
TLV_SIDE_INFO = 7
TLV_TEMPERATURE = 9

STATS = struct.Struct("<6I")
STATS_KEYS = (
    "interframe_processing_time_us",
    "transmit_output_time_us",
    "interframe_processing_margin_us",
    "interchirp_processing_margin_us",
    "active_frame_cpu_load_pct",
    "interframe_cpu_load_pct",
)
TEMPERATURE = struct.Struct("<iI10h")
TEMPERATURE_SENSORS = ("rx0", "rx1", "rx2", "rx3", "tx0", "tx1", "tx2", "pm", "dig0", "dig1")

_F32 = np.dtype("<f4")
_I16 = np.dtype("<i2")
_U16 = np.dtype("<u2")


@dataclass(frozen=True, slots=True, eq=False)
class TiFrame:
    """One decoded data-UART packet.

    Arrays are read-only views on the frame's own bytes: cheap to make and safe to share between
    the driver and a recorder. `snr_db`/`noise_db` are None when the board was configured without
    side info (TLV 7), so that a caller can tell "unknown" from "0 dB".
    """

    frame_number: int
    version: int
    platform: int
    time_cpu_cycles: int
    subframe: int
    points: NDArray[np.float32]  # (N, 4): x, y, z [m], doppler [m/s, positive = moving away]
    snr_db: NDArray[np.float64] | None = None
    noise_db: NDArray[np.float64] | None = None
    range_profile: NDArray[np.uint16] | None = None
    noise_profile: NDArray[np.uint16] | None = None
    stats: dict[str, int] | None = None
    temperature: dict[str, int] | None = None

    @property
    def n_points(self) -> int:
        return int(self.points.shape[0])


class _Malformed(Exception):
    """Internal: the frame's structure is inconsistent; the parser counts it and drops the frame."""


def _header_ok(version: int, total_len: int, num_tlvs: int, subframe: int) -> bool:
    """Reject false syncs: the magic word alone is only 64 bits of evidence."""
    return (
        (version >> 24) in KNOWN_MAJOR_VERSIONS
        and HEADER_LEN <= total_len <= MAX_FRAME_LEN
        and total_len % SEGMENT_LEN == 0
        and HEADER_LEN + TL.size * num_tlvs <= total_len
        and subframe < MAX_SUBFRAMES
    )


def _decode(frame: bytes) -> tuple[TiFrame, int]:
    """Decode one frame; return it and where its TLVs end. Raise _Malformed if inconsistent.

    `frame` may be shorter than totalPacketLen when the next frame starts inside it: then the TLVs
    must fit in what is there (only padding may be missing).
    """
    _, version, _, platform, number, cycles, num_obj, num_tlvs, subframe = HEADER.unpack_from(frame)
    total_len = len(frame)
    off = HEADER_LEN
    points = np.empty((0, 4), dtype=_F32)
    side: NDArray[np.int16] | None = None
    range_profile: NDArray[np.uint16] | None = None
    noise_profile: NDArray[np.uint16] | None = None
    stats: dict[str, int] | None = None
    temperature: dict[str, int] | None = None
    have_points = False
    for _ in range(num_tlvs):
        if off + TL.size > total_len:
            raise _Malformed("TLV header past the frame end")
        tlv_type, length = TL.unpack_from(frame, off)
        off += TL.size
        if length > total_len - off:
            raise _Malformed("TLV payload past the frame end")
        if tlv_type == TLV_DETECTED_POINTS:
            if length % 16 or length // 16 != num_obj:
                raise _Malformed("TLV 1 length disagrees with numDetectedObj")
            points = np.frombuffer(frame, _F32, length // 4, off).reshape(-1, 4)
            have_points = True
        elif tlv_type == TLV_SIDE_INFO:
            if length % 4:
                raise _Malformed("TLV 7 length not a multiple of 4")
            side = np.frombuffer(frame, _I16, length // 2, off).reshape(-1, 2)
        elif tlv_type in (TLV_RANGE_PROFILE, TLV_NOISE_PROFILE):
            if length % 2:
                raise _Malformed("profile TLV of odd length")
            profile = np.frombuffer(frame, _U16, length // 2, off)
            if tlv_type == TLV_RANGE_PROFILE:
                range_profile = profile
            else:
                noise_profile = profile
        elif tlv_type == TLV_STATS:
            if length != STATS.size:
                raise _Malformed("TLV 6 of wrong length")
            stats = dict(zip(STATS_KEYS, STATS.unpack_from(frame, off), strict=True))
        elif tlv_type == TLV_TEMPERATURE:
            if length != TEMPERATURE.size:
                raise _Malformed("TLV 9 of wrong length")
            valid, time_ms, *temps = TEMPERATURE.unpack_from(frame, off)
            temperature = {"report_valid": valid, "time_ms": time_ms}
            temperature.update(zip(TEMPERATURE_SENSORS, temps, strict=True))
        off += length
    n = points.shape[0] if have_points else 0
    snr = noise = None
    if side is not None:
        if side.shape[0] != n:
            raise _Malformed("TLV 7 count disagrees with TLV 1")
        snr = side[:, 0].astype(np.float64) * 0.1
        noise = side[:, 1].astype(np.float64) * 0.1
    frame_record = TiFrame(
        frame_number=number,
        version=version,
        platform=platform,
        time_cpu_cycles=cycles,
        subframe=subframe,
        points=points,
        snr_db=snr,
        noise_db=noise,
        range_profile=range_profile,
        noise_profile=noise_profile,
        stats=stats,
        temperature=temperature,
    )
    return frame_record, off


class TiFrameParser:
    """Stream parser for the data UART: bytes in, `TiFrame`s out (a `drivers.parsing.Parser`).

    The buffer is bounded by `BUFFER_CAP` whatever the input, because `feed` takes large inputs in
    slices; what stays buffered between slices is at most one partial frame plus a header.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scan = len(MAGIC)  # where the in-frame magic search resumes for the frame at buf[0]
        self._lost = False  # bytes were discarded since the last good frame
        self._padding = 0  # padding of the last frame still to skip without counting it as dropped
        self._last_frame: int | None = None
        self._counts = dict.fromkeys(
            ("frames", "resyncs", "dropped_bytes", "dropped_frames", "frame_gaps", "points"), 0
        )
        self.buffer_high_water = 0

    @property
    def counters(self) -> dict[str, int]:
        """frames, points; dropped_bytes (garbage and dropped frames, padding excluded);
        dropped_frames (cut short or inconsistent); resyncs (good frames reached after a loss);
        frame_gaps (frame numbers skipped between consecutive frames; a restart is not a gap)."""
        return dict(self._counts)

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[TiFrame]:
        out: list[TiFrame] = []
        view = memoryview(data)
        pos = 0
        while True:
            room = BUFFER_CAP - len(self._buf)
            chunk = view[pos : pos + room]
            pos += len(chunk)
            self._buf += chunk
            self.buffer_high_water = max(self.buffer_high_water, len(self._buf))
            self._process(out)
            if pos >= len(view):
                return out

    def _discard(self, n: int) -> None:
        del self._buf[:n]
        self._scan = len(MAGIC)
        padding = min(n, self._padding)
        self._padding -= padding
        if n > padding:
            self._counts["dropped_bytes"] += n - padding
            self._lost = True

    def _process(self, out: list[TiFrame]) -> None:
        buf = self._buf
        counts = self._counts
        while True:
            i = buf.find(MAGIC)
            if i < 0:
                # Keep a tail that may be the start of a magic word split across reads.
                if len(buf) > len(MAGIC) - 1:
                    self._discard(len(buf) - (len(MAGIC) - 1))
                return
            if i:
                self._discard(i)
            self._padding = 0
            if len(buf) < HEADER_LEN:
                return
            _, version, total_len, _, _, _, _, num_tlvs, subframe = HEADER.unpack_from(buf)
            if not _header_ok(version, total_len, num_tlvs, subframe):
                self._discard(len(MAGIC))
                continue
            # A frame cut short lets the next frame start inside its declared length: find that
            # start before trusting the length, or the short frame would swallow an intact one.
            # The frame before it is kept only if its TLVs fit before it (only padding was lost).
            nxt = self._next_start(total_len)
            if nxt == -1:  # a candidate start whose header has not fully arrived yet
                return
            if nxt == 0 and len(buf) < total_len:
                return
            end = nxt or total_len
            try:
                frame, tlv_end = _decode(bytes(buf[:end]))
            except (_Malformed, ValueError, struct.error):
                counts["dropped_frames"] += 1
                self._discard(end)
                continue
            # Consume only the TLVs and skip the padding through the magic search, so that a next
            # frame starting inside the padding (bytes lost) is found however the input was split.
            del buf[:tlv_end]
            self._scan = len(MAGIC)
            self._padding = end - tlv_end
            self._accept(frame, out)

    def _next_start(self, total_len: int) -> int:
        """Offset of a validated frame start inside buf[8:total_len], 0 if none, -1 if undecided."""
        buf = self._buf
        end = min(total_len + len(MAGIC) - 1, len(buf))
        start = max(self._scan, len(MAGIC))
        while True:
            j = buf.find(MAGIC, start, end)
            if j < 0:
                # Resume later where an unfinished magic word could still begin.
                self._scan = max(len(MAGIC), end - (len(MAGIC) - 1))
                return 0
            if len(buf) < j + HEADER_LEN:
                self._scan = j
                return -1
            _, version, length, _, _, _, _, num_tlvs, subframe = HEADER.unpack_from(buf, j)
            if _header_ok(version, length, num_tlvs, subframe):
                return j
            start = j + 1

    def _accept(self, frame: TiFrame, out: list[TiFrame]) -> None:
        counts = self._counts
        counts["frames"] += 1
        counts["points"] += frame.n_points
        if self._lost:
            counts["resyncs"] += 1
            self._lost = False
        if self._last_frame is not None:
            delta = (frame.frame_number - self._last_frame) & 0xFFFFFFFF
            if 1 < delta < 1 << 31:  # larger steps mean a restart or a step back, not lost frames
                counts["frame_gaps"] += delta - 1
        self._last_frame = frame.frame_number
        out.append(frame)


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
    return np.clip(raw, -32768, 32767).astype(_I16)


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
    pts = np.asarray(points, dtype=_F32).reshape(-1, 4)
    n = pts.shape[0]
    tlvs: list[bytes] = []
    if n:
        tlvs.append(_tlv(TLV_DETECTED_POINTS, pts.tobytes()))
        if snr_db is not None or noise_db is not None:
            side = np.empty((n, 2), dtype=_I16)
            side[:, 0] = _to_raw_db(np.zeros(n) if snr_db is None else snr_db, n, "snr_db")
            side[:, 1] = _to_raw_db(np.zeros(n) if noise_db is None else noise_db, n, "noise_db")
            tlvs.append(_tlv(TLV_SIDE_INFO, side.tobytes()))
    if range_profile is not None:
        tlvs.append(_tlv(TLV_RANGE_PROFILE, np.asarray(range_profile, dtype=_U16).tobytes()))
    if noise_profile is not None:
        tlvs.append(_tlv(TLV_NOISE_PROFILE, np.asarray(noise_profile, dtype=_U16).tobytes()))
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
