"""`cuas-node decode acoustic FILE` and `cuas-node acoustic score WAV...`.

decode: a capture of the serial stream → one JSON object per source found per processed block
(bearing, likelihood, f0, level, whether it passed the threshold), then one summary object with the
parser's counters. The array geometry is inferred from the channel count unless given.

score: WAV files (mono or multichannel; without a geometry, the channels are put in step on their
strongest common sound and averaged, `steering`; with one, through the array's pipeline as the
node's driver) →
`{"file", "drone_likelihood", "detected", "f0_hz"}`. Files longer than the detector's 1.024 s
window are scored window by window (half-overlapping), by their most drone-like ≈2 s stretch;
`detected` is the detector's own decision, the node's.
"""

from __future__ import annotations

import contextlib
import io
import math
import struct
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.io import wavfile

from cuas_node.drivers.acoustic.detector import Detection, DroneDetector
from cuas_node.drivers.acoustic.driver import BLOCK_S, AcousticArrayDriver, AcousticPipeline
from cuas_node.drivers.acoustic.driver import WINDOW_S as STREAM_WINDOW_S
from cuas_node.drivers.acoustic.geometry import ArrayGeometry, for_channels
from cuas_node.drivers.acoustic.nearfield import CapsuleGains
from cuas_node.drivers.acoustic.protocol import PcmFrameParser
from cuas_node.drivers.acoustic.steering import steered_mono
from cuas_node.drivers.transport import Transport

WINDOW_S = 1.024
FloatArray = npt.NDArray[np.float64]


