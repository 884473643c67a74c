"""The site's fixed reflectors as one radar sees them, learnt from a recording with nothing flying.

`cuas-node calibrate radar-reflectors` (docs/calibration.md) reads the radar's detections as
measurement JSON lines (what `replay` prints and `track` reads), groups them into scans and hands
every plot to `fusion.reflectors.learn_reflectors`, with the counting cells and the significance
taken from the configured radar (its accuracies and coverage: `RadarSensor`), never from the
recording. The map it writes is what fusion prices plots against (`reflectors_file` in the radar's
section).

A recording of too few scans to tell a flicker from chance (`MIN_SCANS`) is refused. Whatever
moved through the coverage meanwhile (a car on a road, birds, a drone crossing) would be learnt
as a trail of reflectors along its path: it is found by the node's own fusion (the recording is
tracked as `track` would track it; a confirmed track that travelled more than a few of the
radar's own sigmas is a target, not a reflector), and its plots are left out (`moving_targets`).
A target that hovers the whole time cannot be told from a reflector: the procedure asks for
nothing flying.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from cuas_node.fusion.engine import FusionEngine
from cuas_node.fusion.ground import radar_points_enu
from cuas_node.fusion.params import FusionSetup, RadarSensor
from cuas_node.fusion.radar_frames import radar_arrays
from cuas_node.fusion.reflectors import SiteReflectors, learn_reflectors
from cuas_node.kernel.measurement import EmptyRadarScan, RadarDetection
from cuas_node.kernel.reports import GeoPoint

FloatArray = npt.NDArray[np.float64]

MIN_SCANS = 200
"""Fewer scans cannot price a flicker: a reflector seen in 5 % of them gives 10 plots."""

MOVED_SIGMAS = 5.0
"""A confirmed track that travelled more than this many of the radar's position sigmas (at its
range) was a target: a reflector's track wanders by its filter's noise, about one."""

GATE_SIGMAS = 4.0
"""A moving target's own plots: those within this many position sigmas of where it was reported."""


def sensor_sigmas(sensor: RadarSensor) -> FloatArray:
    """The configured accuracy per measurement row (range, az, el[, range-rate])."""
    rows = [sensor.range_sigma_m, sensor.az_sigma_rad, sensor.el_sigma_rad]
    if sensor.range_rate and sensor.range_rate_sigma_mps is not None:
        rows.append(sensor.range_rate_sigma_mps)
    return np.asarray(rows, dtype=np.float64)


def learn_from_scans(
    sensor: RadarSensor, scans: Sequence[FloatArray], n_scans: int | None = None
) -> SiteReflectors:
    """The reflectors in `scans` (one (M, D) array of bias-corrected plots per scan of the
    radar; `n_scans` how many scans they came from when empty ones are missing), with cells and
    significance from the configured `sensor`."""
    sigma = sensor_sigmas(sensor)
    dim = sigma.size
    z = np.concatenate([np.zeros((0, dim))] + [s[:, :dim] for s in scans])
    scan_of = np.repeat(np.arange(len(scans)), [s.shape[0] for s in scans])
    if dim == 4:  # a detection without range-rate says nothing of the fourth row
        keep = np.isfinite(z[:, 3])
        z, scan_of = z[keep], scan_of[keep]
    view = (sensor.max_range_m - sensor.min_range_m, sensor.fov_az_rad, sensor.fov_el_rad)
    return learn_reflectors(z, scan_of, max(n_scans or 0, len(scans)), sigma, view)


@dataclass
class SiteRecording:
    """One radar's detections of a recording, as scans: `times` (scan time of each) and `plots`."""

    times: list[float] = field(default_factory=list)
    plots: list[FloatArray] = field(default_factory=list)
    measurements: list[Any] = field(default_factory=list)  # in order, for the moving-target check
    scan_at: dict[float, int] = field(default_factory=dict)  # the scan of each capture time

    @property
    def duration_s(self) -> float:
        return self.times[-1] - self.times[0] if self.times else 0.0


