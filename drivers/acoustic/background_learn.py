"""Learning a site's acoustic background from recordings of it (see background.py for the why).

The audio is cut into the windows the node decides on (every 0.5 s) and each window is scored as
the node scores it: one beam of the channels (`MonoScorer`, 1.024 s windows: a single microphone or
a recording of an unknown array), or, for a recording of the node's array, through the array's
pipeline, its most drone-like source with the array's evidence of direction and distance
(`decode.ArrayScorer`, 1 s windows, the driver's). The background's threshold is compared with
those scores in the node, so it must be learnt on them: an insect at a capsule that the array
marks down must not raise it. The standing lines are taken from the same windows' beams (the
detector subtracts them from each beam it scores), then every window is scored again relative to
them: windows that still sound like a drone at the shipped threshold (a source that is not part of
the site's steady sound), many or in a row, or most of the raw recording sounding like one, make it
refuse; the relative scores give the threshold statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

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
from cuas_node.drivers.acoustic.detector import DEFAULT_WEIGHTS_PATH, Detection, DetectorModel, DroneDetector
from cuas_node.drivers.acoustic.features import ANALYSIS_RATE

FloatArray = npt.NDArray[np.float64]
WINDOW_S = 1.024
HOP_S = 0.5


@dataclass(frozen=True)
class Recording:
    """Audio of the site (±1 full scale) and where it came from (for messages): mono (n,) for the
    one-beam path, or the array's wire channels (n, channels) for `decode.ArrayScorer`."""

    name: str
    samples: FloatArray
    sample_rate: int

    @property
    def seconds(self) -> float:
        return self.samples.shape[0] / self.sample_rate


class WindowScorer(Protocol):
    """Scores a recording's decision windows (one every `hop_s`, `window_s` long) with a detector,
    as the node would: one `Detection` per window. `array` names the array whose pipeline scores
    them (None: one beam), and is what the background records as the path it was learnt on."""

    window_s: float
    hop_s: float
    array: str | None

    def __call__(self, samples: FloatArray, sample_rate: int, detector: DroneDetector) -> list[Detection]: ...


class MonoScorer:
    """One beam: the recording's mono samples, each 1.024 s window scored by the detector alone."""

    window_s = WINDOW_S
    hop_s = HOP_S
    array: str | None = None

    def __call__(self, samples: FloatArray, sample_rate: int, detector: DroneDetector) -> list[Detection]:
        return [detector.detect(w, sample_rate) for _, w in windows(Recording("", samples, sample_rate))]


def windows(rec: Recording) -> list[tuple[float, FloatArray]]:
    """(start time s, samples) of each whole 1.024 s decision window of a mono recording."""
    win, hop = int(WINDOW_S * rec.sample_rate), int(HOP_S * rec.sample_rate)
    return [
        (s / rec.sample_rate, rec.samples[s : s + win]) for s in range(0, rec.samples.size - win + 1, hop)
    ]


def _logit(p: float) -> float:
    p = min(max(p, 1e-22), 1.0 - 1e-16)
    return math.log(p / (1.0 - p))


def _window_count(rec: Recording, scorer: WindowScorer) -> int:
    win, hop = int(scorer.window_s * rec.sample_rate), int(scorer.hop_s * rec.sample_rate)
    return len(range(0, rec.samples.shape[0] - win + 1, hop))


