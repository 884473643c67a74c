"""Which tracks a radar's scan looked at, and which of them have moved: the two questions behind
a miss that counts (`management`) and a Pd worth learning from (`sensor_stats`).

A scan *looked at* a track when its coverage holds the track's predicted position and the track is
known to within `_KNOWN_RESOLUTIONS` of the radar's own resolution at that range (σ_range,
range·σ_angle, from the scans' covariances: `sensor_stats`). A bearing-only track's range is a
guess, so it is not a place to look; nor is a track at 2.5 km whose spread is a 1° radar's
cross-range cell: it is.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

from cuas_node.fusion.measurement_models import MeasurementModel, RadarModel
from cuas_node.fusion.models import largest_eigenvalue
from cuas_node.fusion.sensor_stats import SensorStats, fed_by, is_radar
from cuas_node.fusion.tracks import TrackTable
from cuas_node.kernel.pose import cartesian_to_spherical, wrap

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

_MOVED_RESOLUTIONS = 10.0  # from where it started, beyond the error of a first plot (`moved`)
_KNOWN_RESOLUTIONS = 4.0  # a track is "known" within this many of the sensor's 1σ position accuracy


def says_present(gain: FloatArray, pd: float, model: MeasurementModel) -> BoolArray:
    """The hits (their score gains) whose plot says the target is there: the scan's likelihood
    ratio 1 − Pd + Pd·g/λ ≥ 1, gain ≥ ln Pd. A lost track in a gate holding more false alarms
    than one takes one most scans, each likelier clutter; only a radar's gain is weighed against
    clutter it learns, so the other sensors' plots all count."""
    return np.asarray(gain >= math.log(pd)) if is_radar(model) else np.ones(gain.shape, dtype=bool)


def position_sigma_within(table: TrackTable, slots: IndexArray, limit: FloatArray) -> BoolArray:
    """The position's largest σ ≤ limit (False where the limit is NaN), asked every scan of every track:
    the trace bounds the largest eigenvalue, tr/3 ≤ λmax ≤ tr, so only the tracks those bounds
    leave undecided pay for the eigenvalue."""
    p = table.p[slots, :3, :3]
    trace = p[:, 0, 0] + p[:, 1, 1] + p[:, 2, 2]
    squared = np.asarray(limit, dtype=np.float64) ** 2
    if squared.shape != trace.shape:
        squared = np.full(trace.shape, squared)
    within: BoolArray = trace <= squared
    unsure = ~within & (trace <= 3.0 * squared)
    if unsure.any():
        within[unsure] = largest_eigenvalue(p[unsure]) <= squared[unsure]
    return within


def looked_at(
    table: TrackTable,
    stats: SensorStats,
    active: IndexArray,
    bit: int,
    model: MeasurementModel,
    seen: FloatArray | None,
) -> BoolArray:
    """Tracks a radar's scan looked at: inside its coverage, and with the position known to
    within a few of the sensor's resolution cells at their range, so that a miss there is
    evidence. `seen`: the tracks' predicted (range, azimuth, elevation) in the radar's frame
    when gating computed them (the same test, without computing them again)."""
    if not is_radar(model):
        return np.zeros(active.size, dtype=bool)
    if seen is None:
        rng, az, el = cartesian_to_spherical(model.pose.enu_to_sensor(table.x[active, :3]))
    else:
        rng, az, el = seen[:, 0], seen[:, 1], seen[:, 2]
    resolution = stats.resolution_m(bit, rng)
    with np.errstate(invalid="ignore"):
        known = position_sigma_within(table, active, _KNOWN_RESOLUTIONS * resolution)
    return np.asarray(model.coverage.sees(rng, az, el) & known)


