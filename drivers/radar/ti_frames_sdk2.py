"""TI mmWave SDK 2.0/2.1 out-of-box demo: what its data-UART frames hold beyond the SDK 3.x framing.

`ti_frames.TiFrameParser` finds and frames both formats (magic word, `totalPacketLen`, padding to a
multiple of 32) and picks this decoder by the header's `version` (0xMMmmbbpp: major 2, minor 0 or
1). From TI's `packages/ti/demo/io_interface/mmw_output.h` and `detected_obj.h` (the same in SDK
1.2.0.5 and 2.1.0.4) and the demos' transmit functions (xwr14xx `main.c`, xwr16xx `dss_main.c` and
`mss_main.c`):

- the header's fields are those of SDK 3.x up to `numTLVs`; `subFrameNumber` is compiled in for
  `SOC_XWR16XX` only, so an xWR14xx header (platform 0xA1443) is 36 bytes and an xWR16xx one 40;
- a TLV is {u32 type, u32 length} and `length` counts the payload only, as in SDK 3.x (TI's lab
  demos such as people counting count the TLV header too, but they also have another frame header
  and are not this format);
- type 1 is a descriptor {u16 numDetetedObj, u16 xyzQFormat} and then one 12-byte record per object
  {u16 rangeIdx, i16 dopplerIdx, u16 peakVal, i16 x, i16 y, i16 z}: x, y, z in metres as signed
  fixed point with `xyzQFormat` fraction bits (the demo picks ceil(log2(16 m / range
  resolution))), `dopplerIdx` a signed Doppler FFT bin (positive = moving away) and `peakVal` the
  detection matrix's value at the peak (a sum of log2 magnitudes, not an SNR in dB); there is no
  TLV 7 (SNR, noise) and no TLV 9 (temperature);
- types 2 and 3 are u16 range and noise profiles, 4 and 5 heat maps (skipped here), 6 the same six
  u32 stats as SDK 3.x.

Sans-IO and independent of `ti_frames` (which imports it): it decodes a frame's TLVs into arrays,
and the parser builds the frame (`ti_frames.TiFrameSdk2`). It also holds what the node says about
the versions it does not decode (`unsupported_version_message`), which `decode`, the driver's
health and `doctor` share.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

SDK2_MINORS = frozenset({0, 1})  # the SDK 2.x releases: 2.0.0.4 and 2.1.0.4
SUPPORTED_VERSIONS = "2.0, 2.1, 3.x"  # all that `ti_frames.TiFrameParser` decodes
PLATFORM_XWR14XX = 0xA1443
HEADER_LEN_XWR14XX = 36  # magic word and 7 u32, no subFrameNumber
HEADER_LEN_OTHER = 40
TL = struct.Struct("<II")
OBJ_DESCR = struct.Struct("<HH")
OBJECT = np.dtype(
    [
        ("range_idx", "<u2"),
        ("doppler_idx", "<i2"),
        ("peak_val", "<u2"),
        ("x", "<i2"),
        ("y", "<i2"),
        ("z", "<i2"),
    ]
)
MAX_Q_FORMAT = 31
STATS = struct.Struct("<6I")  # MmwDemo_output_message_stats, the same six fields as in SDK 3.x

TLV_DETECTED_POINTS = 1
TLV_RANGE_PROFILE = 2
TLV_NOISE_PROFILE = 3
TLV_STATS = 6

U16 = np.dtype("<u2")


def is_sdk2(version: int) -> bool:
    """An SDK 2.0 or 2.1 header version (0x02000004, 0x02010004)."""
    return version >> 24 == 2 and (version >> 16) & 0xFF in SDK2_MINORS


def version_text(version: int) -> str:
    """The header's version as TI writes it: 0x02010004 is "2.1.0.4"."""
    return ".".join(str(version >> shift & 0xFF) for shift in (24, 16, 8, 0))


def unsupported_version_message(version: int) -> str:
    """What the node says about frames of a version it does not decode, and what to do."""
    return (
        f"the radar sends frames of mmWave SDK {version_text(version)} (header version 0x{version:08X}), "
        "which cuas-node does not decode: flash the mmWave SDK 3.x out-of-box demo (e.g. "
        f"xwr68xx_mmw_demo.bin, xwr16xx_mmw_demo.bin) or an SDK 2.0/2.1 one (supported: {SUPPORTED_VERSIONS})"
    )


