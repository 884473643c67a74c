"""Track snapshots → `TrackReport`s: geodetic positions, the class posterior and the bound identity.

Full precision, SI units, no wire identifiers: rounding and ids are the wire format's business
(`cuas_node.publish.wire`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from cuas_node.fusion import classify
from cuas_node.fusion.identity import IdentityBinder
from cuas_node.fusion.snapshots import Snapshots
from cuas_node.fusion.tracks import TrackTable
from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.reports import TrackReport, Vector3

FloatArray = npt.NDArray[np.float64]


def _vector(v: Sequence[float]) -> Vector3:
    return float(v[0]), float(v[1]), float(v[2])


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
    live = slots.tolist() if slots is not None else None
    reports = []
    rows = zip(s.enu.tolist(), s.vel.tolist(), s.cov.tolist(), strict=True)
    for i, (position, vel, cov) in enumerate(rows):
        binding = None
        if live is not None and live[i] >= 0:
            binding = binder.describe(s.number[i], table, live[i], s.t[i], in_physical_coverage, geodetic)
        reports.append(
            TrackReport(
                number=s.number[i],
                status=s.status[i],
                t=s.t[i],
                lat=lats[i],
                lon=lons[i],
                alt_m=alts[i],
                enu_m=_vector(position),
                vel_enu_mps=_vector(vel),
                pos_cov_enu_m2=(_vector(cov[0]), _vector(cov[1]), _vector(cov[2])),
                classification=classes[i],
                sensors=s.sensors[i],
                bearing_only=s.bearing_only[i],
                remote_id=binding,
            )
        )
    return reports