def _wavfile_read(path: Path) -> tuple[int, npt.NDArray[Any]]:
    """scipy's reader, tolerant of a file cut short mid-frame (a recorder losing power): scipy
    reads a short data chunk, but a partial last frame of 24-bit audio fails its reshape, so then
    the bytes are read again without their last few (up to a frame of 8 channels × 8 bytes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wavfile.WavFileWarning)  # "reached EOF prematurely"
        try:
            return wavfile.read(path)
        except ValueError as first:
            if "reshape" not in str(first):
                raise
            buf = io.BytesIO(Path(path).read_bytes())
            size = buf.seek(0, io.SEEK_END)
            for cut in range(1, min(64, size)):
                buf.truncate(size - cut)  # shorter each time: one copy of the file in all
                buf.seek(0)
                with contextlib.suppress(ValueError):
                    return wavfile.read(buf)
            raise first


def read_wav(path: Path) -> tuple[FloatArray, int]:
    """(n, channels) samples in full-scale units (±1) and the sample rate.

    scipy's reader, not the standard library's `wave`: recorders write what `wave` (Python 3.11)
    refuses, 32-bit float WAVs and WAVE_FORMAT_EXTENSIBLE headers (24-bit and multichannel files
    from field recorders and USB arrays); scipy reads those and PCM of any width. A truncated
    file gives the samples it holds. ValueError naming the file for anything that is not a
    readable PCM or float WAV."""
    try:
        rate, data = _wavfile_read(path)
    except (ValueError, EOFError, struct.error) as exc:
        why = str(exc) or "empty or truncated"
        raise ValueError(f"{path}: not a readable WAV file ({why}); PCM or float WAV expected") from None
    if data.dtype == np.uint8:  # 8-bit PCM is unsigned, centred on 128
        x = (data.astype(np.float64) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.integer):  # left-justified: full scale is the type's
        x = data.astype(np.float64) / float(1 << (8 * data.dtype.itemsize - 1))
    elif np.issubdtype(data.dtype, np.floating):
        x = data.astype(np.float64)
    else:
        raise ValueError(f"{path}: unsupported WAV sample type {data.dtype}")
    if x.ndim == 1:
        x = x[:, None]
    if x.shape[0] == 0:
        raise ValueError(f"{path}: the WAV file holds no samples")
    return x, int(rate)


def _deg(x: float) -> float:
    return round(math.degrees(x), 2)


class _NoTransport:
    """decode feeds bytes itself; the driver never reads."""

    def open(self) -> None: ...
    def read(self, max_bytes: int = 4096) -> bytes:
        return b""

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...

    @property
    def is_open(self) -> bool:
        return False


class _NullClock:
    def now(self) -> float:
        return 0.0

    def monotonic(self) -> float:
        return 0.0

    def sleep(self, seconds: float) -> None: ...


def decode_acoustic(
    data: bytes,
    geometry: ArrayGeometry | str | None = None,
    threshold: float | None = None,
    detector: DroneDetector | None = None,
) -> Iterator[dict[str, Any]]:
    parser = PcmFrameParser()
    frames = parser.feed(data)
    driver: AcousticArrayDriver | None = None
    transport: Transport = _NoTransport()
    for frame in frames:
        if driver is None:
            geo = geometry if geometry is not None else for_channels(frame.channels)
            driver = AcousticArrayDriver(
                "decode", transport, _NullClock(), geometry=geo, threshold=threshold, detector=detector
            )
        for t, src in driver.accept(frame, frame.timestamp_us * 1e-6):
            p, d = src.peak, src.detection
            yield {
                "type": "source",
                "t": round(t, 6),
                "az_deg": _deg(p.az_rad),
                "el_deg": _deg(p.el_rad),
                "sigma_az_deg": _deg(p.sigma_az_rad),
                "sigma_el_deg": _deg(p.sigma_el_rad),
                "snr_db": round(p.snr_db, 2),
                "drone_likelihood": round(d.drone_likelihood, 4),
                "f0_hz": None if d.f0_hz is None else round(d.f0_hz, 1),
                "level_dbfs": round(d.level_dbfs, 2),
                "detected": d.detected,
            }
    counters = parser.counters
    if driver is not None:
        counters.update({k: v for k, v in driver.counters.items() if k not in counters})
    yield {
        "type": "summary",
        "geometry": None if driver is None else driver.geometry.name,
        "counters": counters,
    }


PERSIST_WINDOWS = 3  # ≈ 2 s of audio: a drone is there for seconds, a gust or a door for one window


def score_wav_files(
    paths: Iterable[str | Path], detector: DroneDetector | None = None
) -> Iterator[dict[str, Any]]:
    """`{"file", "drone_likelihood", "detected", "f0_hz"}` per file, decided by `detector` (its
    threshold, its background) exactly as the node decides a block.

    A file of one window (the 1 s clips) is that window. A longer one is cut into half-overlapping
    1.024 s windows and scored by its most drone-like stretch of PERSIST_WINDOWS consecutive
    windows (their mean likelihood): a drone is heard for seconds, so a single gusty or banging
    window in a 10 s ambient recording must not make the whole file a drone, as it does not make
    a track in the node. `f0_hz` is that of the stretch's most drone-like window."""
    det = detector or DroneDetector()
    for path in paths:
        x, rate = read_wav(Path(path))
        yield score_samples(str(path), x, rate, det)


