"""Track snapshots → `TrackReport`s: geodetic positions, the class posterior and the bound identity.

Full precision, SI units, no wire identifiers: rounding and ids are the wire format's business
(`cuas_node.publish.wire`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from cuas_node.fusion import classify
from cuas_node.fusion.identity import IdentityBinder
from cuas_node.fusion.snapshots import Snapshots
from cuas_node.fusion.tracks import TrackTable
from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.reports import TrackReport

FloatArray = npt.NDArray[np.float64]


def track_reports(
    snapshots: Snapshots,
    slots: npt.NDArray[np.intp] | None,
    frame: LocalFrame,
    table: TrackTable,
    binder: IdentityBinder,
    in_physical_coverage: Callable[[FloatArray], bool],
) -> list[TrackReport]:
    """One report per snapshot row; `slots` (the live slots of the rows: −1 or None for deleted
    tracks) lets live tracks carry their Remote ID identity."""
    if not len(snapshots):
        return []
    s = snapshots
    lat, lon, alt = frame.to_geodetic(s.enu)

    def geodetic(point: FloatArray) -> tuple[float, float, float]:
        la, lo, al = frame.to_geodetic(point)
        return float(la), float(lo), float(al)

    kinematics = classify.Kinematics(s.speed_mps, s.speed_sigma_mps, s.accel_mps2, s.extent_m, s.hover_s)
    logp = classify.posterior(s.class_logp, kinematics)
    classes = classify.summaries(logp, s.class_logp, s.evidence_mask, s.hover_s)
    lats, lons, alts = np.asarray(lat).tolist(), np.asarray(lon).tolist(), np.asarray(alt).tolist()
    live = slots.tolist() if slots is not None else [-1] * len(s)
    # Plain tuples from `tolist` rows: a hundred tracks several times a second, so no per-value
    # conversion calls.
    covs = [((a[0], a[1], a[2]), (b[0], b[1], b[2]), (c[0], c[1], c[2])) for a, b, c in s.cov.tolist()]
    reports = []
    rows = zip(live, s.number, s.status, s.t, s.enu.tolist(), s.vel.tolist(), covs, strict=True)
    for i, (slot, number, status, t, position, vel, cov) in enumerate(rows):
        binding = None
        if slot >= 0:
            binding = binder.describe(number, table, slot, t, in_physical_coverage, geodetic)
        reports.append(
            TrackReport(
                number=number,
                status=status,
                t=t,
                lat=lats[i],
                lon=lons[i],
                alt_m=alts[i],
                enu_m=(position[0], position[1], position[2]),
                vel_enu_mps=(vel[0], vel[1], vel[2]),
                pos_cov_enu_m2=cov,
                classification=classes[i],
                sensors=s.sensors[i],
                bearing_only=s.bearing_only[i],
                remote_id=binding,
            )
        )
    return reports
