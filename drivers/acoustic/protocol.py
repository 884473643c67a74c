"""The acoustic array's wire protocol: framed PCM over a serial port (specified in docs/acoustic.md).

A microphone array's front end (an RP2040/STM32/Teensy reading I2S/TDM microphones, or a Pi-side
bridge reading ALSA) sends fixed-layout frames: a 32-byte header protected by its own CRC-32, the
interleaved int16 samples, then a CRC-32 over header and payload. The header CRC lets the parser
reject a corrupted length at once instead of waiting for up to a frame's worth of bytes; the frame
CRC catches payload corruption, which would otherwise become a false bearing. The sequence number
turns frames lost in transit into a counted gap so that the driver never stitches two non-adjacent
stretches of audio into one block (that would look like a phase jump to the direction finder).

The parser is sans-IO and never raises: bytes in, `PcmFrame`s out, problems counted.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

MAGIC = b"CUAF"
VERSION = 1
FORMAT_S16LE = 1
HEADER = struct.Struct(
    "<4sBBBBIIQHH"
)  # magic, version, channels, format, reserved, rate, seq, t_us, n, flags
HEADER_LEN = HEADER.size + 4  # 28 + header CRC-32 = 32
CRC = struct.Struct("<I")
MAX_CHANNELS = 32
MAX_SAMPLES = 4096
MIN_RATE_HZ = 4000
MAX_RATE_HZ = 192000
MAX_FRAME_LEN = HEADER_LEN + MAX_CHANNELS * MAX_SAMPLES * 2 + CRC.size
BUFFER_CAP = 2 * MAX_FRAME_LEN
SEQ_MOD = 1 << 32
FLAG_UTC = 0x0001  # timestamp_us is UTC (PPS/NTP disciplined), not the front end's free-running clock

_S16 = np.dtype("<i2")


@dataclass(frozen=True, slots=True, eq=False)
class PcmFrame:
    """One decoded frame. `samples` is (n_samples, channels) int16, a read-only view on the bytes.

    `gap` is the number of frames lost just before this one (0 when the sequence is contiguous, or
    for the first frame); `restart` is True when the sequence jumped backwards (a front-end reboot).
    """

    sequence: int
    timestamp_us: int
    sample_rate: int
    channels: int
    flags: int
    samples: NDArray[np.int16]
    gap: int = 0
    restart: bool = False

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def utc(self) -> bool:
        return bool(self.flags & FLAG_UTC)


def encode_frame(
    samples: ArrayLike,
    sample_rate: int,
    sequence: int,
    timestamp_us: int,
    *,
    flags: int = 0,
) -> bytes:
    """One frame for (n_samples, channels) samples; float input is rounded and clipped to int16."""
    arr = np.asarray(samples)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.dtype.kind == "f":
        arr = np.clip(np.rint(arr), -32768, 32767)
    data = np.ascontiguousarray(arr, dtype=_S16)
    n, channels = data.shape
    if not 1 <= channels <= MAX_CHANNELS or not 1 <= n <= MAX_SAMPLES:
        raise ValueError(f"frame of {n} samples x {channels} channels is outside the protocol limits")
    head = HEADER.pack(
        MAGIC, VERSION, channels, FORMAT_S16LE, 0, sample_rate, sequence % SEQ_MOD, timestamp_us, n, flags
    )
    head += CRC.pack(zlib.crc32(head))
    body = head + data.tobytes()
    return body + CRC.pack(zlib.crc32(body))


class PcmFrameParser:
    """Byte stream → `PcmFrame`s; resynchronises on the magic word after any corruption."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._last_seq: int | None = None
        self._dropping = False  # bytes were dropped since the last good frame
        self._counts = dict.fromkeys(
            (
                "frames",
                "bytes",
                "dropped_bytes",
                "resyncs",
                "header_crc_errors",
                "crc_errors",
                "unsupported",
                "dropped_frames",
                "sequence_restarts",
            ),
            0,
        )

    @property
    def counters(self) -> dict[str, int]:
        return dict(self._counts)

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[PcmFrame]:
        self._counts["bytes"] += len(data)
        self._buf += data
        out: list[PcmFrame] = []
        buf = self._buf
        counts = self._counts
        pos = 0
        while True:
            start = buf.find(MAGIC, pos)
            if start < 0:
                # Keep a possible partial magic at the end; everything before it is garbage.
                keep = min(len(buf) - pos, len(MAGIC) - 1)
                self._drop(len(buf) - pos - keep)
                pos = len(buf) - keep
                break
            if start > pos:
                self._drop(start - pos)
            pos = start
            if len(buf) - pos < HEADER_LEN:
                break
            fields = HEADER.unpack_from(buf, pos)
            (header_crc,) = CRC.unpack_from(buf, pos + HEADER.size)
            if zlib.crc32(memoryview(buf)[pos : pos + HEADER.size]) != header_crc:
                counts["header_crc_errors"] += 1
                counts["dropped_bytes"] += 1
                pos += 1  # the magic was a coincidence or the header is damaged: look further on
                continue
            _, version, channels, fmt, _, rate, seq, t_us, n, flags = fields
            if (
                version != VERSION
                or fmt != FORMAT_S16LE
                or not 1 <= channels <= MAX_CHANNELS
                or not 1 <= n <= MAX_SAMPLES
                or not MIN_RATE_HZ <= rate <= MAX_RATE_HZ
            ):
                counts["unsupported"] += 1
                counts["dropped_bytes"] += 1
                pos += 1
                continue
            end = pos + HEADER_LEN + channels * n * 2
            if len(buf) - end < CRC.size:
                break
            (crc,) = CRC.unpack_from(buf, end)
            if zlib.crc32(memoryview(buf)[pos:end]) != crc:
                counts["crc_errors"] += 1
                counts["dropped_bytes"] += 1
                pos += 1
                continue
            payload = bytes(buf[pos + HEADER_LEN : end])
            samples = np.frombuffer(payload, dtype=_S16).reshape(n, channels)
            out.append(self._accept(seq, t_us, rate, channels, flags, samples))
            pos = end + CRC.size
        del buf[:pos]
        if len(buf) > BUFFER_CAP:  # cannot happen with sane limits; a guard against unbounded growth
            self._drop(len(buf) - MAX_FRAME_LEN)
            del buf[: len(buf) - MAX_FRAME_LEN]
        return out

    def _drop(self, n: int) -> None:
        if n > 0:
            self._counts["dropped_bytes"] += n
            # One resync per run of garbage between good frames, however the reads split it
            # (found by fuzz/fuzz_acoustic.py: it used to count once per feed()).
            if not self._dropping:
                self._counts["resyncs"] += 1
            self._dropping = True

    def _accept(
        self, seq: int, t_us: int, rate: int, channels: int, flags: int, samples: NDArray[np.int16]
    ) -> PcmFrame:
        counts = self._counts
        counts["frames"] += 1
        self._dropping = False
        gap, restart = 0, False
        if self._last_seq is not None:
            delta = (seq - self._last_seq) % SEQ_MOD
            if delta == 0 or delta >= SEQ_MOD // 2:
                restart = True  # repeated or backwards: the front end restarted its counter
                counts["sequence_restarts"] += 1
            else:
                gap = delta - 1
                counts["dropped_frames"] += gap
        self._last_seq = seq
        return PcmFrame(seq, t_us, rate, channels, flags, samples, gap, restart)


def frame_to_json(frame: PcmFrame) -> dict[str, Any]:
    return {
        "type": "frame",
        "sequence": frame.sequence,
        "timestamp_us": frame.timestamp_us,
        "sample_rate": frame.sample_rate,
        "channels": frame.channels,
        "n_samples": frame.n_samples,
        "gap": frame.gap,
    }


def iter_frames(data: bytes) -> Iterator[PcmFrame]:
    """All frames in a recorded byte stream (the parser's own resync applies)."""
    parser = PcmFrameParser()
    yield from parser.feed(data)