def doppler_visible(table: TrackTable, active: IndexArray, model: MeasurementModel) -> FloatArray | None:
    """The chance that each track's plot clears the radar's Doppler notch (`blind_radial_mps`: the
    node's clustering drops points whose |range-rate| is under it, as static clutter), None for a
    radar without one. A hovering drone, or one crossing square to the beam, has a range-rate near
    zero and is seen only when its points' Doppler noise carries them out of the notch: its plots
    come and go, and a miss there says less of whether it is still there. The range-rate is taken
    as N(u·v, uᵀ P_vv u + σ²), u the line of sight and σ the radar's specified range-rate accuracy
    (`range_rate_sigma_mps`, not the accuracy its plots report: the plots that clear the notch
    pull a hovering track's range-rate just out of it, and only the wider spread of the
    specification still sees that the target may be inside); the notch hides it with probability
    Φ((b − ṙ)/s) − Φ((−b − ṙ)/s)."""
    if not isinstance(model, RadarModel) or model.blind_radial_mps <= 0.0 or not model.range_rate:
        return None
    x, p = table.x[active], table.p[active]
    rel = x[:, :3] - model.pose.offset_enu_m
    u = rel / np.maximum(np.linalg.norm(rel, axis=1), 1e-6)[:, None]
    rate = np.einsum("ki,ki->k", u, x[:, 3:6])
    span = model.unambiguous_range_rate_mps
    if span:  # a radial speed near twice the wrap shows as one near zero, in the notch too
        rate = wrap(rate, span)
    variance = (
        np.maximum(np.einsum("ki,kij,kj->k", u, p[:, 3:6, 3:6], u), 0.0) + model.range_rate_sigma_mps**2
    )
    spread = np.maximum(np.sqrt(variance), 1e-9)  # (a certain range-rate: the notch hides it or not)
    blind = model.blind_radial_mps
    hidden = ndtr((blind - rate) / spread) - ndtr((-blind - rate) / spread)
    # (a covariance gone bad says nothing of the notch: such a track's misses count in full)
    return np.asarray(np.clip(np.nan_to_num(1.0 - hidden, nan=1.0), 0.0, 1.0), dtype=np.float64)


def moved(
    table: TrackTable,
    stats: SensorStats,
    slots: IndexArray,
    bit: int,
    model: MeasurementModel,
    seen: FloatArray | None,
) -> BoolArray:
    """Of these established tracks, those that have moved `_MOVED_RESOLUTIONS` cells of the
    coarsest radar that fed them (its accuracy at their range) from where they were first
    ranged (`TrackTable.x_born`): only their looks teach a radar its Pd. A flickering
    reflector, a tree or a roof edge, tracked before the site is known, gives a plot in a
    third of the scans and stays put: counted, twenty of them taught an outside test's radar
    a Pd of 0.40 (0.85 in truth), and every lost track then waited 36 misses in a row to be
    deleted. A hovering drone teaches nothing either (its Pd is that of the moving ones, or
    the configured one)."""
    tb = table
    moving = tb.moved[slots]
    still = np.flatnonzero(~moving)  # (once moved, always: only these are asked)
    if not still.size:
        return moving
    asked = slots[still]
    rng = (
        cartesian_to_spherical(model.pose.enu_to_sensor(tb.x[asked, :3]))[0]
        if seen is None
        else seen[still, 0]
    )
    far = np.linalg.norm(tb.x[asked, :3] - tb.x_born[asked], axis=1)
    # The coarsest radar that fed it: its first plot may lie that far off, and a finer radar's
    # first update moves the track there (helper-85: 7 of 15 reflectors "moved").
    cell = stats.resolution_m(bit, rng)
    others = [other for other, m in stats.models.items() if other != bit and is_radar(m)]
    for other, fed in zip(others, fed_by(tb.sensor_mask[asked], others).T, strict=True):
        if fed.any():
            cell = np.where(fed, np.fmax(cell, stats.resolution_m(other, rng)), cell)
    with np.errstate(invalid="ignore"):  # (NaN resolution before its first detection: not moved)
        moving[still] = far > _MOVED_RESOLUTIONS * cell
    tb.moved[slots] = moving
    return moving