def score_samples(name: str, x: FloatArray, rate: int, det: DroneDetector) -> dict[str, Any]:
    """`score_wav_files`' object for one file's samples (n, channels) already read."""
    mono = steered_mono(x, rate)  # channels in step on their strongest sound, then averaged
    win = int(WINDOW_S * rate)
    starts = range(0, max(1, mono.size - win + 1), max(1, win // 2))
    return _verdict(name, [det.detect(mono[s : s + win], rate) for s in starts], det)


def score_array_samples(name: str, x: FloatArray, pipeline: AcousticPipeline) -> dict[str, Any]:
    """`score_wav_files`' object for a recording of a known array (n, wire channels), scored as
    the node's driver scores its stream (`array_window_detections`), then the file's verdict as
    for one beam."""
    return _verdict(name, array_window_detections(x, pipeline), pipeline.detector)


def array_window_detections(
    x: FloatArray, pipeline: AcousticPipeline, unheard: Callable[[FloatArray], Detection] | None = None
) -> list[Detection]:
    """Per 1 s window every 0.5 s of a recording of the pipeline's array (n, wire channels), its
    most drone-like source's detection, as the node's driver decides on its stream: direction
    finding, the beam, the array's evidence, its capsule levels learnt over the recording. The node
    raises a bearing for any source over the threshold, so the window's most drone-like source is
    what a false alarm of that window is made of. Shared by `acoustic score` and the site background
    learnt through the array (`ArrayScorer`): one scorer for both. `unheard`: what a window whose
    detection carries no spectrum (no source found) is taken as instead, given its microphones."""
    geo = pipeline.geometry
    if x.shape[1] < geo.min_channels:
        raise ValueError(
            f"{x.shape[1]} channels: the {geo.name} array's microphones are on wire channels "
            f"{list(geo.channel_map)}"
        )
    mics = x[:, list(geo.channel_map)]
    win, hop = int(STREAM_WINDOW_S * pipeline.fs), int(BLOCK_S * pipeline.fs)
    best = []
    for s in range(0, max(1, mics.shape[0] - win + 1), hop):
        found = [src.detection for src in pipeline.process(mics[s : s + win])]
        top = max(found, key=lambda d: d.drone_likelihood, default=Detection(0.0, None, -120.0))
        best.append(top if unheard is None or top.white_db is not None else unheard(mics[s : s + win]))
    return best


class ArrayScorer:
    """The site background's windows scored through the array's pipeline (`background_learn`'s
    `WindowScorer`): the scores the node compares the background's threshold with. `options` are
    the pipeline's settings (`driver_factory.array_options`, or a recording's `--geometry`). The
    capsule levels learnt on one recording carry over to the next and from the learner's first
    pass to its second, as they carry over in the running node."""

    window_s = STREAM_WINDOW_S
    hop_s = BLOCK_S

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.geometry: ArrayGeometry = options["geometry"]
        self.array: str | None = self.geometry.identity
        self._capsules: CapsuleGains | None = None

    def fits(self, x: FloatArray) -> bool:
        """Whether samples (n, channels) carry this array's microphones."""
        return x.ndim == 2 and x.shape[1] >= self.geometry.min_channels

    def __call__(self, samples: FloatArray, sample_rate: int, detector: DroneDetector) -> list[Detection]:
        pipeline = AcousticPipeline(sample_rate=sample_rate, detector=detector, **self.options)
        if self._capsules is not None:
            pipeline.capsules = self._capsules

        # Where the array finds no source the node takes no decision (likelihood 0 here, left out of
        # the threshold's statistics), but the window is still heard: its level and spectrum are
        # the microphones' plain sum's, the beam the array forms when no direction stands out, so
        # that a quiet spell counts as the site and a line heard only now and then is not standing.
        def plain_sum(mics: FloatArray) -> Detection:
            plain = detector.detect(mics.mean(axis=1), sample_rate)
            return Detection(0.0, None, plain.level_dbfs, False, plain.white_db)

        out = array_window_detections(samples, pipeline, plain_sum)
        self._capsules = pipeline.capsules
        return out


def _verdict(name: str, dets: list[Detection], det: DroneDetector) -> dict[str, Any]:
    """The file's object from its windows' detections: its most drone-like stretch of
    `PERSIST_WINDOWS` (their mean likelihood), decided by the detector's threshold."""
    k = min(PERSIST_WINDOWS, len(dets))
    p = np.array([d.drone_likelihood for d in dets])
    stretch = np.convolve(p, np.ones(k) / k, mode="valid")
    i = int(np.argmax(stretch))
    likelihood = float(stretch[i])
    peak = max(dets[i : i + k], key=lambda d: d.drone_likelihood)
    return {
        "file": name,
        "drone_likelihood": round(likelihood, 4),
        "detected": det.decide(likelihood),
        "f0_hz": None if peak.f0_hz is None else round(peak.f0_hz, 1),
    }
