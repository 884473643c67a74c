"""The site's fixed reflectors as one radar sees them, from a recording of the site with nothing
flying: its detections grouped into scans, then learnt (`reflector_learning.learn_reflectors`).

`cuas-node calibrate radar-reflectors` (docs/calibration.md) reads the radar's detections as
measurement JSON lines (what `replay` prints and `track` reads); the counting cells and the
significance come from the configured radar (its accuracies and coverage: `RadarSensor`), never
from the recording. The map it writes is what fusion prices plots against (`reflectors_file` in
the radar's section).

Scans are counted by time, at the radar's configured rate, so a radar that sends nothing for a
scan without plots (no `EmptyRadarScan`) is still counted right; a silence longer than
`BREAK_S` (or `BREAK_PERIODS` periods of a slow radar) is a break in the recording (the radar
off, or two recordings one after the other), not empty scans.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from cuas_node.calibration.reflector_learning import Survey, learn_reflectors
from cuas_node.fusion.params import RadarSensor
from cuas_node.fusion.radar_frames import radar_arrays
from cuas_node.kernel.measurement import EmptyRadarScan, RadarDetection

FloatArray = npt.NDArray[np.float64]

MIN_SCANS = 200
"""Fewer scans cannot price a flicker: a reflector seen in 5 % of them gives 10 plots."""

FRAME_SPREAD_S = 0.01
"""Plots stamped this close after a scan's first (or a quarter period, if less) are that scan's:
a radar that stamps each plot of a frame a little apart (merging within half a period merged two
real frames of a radar whose `rate_hz` was set too low)."""

SURVEY_S = 300.0
"""A survey shorter than this may miss a reflector that shows in a few bursts, or faintly."""

BREAK_S = 30.0
BREAK_PERIODS = 30
"""A silence longer than both is a break in the recording, not empty scans."""


def sensor_sigmas(sensor: RadarSensor) -> FloatArray:
    """The configured accuracy per measurement row (range, az, el[, range-rate])."""
    rows = [sensor.range_sigma_m, sensor.az_sigma_rad, sensor.el_sigma_rad]
    if sensor.range_rate and sensor.range_rate_sigma_mps is not None:
        rows.append(sensor.range_rate_sigma_mps)
    return np.asarray(rows, dtype=np.float64)


@dataclass
class SiteRecording:
    """One radar's detections of a recording as scans: each scan's plots (range bias removed,
    (M, 4), NaN range-rate where absent) and its number counted by time (`index`), `n_scans` in
    all (the breaks left out) and `seconds` of recording (likewise)."""

    plots: list[FloatArray] = field(default_factory=list)
    index: list[int] = field(default_factory=list)
    phases: list[FloatArray] = field(default_factory=list)  # a scanning radar's: in periods
    n_scans: int = 0
    seconds: float = 0.0
    breaks: int = 0
    frame_gap_s: float = 0.0  # the median time between scans seen (a check of `rate_hz`)


def group_scans(
    measurements: Sequence[RadarDetection | EmptyRadarScan], sensor: RadarSensor
) -> SiteRecording:
    """A radar's detections grouped into scans by capture time (a frame's plots share it, or come
    within `FRAME_SPREAD_S` of its first; an empty scan counts too); a scanning radar stamps each
    plot on its own (`sweeps`), so its scans are whole periods of 1/scan_rate_hz. Scans are
    numbered by time at the configured rate."""
    ordered = sorted(measurements, key=lambda m: m.t_capture)
    out = SiteRecording()
    if not ordered:
        return out
    period = 1.0 / sensor.scan_rate_hz
    silence = max(BREAK_S, BREAK_PERIODS * period)
    t0 = ordered[0].t_capture
    batches: dict[float, list[RadarDetection]] = {}
    key = -math.inf
    for m in ordered:
        if sensor.sweeps:
            key = math.floor((m.t_capture - t0) / period) * period + t0
        elif m.t_capture - key > min(period / 4, FRAME_SPREAD_S):  # a frame's plots stamped apart
            key = m.t_capture
        batch = batches.setdefault(key, [])
        if isinstance(m, RadarDetection):
            batch.append(m)
    number, last = 0, None
    for t, batch in batches.items():
        if last is not None:
            gap = t - last
            if gap > silence:
                out.breaks += 1
                number += 1
            else:
                number += max(round(gap / period), 1)
                out.seconds += gap
        last = t
        z, _sig, _extent, valid, _rate = radar_arrays(batch, sensor.range_bias_m) if batch else _NONE
        out.plots.append(z[valid])
        out.index.append(number)
        phase = (np.array([m.t_capture for m in batch]) - t) / period if batch else np.zeros(0)
        out.phases.append(phase[valid])
    out.n_scans = number + 1
    out.seconds += period
    times = np.array(list(batches))
    gaps = np.diff(times)
    out.frame_gap_s = float(np.median(gaps[gaps <= silence])) if (gaps <= silence).any() else period
    return out


def learn_from_scans(sensor: RadarSensor, recording: SiteRecording) -> Survey:
    """The reflectors in a recording, with cells and significance from the configured `sensor`.
    A radar that measures range-rate gets a 4-row map of its plots that carry it."""
    sigma = sensor_sigmas(sensor)
    dim = sigma.size
    z = np.concatenate([np.zeros((0, dim))] + [p[:, :dim] for p in recording.plots])
    scan_of = np.repeat(np.asarray(recording.index, dtype=np.intp), [p.shape[0] for p in recording.plots])
    phase = np.concatenate([np.zeros(0), *recording.phases]) if sensor.sweeps else None
    if dim == 4:  # a detection without range-rate says nothing of the fourth row
        keep = np.isfinite(z[:, 3])
        z, scan_of = z[keep], scan_of[keep]
        phase = None if phase is None else phase[keep]
    coverage = (sensor.min_range_m, sensor.max_range_m, sensor.fov_az_rad, sensor.fov_el_rad)
    return learn_reflectors(z, scan_of, recording.n_scans, sigma, coverage, phase)


def without_range_rate(sensor: RadarSensor, recording: SiteRecording) -> int:
    """How many plots lack the range-rate that the radar is configured to measure."""
    if not sensor.range_rate:
        return 0
    return int(sum(int(np.count_nonzero(~np.isfinite(p[:, 3]))) for p in recording.plots))


def consecutive_scans(plots: Sequence[FloatArray], sensor: RadarSensor) -> SiteRecording:
    """A recording of scans one after another, none missing (each scan's (M, D) plots, D 3 or 4:
    what the benchmark's generator gives)."""
    rows = [np.column_stack([p, np.full((p.shape[0], 4 - p.shape[1]), np.nan)]) for p in plots]
    n = len(rows)
    return SiteRecording(
        rows, list(range(n)), [np.zeros(p.shape[0]) for p in rows], n, n / sensor.scan_rate_hz
    )


_NONE = (np.zeros((0, 4)), np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0, dtype=bool))
