"""TI mmWave out-of-box demo: the data-UART frame format (protocols.md section 1.1.3), SDK 3.x and 2.x.

The data UART is a raw byte stream with no checksum, so the only integrity we get is structural:
the magic word, a sane header, TLVs that fit inside the declared length, and the absence of another
frame's start inside this one. The parser is sans-IO so it can be fed recorded bytes and fuzzed,
and it counts every problem instead of raising: a radar that emits a glitch must not stop the node.

The header's `version` (0xMMmmbbpp: 0x03040003 is SDK 3.4.0.3) selects the format: SDK 3.x as
below, SDK 2.0/2.1 by `ti_frames_sdk2`. A well-formed frame of another version is skipped whole and
counted in `unsupported_version`, not as garbage, so that a firmware the node does not speak is not
mistaken for a wrong baud rate (`ti_frames_sdk2.unsupported_version_message` says what to do).

Its inverse, `ti_encode.encode_frame`, writes the exact same layouts for the simulator; `ti_decode`
is `cuas-node decode ti-mmwave`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from cuas_node.drivers.radar import ti_frames_sdk2 as sdk2

MAGIC = b"\x02\x01\x04\x03\x06\x05\x08\x07"
_MAGIC_PREFIX_LAST_BYTES = frozenset(MAGIC[:-1])  # how the first 1-7 bytes of a magic word can end
HEADER = struct.Struct("<8s8I")
HEADER_LEN = HEADER.size  # 40; 36 for SDK 2.x on xWR14xx (sdk2.HEADER_LEN_XWR14XX)
_HEADER_XWR14XX = struct.Struct("<8s7I")
TL = struct.Struct("<II")
SEGMENT_LEN = 32  # MMWDEMO_OUTPUT_MSG_SEGMENT_LEN: frames are padded to a multiple of this
MAX_FRAME_LEN = 64 * 1024
BUFFER_CAP = 2 * MAX_FRAME_LEN
MAX_SUBFRAMES = 4  # RL_MAX_SUBFRAMES: advanced frame config has sub-frames 0..3

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

F32 = np.dtype("<f4")
I16 = np.dtype("<i2")
U16 = np.dtype("<u2")


@dataclass(frozen=True, slots=True, eq=False)
class TiFrame:
    """One decoded data-UART packet.

    Arrays are read-only views on the frame's own bytes: cheap to make and safe to share between
    the driver and a recorder. `snr_db`/`noise_db` are None when the board was configured without
    side info (TLV 7), and always for SDK 2.x (`TiFrameSdk2`), so that a caller can tell "unknown"
    from "0 dB".
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


@dataclass(frozen=True, slots=True, eq=False)
class TiFrameSdk2(TiFrame):
    """An SDK 2.x frame (a subclass, so that SDK 3.x frames cost nothing more): it also keeps its
    type-1 records as sent (`sdk2_objects`, fields of `ti_frames_sdk2.OBJECT`: range_idx,
    doppler_idx, peak_val, x, y, z; None without TLV 1) and their `xyz_q_format`. Its `points`
    doppler is the Doppler bin times the parser's `doppler_bin_mps`, NaN without it."""

    sdk2_objects: NDArray[np.void] | None = None
    xyz_q_format: int | None = None


class _Malformed(Exception):
    """Internal: the frame's structure is inconsistent; the parser counts it and drops the frame."""


_FRAME, _UNSUPPORTED = 1, 2


def _classify(version: int, total_len: int, platform: int, num_tlvs: int, subframe: int) -> int:
    """_FRAME for a sane header of a supported version, _UNSUPPORTED for a sane one of another
    version, 0 for a false sync (the magic word alone is only 64 bits of evidence)."""
    if version >> 24 == 3:  # the common case first
        ok = HEADER_LEN + 8 * num_tlvs <= total_len <= MAX_FRAME_LEN and not total_len % SEGMENT_LEN
        return _FRAME if ok and subframe < MAX_SUBFRAMES else 0
    tlv_headers = TL.size * num_tlvs
    shortest = sdk2.HEADER_LEN_XWR14XX + tlv_headers
    if not (shortest <= total_len <= MAX_FRAME_LEN and total_len % SEGMENT_LEN == 0):
        return 0
    if not sdk2.is_sdk2(version):
        return _UNSUPPORTED
    if sdk2.header_len(platform) < HEADER_LEN:
        return _FRAME  # xWR14xx: no subFrameNumber, and its header length was checked above
    return _FRAME if HEADER_LEN + tlv_headers <= total_len and subframe < MAX_SUBFRAMES else 0


