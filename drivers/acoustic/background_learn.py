"""Learning a site's acoustic background from recordings of it (see background.py for the why).

The audio is cut into the windows the node decides on (1.024 s, every 0.5 s); the standing lines
are taken from all of them, then every window is scored relative to those lines: windows that
still sound like a drone at the shipped threshold (a source that is not part of the site's steady
sound), many or in a row, or most of the raw recording sounding like one, make it refuse; the
relative scores give the threshold statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cuas_node.drivers.acoustic.background import (
    DRONE_RUN,
    DRONE_SHARE,
    MIN_WINDOWS,
    RAW_DRONE_SHARE,
    Background,
    BackgroundError,
    drone_like_run,
    line_profile,
    logit_stats,
    weights_digest,
)
from cuas_node.drivers.acoustic.detector import DEFAULT_WEIGHTS_PATH, DetectorModel, DroneDetector
from cuas_node.drivers.acoustic.features import ANALYSIS_RATE

FloatArray = npt.NDArray[np.float64]
WINDOW_S = 1.024
HOP_S = 0.5


@dataclass(frozen=True)
class Recording:
    """Mono audio of the site (±1 full scale) and where it came from (for messages)."""

    name: str
    samples: FloatArray
    sample_rate: int


def windows(rec: Recording) -> list[tuple[float, FloatArray]]:
    """(start time s, samples) of each whole decision window of a recording."""
    win, hop = int(WINDOW_S * rec.sample_rate), int(HOP_S * rec.sample_rate)
    return [
        (s / rec.sample_rate, rec.samples[s : s + win]) for s in range(0, rec.samples.size - win + 1, hop)
    ]


def _logit(p: float) -> float:
    p = min(max(p, 1e-22), 1.0 - 1e-16)
    return math.log(p / (1.0 - p))


def learn_background(recordings: Sequence[Recording], model: DetectorModel | None = None) -> Background:
    """The site background of `recordings`; BackgroundError if it is too short, silent, of mixed
    sample rates, or contains a drone-like source."""
    rates = {r.sample_rate for r in recordings}
    if len(rates) > 1:
        raise BackgroundError(f"recordings of different sample rates {sorted(rates)}: use one rate")
    if min(rates, default=ANALYSIS_RATE) < ANALYSIS_RATE:
        raise BackgroundError(
            f"sample rate {min(rates)} Hz: record the background at {ANALYSIS_RATE} Hz or more, "
            "as the array streams (the detector analyses up to 8 kHz)"
        )
    shipped = DroneDetector(model)
    wins: list[tuple[Recording, float, FloatArray]] = [(r, t, w) for r in recordings for t, w in windows(r)]
    if len(wins) < MIN_WINDOWS:
        seconds = sum(r.samples.size / r.sample_rate for r in recordings)
        short = sum(1 for r in recordings if r.samples.size / r.sample_rate < WINDOW_S)
        why = f"; {short} of the recordings are shorter than one {WINDOW_S} s analysis window" * (short > 0)
        raise BackgroundError(
            f"{seconds:.1f} s of audio gives {len(wins)} analysis windows{why}: record at least "
            f"{MIN_WINDOWS * HOP_S:.0f} s in recordings of {WINDOW_S} s or more (a few minutes is better)"
        )
    dets = [shipped.detect(w, r.sample_rate) for r, _, w in wins]
    audible = [d.white_db is not None and d.level_dbfs > -85.0 for d in dets]
    if sum(audible) < MIN_WINDOWS:
        raise BackgroundError("the recordings are (nearly) silent: check the microphones and the gain")
    spectra = np.array([d.white_db for d, a in zip(dets, audible, strict=True) if a])
    suppress = line_profile(spectra)
    digest = weights_digest(DEFAULT_WEIGHTS_PATH) if model is None else "unsaved-model"
    provisional = Background(suppress, 0.0, 1.0, 0.0, len(wins), 0.0, digest)
    # Relative to the site's standing lines, at the shipped threshold: what would still look like
    # a drone once the site's machines are accounted for.
    relative = DroneDetector(shipped.model, threshold=shipped.threshold, background=provisional)
    rel = [
        relative.detect(w, r.sample_rate) if a else d
        for (r, _, w), d, a in zip(wins, dets, audible, strict=True)
    ]
    called = np.array([d.detected for d in rel])
    raw_share = float(np.mean([d.detected for d in dets]))
    run, start = drone_like_run(called)
    if called.mean() > DRONE_SHARE or run >= DRONE_RUN or raw_share > RAW_DRONE_SHARE:
        f0s = [d.f0_hz for d in rel if d.detected and d.f0_hz is not None] or [
            d.f0_hz for d in dets if d.detected and d.f0_hz is not None
        ]
        f0 = f" around f0 {np.median(f0s):.0f} Hz" if f0s else ""
        rec, t, _ = wins[start]
        raise BackgroundError(
            f"the background contains a drone-like source{f0}: {int(called.sum())} of {called.size} "
            f"windows sound like a drone beside the site's steady sound, {raw_share:.0%} in all "
            f"(longest run {run} windows from {t:.1f} s in {rec.name}); "
            "record the background again when no drone (or other multirotor) is flying"
        )
    logits = np.array([_logit(d.drone_likelihood) for d, a in zip(rel, audible, strict=True) if a])
    mean, std, peak = logit_stats(logits)
    seconds = sum(r.samples.size / r.sample_rate for r in recordings)
    return Background(
        suppress, mean, std, peak, len(wins), seconds, digest, tuple(r.name for r in recordings)
    )