def header_len(platform: int) -> int:
    """Where the TLVs start: 36 bytes on xWR14xx, which has no subFrameNumber, else 40."""
    return HEADER_LEN_XWR14XX if platform == PLATFORM_XWR14XX else HEADER_LEN_OTHER


class Malformed(ValueError):
    """The frame's TLVs are inconsistent; the parser counts the frame as dropped."""


@dataclass(frozen=True, slots=True, eq=False)
class Sdk2Tlvs:
    """The TLVs of one SDK 2.x frame, as read-only views on its bytes where they are arrays."""

    objects: NDArray[np.void] | None  # OBJECT records, None without TLV 1
    q_format: int | None
    range_profile: NDArray[np.uint16] | None
    noise_profile: NDArray[np.uint16] | None
    stats: tuple[int, ...] | None
    end: int  # where the TLVs end (the padding starts)


def decode_tlvs(frame: bytes, start: int, num_tlvs: int, num_obj: int) -> Sdk2Tlvs:
    """The TLVs of `frame` from `start` on; raise `Malformed` when they do not fit or disagree."""
    total_len = len(frame)
    off = start
    objects: NDArray[np.void] | None = None
    q_format: int | None = None
    range_profile: NDArray[np.uint16] | None = None
    noise_profile: NDArray[np.uint16] | None = None
    stats: tuple[int, ...] | None = None
    for _ in range(num_tlvs):
        if off + TL.size > total_len:
            raise Malformed("TLV header past the frame end")
        tlv_type, length = TL.unpack_from(frame, off)
        off += TL.size
        if length > total_len - off:
            raise Malformed("TLV payload past the frame end")
        if tlv_type == TLV_DETECTED_POINTS:
            if length < OBJ_DESCR.size:
                raise Malformed("TLV 1 shorter than its descriptor")
            n, q_format = OBJ_DESCR.unpack_from(frame, off)
            if length != OBJ_DESCR.size + n * OBJECT.itemsize or n != num_obj or q_format > MAX_Q_FORMAT:
                raise Malformed("TLV 1 descriptor disagrees with its length or numDetectedObj")
            objects = np.frombuffer(frame, OBJECT, n, off + OBJ_DESCR.size)
        elif tlv_type in (TLV_RANGE_PROFILE, TLV_NOISE_PROFILE):
            if length % 2:
                raise Malformed("profile TLV of odd length")
            profile = np.frombuffer(frame, U16, length // 2, off)
            if tlv_type == TLV_RANGE_PROFILE:
                range_profile = profile
            else:
                noise_profile = profile
        elif tlv_type == TLV_STATS:
            if length != STATS.size:
                raise Malformed("TLV 6 of wrong length")
            stats = STATS.unpack_from(frame, off)
        off += length
    return Sdk2Tlvs(objects, q_format, range_profile, noise_profile, stats, off)


def to_points(objects: NDArray[np.void], q_format: int, doppler_bin_mps: float | None) -> NDArray[np.float32]:
    """(N, 4) x, y, z [m], doppler [m/s]: the fixed-point coordinates scaled by 2^-q (exact in
    float32), the Doppler bin times its width, NaN when the width is not known."""
    out = np.empty((objects.shape[0], 4), dtype=np.float32)
    scale = 2.0**-q_format
    for k, name in enumerate(("x", "y", "z")):
        out[:, k] = objects[name] * scale
    out[:, 3] = np.nan if doppler_bin_mps is None else objects["doppler_idx"] * doppler_bin_mps
    out.flags.writeable = False
    return out


def to_fixed(values: NDArray[np.float64], q_format: int) -> NDArray[np.int16]:
    """Metres to the wire's Q(q_format) int16 as the demo rounds them (half away from zero);
    `ValueError` when a value does not fit."""
    scaled = np.asarray(values, dtype=np.float64) * 2.0**q_format
    raw = np.trunc(scaled + np.copysign(0.5, scaled))
    if raw.size and (not np.all(np.isfinite(raw)) or raw.min() < -32768 or raw.max() > 32767):
        raise ValueError(f"coordinates do not fit int16 in Q{q_format}: use a smaller xyz_q_format")
    return raw.astype("<i2")


def fitting_q_format(xyz: NDArray[np.float64]) -> int:
    """The finest Q format (at most 15) in which every coordinate fits an int16."""
    peak = float(np.max(np.abs(xyz))) if xyz.size else 0.0
    q = 15
    while q > 0 and peak * 2.0**q + 0.5 > 32767:
        q -= 1
    return q