def _decode(frame: bytes, doppler_bin_mps: float | None) -> tuple[TiFrame, int]:
    """Decode one frame; return it and where its TLVs end. Raise _Malformed (or a ValueError) if
    inconsistent.

    `frame` may be shorter than totalPacketLen when the next frame starts inside it: then the TLVs
    must fit in what is there (only padding may be missing).
    """
    if _HEADER_XWR14XX.unpack_from(frame)[1] >> 24 != 3:  # whose header may be 36 bytes
        return _decode_sdk2(frame, doppler_bin_mps)
    _, version, _, platform, number, cycles, num_obj, num_tlvs, subframe = HEADER.unpack_from(frame)
    total_len = len(frame)
    off = HEADER_LEN
    points = np.empty((0, 4), dtype=F32)
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
            points = np.frombuffer(frame, F32, length // 4, off).reshape(-1, 4)
            have_points = True
        elif tlv_type == TLV_SIDE_INFO:
            if length % 4:
                raise _Malformed("TLV 7 length not a multiple of 4")
            side = np.frombuffer(frame, I16, length // 2, off).reshape(-1, 2)
        elif tlv_type in (TLV_RANGE_PROFILE, TLV_NOISE_PROFILE):
            if length % 2:
                raise _Malformed("profile TLV of odd length")
            profile = np.frombuffer(frame, U16, length // 2, off)
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


def _decode_sdk2(frame: bytes, doppler_bin_mps: float | None) -> tuple[TiFrame, int]:
    """An xWR14xx frame has a 36-byte header: one cut short by the next frame's start after its
    TLVs may hold fewer than 40 bytes, and is kept like any other."""
    _, version, _, platform, number, cycles, num_obj, num_tlvs = _HEADER_XWR14XX.unpack_from(frame)
    start = sdk2.header_len(platform)
    subframe = HEADER.unpack_from(frame)[8] if start == HEADER_LEN else 0
    tlvs = sdk2.decode_tlvs(frame, start, num_tlvs, num_obj)
    points = np.empty((0, 4), dtype=F32)
    if tlvs.objects is not None and tlvs.q_format is not None:
        points = sdk2.to_points(tlvs.objects, tlvs.q_format, doppler_bin_mps)
    stats = None if tlvs.stats is None else dict(zip(STATS_KEYS, tlvs.stats, strict=True))
    frame_record = TiFrameSdk2(
        frame_number=number,
        version=version,
        platform=platform,
        time_cpu_cycles=cycles,
        subframe=subframe,
        points=points,
        range_profile=tlvs.range_profile,
        noise_profile=tlvs.noise_profile,
        stats=stats,
        sdk2_objects=tlvs.objects,
        xyz_q_format=tlvs.q_format,
    )
    return frame_record, tlvs.end


class TiFrameParser:
    """Stream parser for the data UART: bytes in, `TiFrame`s out (a `drivers.parsing.Parser`).

    The buffer is bounded by `BUFFER_CAP` whatever the input, because `feed` takes large inputs in
    slices; what stays buffered between slices is at most one partial frame plus a header.

    `doppler_bin_mps` is the width of one Doppler FFT bin of the chirp profile the board runs: SDK
    2.x frames carry Doppler as a bin index, and without it their doppler is NaN. The version of the
    last well-formed frame that no decoder speaks is kept in `unsupported_version`.
    """

    def __init__(self, doppler_bin_mps: float | None = None) -> None:
        self.doppler_bin_mps = doppler_bin_mps
        self.unsupported_version: int | None = None
        self._buf = bytearray()
        self._scan = len(MAGIC)  # where the in-frame magic search resumes for the frame at buf[0]
        self._lost = False  # bytes were discarded since the last good frame
        self._padding = 0  # padding of the last frame still to skip without counting it as dropped
        self._last_frame: int | None = None
        names = "frames resyncs dropped_bytes dropped_frames frame_gaps points unsupported_version"
        self._counts = dict.fromkeys(names.split(), 0)
        self.buffer_high_water = 0

    @property
    def counters(self) -> dict[str, int]:
        """frames, points; dropped_bytes (garbage and dropped frames, padding excluded);
        dropped_frames (cut short or inconsistent); resyncs (good frames reached after a loss);
        frame_gaps (frame numbers skipped between consecutive frames; a restart is not a gap);
        unsupported_version (well-formed frames of a version no decoder speaks, skipped whole: they
        are neither garbage nor dropped, so a wrong firmware is not mistaken for a wrong baud rate).

        Like the frames, they depend only on the bytes fed, not on how they were split into reads:
        the `buffered` bytes, still undecided, are in none of them yet."""
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
            _, version, total_len, platform, _, _, _, num_tlvs, subframe = HEADER.unpack_from(buf)
            kind = _classify(version, total_len, platform, num_tlvs, subframe)
            if not kind:
                self._discard(len(MAGIC))
                continue
            # A frame cut short lets the next frame start inside its declared length: find that
            # start before trusting the length, or the short frame would swallow an intact one.
            # The frame before it is kept only if its TLVs fit before it (only padding was lost).
            # Every decision depends only on bytes that have arrived and that the bytes still to
            # come cannot change, so that frames and counters are the same however the reads split
            # the stream: a start counts only if its magic word lies inside the declared length.
            nxt = self._next_start(total_len)
            if nxt > 0:
                end, undecided, tail = nxt, 0, 0
            elif len(buf) < total_len:
                return
            else:
                end, undecided, tail = total_len, -nxt, 0
                if buf[total_len - 1] in _MAGIC_PREFIX_LAST_BYTES:  # a cheap test first
                    tail = self._tail_start(total_len)
            if kind == _UNSUPPORTED:
                if undecided:
                    return  # like a dropped frame: the start decides how many bytes it has
                self._skip_unsupported(version, tail or end, end)
                continue
            try:
                frame, tlv_end = _decode(bytes(buf[:end]), self.doppler_bin_mps)
            except (_Malformed, ValueError, struct.error):
                if undecided:
                    return  # whether to drop `undecided` or `end` bytes depends on that start
                counts["dropped_frames"] += 1
                self._discard(tail or end)
                continue
            if tlv_end > undecided > 0:
                return  # a start inside the TLVs, its header not all here: it decides the frame
            # Consume only the TLVs and skip the padding through the magic search, so that a next
            # frame starting inside the padding (bytes lost) is found however the input was split;
            # a magic word begun in the last bytes may be a next frame's even inside the TLVs.
            used = min(tlv_end, tail) if tail else tlv_end
            del buf[:used]
            self._scan = len(MAGIC)
            self._padding = end - used
            self._accept(frame, out)

    def _next_start(self, total_len: int) -> int:
        """Offset of a validated frame start (its magic word) inside buf[8:total_len], 0 if none;
        if a candidate start's header has not fully arrived yet, minus its offset."""
        buf = self._buf
        end = min(total_len, len(buf))
        start = max(self._scan, len(MAGIC))
        while True:
            j = buf.find(MAGIC, start, end)
            if j < 0:
                # Resume later where an unfinished magic word could still begin.
                self._scan = max(len(MAGIC), end - (len(MAGIC) - 1))
                return 0
            if len(buf) < j + HEADER_LEN:
                self._scan = j
                return -j
            _, version, length, platform, _, _, _, num_tlvs, subframe = HEADER.unpack_from(buf, j)
            if _classify(version, length, platform, num_tlvs, subframe):
                return j
            start = j + 1

    def _tail_start(self, end: int) -> int:
        """Where buf[:end] ends with the first 1-7 bytes of a magic word, else 0.

        A frame cut short by fewer than 8 bytes has the next frame's magic word run past its
        declared end; that cannot be known until later bytes arrive, and waiting for them would
        hold back every intact frame that happens to end so (noise values of 51.2-76.7 dB end in
        0x02), so the frame is judged on its declared bytes and the search for the next frame
        resumes here. The magic word's bytes are all different: at most one such prefix ends it.
        """
        j = self._buf.rfind(MAGIC[0], end - (len(MAGIC) - 1), end)
        return j if j > 0 and MAGIC.startswith(self._buf[j:end]) else 0

    def _skip_unsupported(self, version: int, used: int, end: int) -> None:
        """Consume a well-formed frame of an unsupported version like a frame (a magic word begun in
        its last bytes may be the next frame's), counting it, not its bytes."""
        del self._buf[:used]
        self._scan = len(MAGIC)
        self._padding = end - used
        self._counts["unsupported_version"] += 1
        self.unsupported_version = version

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