def learn_background(
    recordings: Sequence[Recording], model: DetectorModel | None = None, scorer: WindowScorer | None = None
) -> Background:
    """The site background of `recordings`, its windows scored by `scorer` (default one beam,
    `MonoScorer`); BackgroundError if it is too short, silent, of mixed sample rates, or contains
    a drone-like source."""
    scorer = scorer or MonoScorer()
    rates = {r.sample_rate for r in recordings}
    if len(rates) > 1:
        raise BackgroundError(f"recordings of different sample rates {sorted(rates)}: use one rate")
    if min(rates, default=ANALYSIS_RATE) < ANALYSIS_RATE:
        raise BackgroundError(
            f"sample rate {min(rates)} Hz: record the background at {ANALYSIS_RATE} Hz or more, "
            "as the array streams (the detector analyses up to 8 kHz)"
        )
    counts = [_window_count(r, scorer) for r in recordings]
    if sum(counts) < MIN_WINDOWS:
        seconds = sum(r.seconds for r in recordings)
        short, window_s = counts.count(0), f"{scorer.window_s:g}"
        why = f"; {short} of the recordings are shorter than one {window_s} s analysis window" * (short > 0)
        raise BackgroundError(
            f"{seconds:.1f} s of audio gives {sum(counts)} analysis windows{why}: record at least "
            f"{MIN_WINDOWS * HOP_S:.0f} s in recordings of {window_s} s or more (a few minutes is better)"
        )
    heard = [(r, n) for r, n in zip(recordings, counts, strict=True) if n > 0]
    shipped = DroneDetector(model)

    def scored(detector: DroneDetector) -> list[Detection]:
        return [d for r, _ in heard for d in scorer(r.samples, r.sample_rate, detector)]

    dets = scored(shipped)
    audible = [d.white_db is not None and d.level_dbfs > -85.0 for d in dets]
    if sum(audible) < MIN_WINDOWS:
        raise BackgroundError("the recordings are (nearly) silent: check the microphones and the gain")
    # The lines from the beams the node scores and subtracts them from (one per window).
    spectra = np.array([d.white_db for d, a in zip(dets, audible, strict=True) if a])
    suppress = line_profile(spectra)
    digest = weights_digest(DEFAULT_WEIGHTS_PATH) if model is None else "unsaved-model"
    provisional = Background(suppress, 0.0, 1.0, 0.0, len(dets), 0.0, digest, array=scorer.array)
    # Relative to the site's standing lines, at the shipped threshold: what would still look like
    # a drone once the site's machines are accounted for.
    relative = DroneDetector(shipped.model, threshold=shipped.threshold, background=provisional)
    rel = [r if a else d for r, d, a in zip(scored(relative), dets, audible, strict=True)]
    called = np.array([d.detected for d in rel])
    raw_share = float(np.mean([d.detected for d in dets]))
    run, start = drone_like_run(called)
    if called.mean() > DRONE_SHARE or run >= DRONE_RUN or raw_share > RAW_DRONE_SHARE:
        f0s = [d.f0_hz for d in rel if d.detected and d.f0_hz is not None] or [
            d.f0_hz for d in dets if d.detected and d.f0_hz is not None
        ]
        f0 = f" around f0 {np.median(f0s):.0f} Hz" if f0s else ""
        where = [(r, i * scorer.hop_s) for r, n in heard for i in range(n)]
        rec, t = where[start]
        raise BackgroundError(
            f"the background contains a drone-like source{f0}: {int(called.sum())} of {called.size} "
            f"windows sound like a drone beside the site's steady sound, {raw_share:.0%} in all "
            f"(longest run {run} windows from {t:.1f} s in {rec.name}); "
            "record the background again when no drone (or other multirotor) is flying"
        )
    # The node's decisions: a window where the array found no source (likelihood 0) takes none, and
    # says nothing of how high the node's scores reach there.
    decided = [d for d, a in zip(rel, audible, strict=True) if a and d.drone_likelihood > 0.0]
    if len(decided) < MIN_WINDOWS:
        raise BackgroundError(
            f"the {scorer.array} array found a source in {len(decided)} of {len(dets)} windows only "
            f"(at least {MIN_WINDOWS} are needed to set a threshold on its scores): record longer, "
            "at a time of the site's usual sound"
        )
    # A window whose source the array placed at one of its capsules (an insect at the array; the
    # distance evidence marked it down) is not the site's far sound: partly marked down, its score
    # would set the loudest-window floor and widen the upper half, and deafen the node. Set aside.
    far = [d for d in decided if not d.near]
    if len(far) < MIN_WINDOWS:
        raise BackgroundError(
            f"the {scorer.array} array placed the source at one of its microphones (an insect or the "
            f"like at the array) in {len(decided) - len(far)} of the {len(decided)} windows with a "
            f"source, leaving {len(far)} (at least {MIN_WINDOWS} are needed to set a threshold on "
            "the site's own sound): record again, longer, or when nothing sits at the array"
        )
    logits = np.array([_logit(d.drone_likelihood) for d in far])
    mean, std, peak = logit_stats(logits, upper=scorer.array is not None)
    seconds = sum(r.seconds for r in recordings)
    return Background(
        suppress,
        mean,
        std,
        peak,
        len(dets),
        seconds,
        digest,
        tuple(r.name for r in recordings),
        array=scorer.array,
        near_set_aside=len(decided) - len(far),
    )
