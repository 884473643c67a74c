"""`cuas-node decode acoustic FILE` and `cuas-node acoustic score WAV...`.

decode: a capture of the serial stream → one JSON object per source found per processed block
(bearing, likelihood, f0, level, whether it passed the threshold), then one summary object with the
parser's counters. The array geometry is inferred from the channel count unless given.

score: WAV files (mono or multichannel; channels are averaged, since a WAV carries no geometry) →
`{"file", "drone_likelihood", "detected", "f0_hz"}`. Files longer than the detector's 1.024 s
window are scored window by window (half-overlapping), by their most drone-like ≈2 s stretch;
`detected` is the detector's own decision, the node's.
"""

from __future__ import annotations

import math
import wave
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cuas_node.drivers.acoustic.detector import DroneDetector
from cuas_node.drivers.acoustic.driver import AcousticArrayDriver
from cuas_node.drivers.acoustic.geometry import ArrayGeometry, for_channels
from cuas_node.drivers.acoustic.protocol import PcmFrameParser
from cuas_node.drivers.transport import Transport

WINDOW_S = 1.024
FloatArray = npt.NDArray[np.float64]


def read_wav(path: Path) -> tuple[FloatArray, int]:
    """(n, channels) samples in full-scale units (±1) and the sample rate; 8/16/24/32-bit PCM."""
    with wave.open(str(path), "rb") as w:
        channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float64) / float(1 << 23)
    elif width == 4:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)
    else:
        raise ValueError(f"{path}: unsupported sample width {width}")
    n = x.size // channels
    return x[: n * channels].reshape(n, channels), rate


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
        mono = x.mean(axis=1)
        win = int(WINDOW_S * rate)
        starts = range(0, max(1, mono.size - win + 1), max(1, win // 2))
        dets = [det.detect(mono[s : s + win], rate) for s in starts]
        k = min(PERSIST_WINDOWS, len(dets))
        p = np.array([d.drone_likelihood for d in dets])
        stretch = np.convolve(p, np.ones(k) / k, mode="valid")
        i = int(np.argmax(stretch))
        likelihood = float(stretch[i])
        peak = max(dets[i : i + k], key=lambda d: d.drone_likelihood)
        yield {
            "file": str(path),
            "drone_likelihood": round(likelihood, 4),
            "detected": det.decide(likelihood),
            "f0_hz": None if peak.f0_hz is None else round(peak.f0_hz, 1),
        }
