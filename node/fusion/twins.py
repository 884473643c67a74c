"""Two established tracks on one target: find the twin and let it go.

A twin is born when a target's plots fall outside its track's gate for a scan or two (a
manoeuvre, a crowd's plots shared out at a crossing) and a new track starts on them; once the
old track comes back, both follow the same target. Neither then starves: they take its one plot
in turns, or both take it in a JPDA-style shared update (`jpda`), and a track's miss of a
detection another track took is no evidence of absence (`TrackManager.record`: the target may be
unresolved from a neighbour's), so the pair can live on for seconds, one of them a false track
in every metric and on every map.

Two real targets look like this only while they share one plot: flying apart, or resolved, they
give two plots, and each track takes one. So a pair is a twin when, scan after scan of a sensor
that should see both, (a) the sensor could not tell them apart (their predicted measurements
within the gate of its own noise and their uncertainty) and their velocities agree within their
uncertainty, (b) both gated one detection, and (c) together they took at most one (one took
nothing, or both shared the one detection each gated): for as many scans in a row as two
targets each detected with the sensor's learnt Pd would give fewer than two plots only with
probability α, (1 − Pd²)^n ≤ α (6 scans at Pd 0.9, 14 at 0.7). The younger of the two is then
taken as gone (deleted through `TrackTable.absent`, so its deletion is published); the older
keeps its identity.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from cuas_node.fusion.measurement_models import MeasurementModel
from cuas_node.fusion.models import mahalanobis_logdet
from cuas_node.fusion.tracks import TrackTable, distinct, first_of_each

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


def scans_to_tell(pd: float, alpha: float) -> int:
    """Scans in a row in which two detectable targets give fewer than two plots with probability
    at most α: the fewest n with (1 − Pd²)^n ≤ α."""
    single = min(max(1.0 - pd * pd, 1e-6), 1.0 - 1e-9)
    return max(2, math.ceil(math.log(alpha) / math.log(single)))


def candidate_pairs(
    rows: IndexArray, meas: IndexArray, updated: BoolArray
) -> tuple[IndexArray, IndexArray, IndexArray]:
    """Pairs of track rows (a < b) that gated one detection, and that detection, from the gated
    (row, detection) pairs of established tracks, where one of the two took nothing beyond that
    detection this scan (`updated` per row: took anything else): neighbours in detection order (a
    detection three tracks gate gives two pairs; enough, since a twin pair is two)."""
    empty = np.zeros(0, dtype=np.intp)
    if meas.size < 2:
        return empty, empty, empty
    # Most detections are in one gate or none, and most tracks took one: only a detection that
    # two tracks gated, one of which took nothing beyond it, can make a pair.
    counts = np.bincount(meas)
    idle = np.zeros(counts.size, dtype=bool)
    idle[meas[~updated[rows]]] = True
    shared = (counts[meas] >= 2) & idle[meas]
    rows, meas = rows[shared], meas[shared]
    if meas.size < 2:
        return empty, empty, empty
    order = np.argsort(meas * (int(rows.max()) + 1) + rows)  # by detection, then track
    m, k = meas[order], rows[order]
    same = m[1:] == m[:-1]
    a, b, m = k[:-1][same], k[1:][same], m[1:][same]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    _, first = np.unique(lo * (int(rows.max()) + 1) + hi, return_index=True)
    return lo[first], hi[first], m[first]


def track_twins(
    table: TrackTable,
    active: IndexArray,
    firm: BoolArray,
    gated: tuple[IndexArray, IndexArray, FloatArray],
    r: FloatArray,
    updated: BoolArray,
    gate: Callable[[int], float],
    needed: int,
    shared: BoolArray,
) -> IndexArray:
    """One full scan's evidence: advance each pair's count of scans as twins (kept on the younger
    track, with its partner's slot), reset it where the evidence fails, and return the slots of the
    younger twins whose count reached `needed` (scans_to_tell).

    `gated`: the scan's gated (track row, detection) pairs and every row's measurement Jacobian
    (K,D,6); `r`: the detections' covariances; `updated`: the rows that took a detection;
    `shared`: those whose update was a JPDA-style share of what they gated (`jpda`); `gate`: the
    tracker's χ² gate of a dimension (`Tracker.gate`). The two tracks are one target's when the
    sensor could not tell their predicted measurements apart, within its own noise as well as their
    uncertainty (two tracks sharing one target's plots split them, each taking the plots on its
    side, and settle about one σ of the sensor apart: their estimates alone look different), and
    their velocities agree within their uncertainty."""
    ki, mj, h = gated
    sel = firm[ki]
    # A shared update of a row that gated one detection took that detection and nothing else.
    sole = shared & (np.bincount(ki[sel], minlength=active.size) == 1)
    a, b, m = candidate_pairs(ki[sel], mj[sel], updated & ~sole)
    single = ~(updated[a] & updated[b]) | (sole[a] & sole[b])  # together they took at most one
    a, b, m = a[single], b[single], m[single]
    tb = table
    counted = np.zeros(active.size, dtype=bool)
    if a.size:
        sa, sb = active[a], active[b]
        dx = tb.x[sa] - tb.x[sb]
        p = tb.p[sa] + tb.p[sb]
        ha = h[a]
        dz = (ha @ dx[:, :, None])[:, :, 0]
        sz = ha @ p @ ha.transpose(0, 2, 1) + r[m]
        d2z, _ = mahalanobis_logdet(dz, sz)
        d2v, _ = mahalanobis_logdet(dx[:, 3:], p[:, 3:, 3:])
        twin = (d2z <= gate(dz.shape[1])) & (d2v <= gate(3))
        if twin.any():
            a, b, sa, sb = a[twin], b[twin], sa[twin], sb[twin]
            younger_b = tb.number[sb] > tb.number[sa]
            young = np.where(younger_b, b, a)
            old_slot = np.where(younger_b, sa, sb)
            ys = active[young]
            same = tb.twin_of[ys] == old_slot
            tb.twin_scans[ys] = np.where(same, tb.twin_scans[ys] + 1, 1)
            tb.twin_of[ys] = old_slot
            counted[young] = True
    counting = tb.twin_scans[active] > 0
    if counting.any():
        gated_any = np.zeros(active.size, dtype=bool)
        gated_any[ki[sel]] = True
        reset = active[counting & gated_any & ~counted]  # a scan that said nothing changes nothing
        tb.twin_scans[reset] = 0
        tb.twin_of[reset] = -1
    done = active[counted]
    return done[tb.twin_scans[done] >= needed]


def same_return(
    model: MeasurementModel,
    z: FloatArray,
    r: FloatArray,
    stamps: FloatArray | None,
    gamma: float,
    a: IndexArray,
    b: IndexArray,
) -> BoolArray:
    """Pairs of detections (`a[k]`, `b[k]`) of one scan that may be one object's: within each
    other's noise (a clusterer's split cluster). Of a plot extractor's scanning radar's batch
    (`stamps`, each plot's capture time), only plots stamped apart: its return split across two
    beam dwells, or passed twice at a sector's turn; the plots of one dwell are objects it
    resolved (a clusterer's, `splits_objects`, may be one object's in one dwell too)."""
    d2, _ = mahalanobis_logdet(model.innovation(z[a], z[b]), r[a] + r[b])
    same = d2 < gamma
    return same if stamps is None or model.splits_objects else same & (stamps[a] != stamps[b])


def split_plots(
    model: MeasurementModel, z: FloatArray, r: FloatArray, stamps: FloatArray, taken: BoolArray, gamma: float
) -> BoolArray:
    """Plots of a scanning radar's batch of the same return as a plot an established track took
    (`same_return`). One at a time the second plot was the track's look again; in a batch it
    must not feed a young track next to it, which would take it sweep after sweep and confirm as
    a twin (twins are found on full scans, which a scanning radar has none of)."""
    free, owned = np.flatnonzero(~taken), np.flatnonzero(taken)
    split = np.zeros(taken.size, dtype=bool)
    if free.size and owned.size:
        a, b = np.repeat(free, owned.size), np.tile(owned, free.size)
        split[a[same_return(model, z, r, stamps, gamma, a, b)]] = True
    return split


def one_birth_per_object(
    model: MeasurementModel,
    x: FloatArray,
    p: FloatArray,
    z: FloatArray,
    r: FloatArray,
    stamps: FloatArray | None,
    gamma: float,
) -> BoolArray:
    """Of a scan's unclaimed detections (`z`, `r`; their new states `x`, `p`), those that start a
    track: one per object, so that no twin is born. A scanning radar's batch: the first of the
    plots of one return (`same_return`, in measurement space: a plot clearly resolved in range
    from another is another object, however poor the elevation); a clusterer's frame: one per
    3 sigma of position (`tracks.distinct`); a plot extractor's frame: every plot."""
    if stamps is None:
        keep = np.ones(x.shape[0], dtype=bool)
        return distinct(x[:, :3], np.trace(p[:, :3, :3], axis1=1, axis2=2)) if model.splits_objects else keep
    a, b = np.triu_indices(z.shape[0], 1)
    same = same_return(model, z, r, stamps, gamma, a, b)
    close = np.zeros((z.shape[0], z.shape[0]), dtype=bool)
    close[a[same], b[same]] = close[b[same], a[same]] = True
    return first_of_each(close)