def group_scans(
    measurements: Sequence[RadarDetection | EmptyRadarScan], sensor: RadarSensor
) -> SiteRecording:
    """A radar's detections grouped into scans by capture time (a frame's plots share it; an
    empty scan counts too). A scanning radar stamps each plot on its own (`sweeps`): its scans
    are then whole periods of 1/scan_rate_hz."""
    ordered = sorted(measurements, key=lambda m: m.t_capture)
    out = SiteRecording(measurements=list(ordered))
    if not ordered:
        return out
    period = 1.0 / sensor.scan_rate_hz
    t0 = ordered[0].t_capture
    batch: list[RadarDetection] = []
    key: float | None = None

    def close() -> None:
        z, _sig, _extent, valid, _rate = radar_arrays(batch, sensor.range_bias_m) if batch else _NONE
        out.times.append(float(key if key is not None else t0))
        out.plots.append(z[valid] if batch else np.zeros((0, 4)))

    for m in ordered:
        k = math.floor((m.t_capture - t0) / period) * period + t0 if sensor.sweeps else m.t_capture
        if key is not None and k != key:
            close()
            batch = []
        key = k
        out.scan_at[m.t_capture] = len(out.times)
        if isinstance(m, RadarDetection):
            batch.append(m)
    close()
    return out


_NONE = (np.zeros((0, 4)), np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0, dtype=bool))


@dataclass
class MovingTargets:
    """What moved through the coverage during a recording: a line describing each target, and
    each scan's plots that were theirs (`SiteRecording.plots` rows to leave out of the map)."""

    described: list[str]
    theirs: list[npt.NDArray[np.bool_]]

    @property
    def plots(self) -> int:
        return int(sum(int(m.sum()) for m in self.theirs))


def moving_targets(setup: FusionSetup, recording: SiteRecording, sensor: RadarSensor) -> MovingTargets:
    """The recording fused as the node fuses it (without a reflector map): a confirmed track that
    travelled more than `MOVED_SIGMAS` of the radar's position sigmas (at its range) from where
    it confirmed is a target (a car on a road, a bird, a drone crossing), and the plots within
    `GATE_SIGMAS` of it, at each scan it was reported, are its own. A reflector's track stays
    put; what a target leaves before it confirms is a few plots, fewer than a spot needs."""
    if setup.origin is None:  # positions are wanted in the node's frame only: any origin will do
        setup = dataclasses.replace(setup, origin=GeoPoint(0.0, 0.0, 0.0))
    engine = FusionEngine(setup)
    first: dict[int, tuple[FloatArray, float]] = {}
    moved: dict[int, str] = {}
    seen: list[tuple[float, list[int], FloatArray]] = []  # per instant: confirmed tracks and where
    mast = np.asarray(sensor.pose.offset_enu_m, dtype=np.float64)
    scans = itertools.groupby(recording.measurements, key=lambda m: m.t_capture)
    for t, batch in scans:
        engine.fuse(list(batch))
        engine.maintain(t)
        reports = [r for r in engine.current() if r.status == "confirmed"]
        seen.append((t, [r.number for r in reports], np.array([r.enu_m for r in reports]).reshape(-1, 3)))
        for report, enu in zip(reports, seen[-1][2], strict=True):
            start, since = first.setdefault(report.number, (enu, t))
            travelled = float(np.linalg.norm(enu - start))
            if report.number not in moved and travelled > MOVED_SIGMAS * _position_sigma(
                sensor, start - mast
            ):
                r = float(np.linalg.norm(start - mast))
                moved[report.number] = (
                    f"a target moved {travelled:.0f} m in {t - since:.1f} s from {r:.0f} m range,"
                    f" {t - recording.times[0]:.0f} s into the recording"
                )
    theirs = [np.zeros(p.shape[0], dtype=bool) for p in recording.plots]
    for t, numbers, where in seen if moved else []:
        k = recording.scan_at[t]
        rows = [i for i, n in enumerate(numbers) if n in moved]
        if rows and recording.plots[k].shape[0]:
            enu = radar_points_enu(recording.plots[k], sensor.pose)
            for target in where[rows]:
                gate = GATE_SIGMAS * _position_sigma(sensor, target - mast)
                theirs[k] |= np.linalg.norm(enu - target, axis=1) <= gate
    return MovingTargets(list(moved.values()), theirs)


def _position_sigma(sensor: RadarSensor, offset: FloatArray) -> float:
    """The radar's position sigma (the larger of range and cross-range) at an offset from it."""
    r = float(np.linalg.norm(offset))
    return max(sensor.range_sigma_m, r * max(sensor.az_sigma_rad, sensor.el_sigma_rad))
