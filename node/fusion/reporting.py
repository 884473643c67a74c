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
from cuas_node.fusion.tracker import TrackSnapshot
from cuas_node.fusion.tracks import TrackTable
from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.reports import Matrix3, TrackReport, Vector3

FloatArray = npt.NDArray[np.float64]


def _vector(v: FloatArray) -> Vector3:
    return float(v[0]), float(v[1]), float(v[2])


def track_reports(
    snapshots: list[TrackSnapshot],
    slots: npt.NDArray[np.intp] | None,
    frame: LocalFrame,
    table: TrackTable,
    binder: IdentityBinder,
    in_physical_coverage: Callable[[FloatArray], bool],
) -> list[TrackReport]:
    """One report per snapshot; `slots` (the live slots of the snapshots, None for deleted tracks)
    lets live tracks carry their Remote ID identity."""
    if not snapshots:
        return []
    enu = np.array([s.enu for s in snapshots])
    lat, lon, alt = frame.to_geodetic(enu)

    def geodetic(point: FloatArray) -> tuple[float, float, float]:
        la, lo, al = frame.to_geodetic(point)
        return float(la), float(lo), float(al)

    reports = []
    for i, s in enumerate(snapshots):
        cov: Matrix3 = (_vector(s.cov[0]), _vector(s.cov[1]), _vector(s.cov[2]))
        kinematics = classify.Kinematics(s.speed_mps, s.speed_sigma_mps, s.accel_mps2, s.extent_m, s.hover_s)
        posterior = classify.posterior(s.class_logp, kinematics)
        binding = None
        if slots is not None:
            binding = binder.describe(s.number, table, int(slots[i]), s.t, in_physical_coverage, geodetic)
        reports.append(
            TrackReport(
                number=s.number,
                status=s.status,
                t=s.t,
                lat=float(lat[i]),
                lon=float(lon[i]),
                alt_m=float(alt[i]),
                enu_m=_vector(s.enu),
                vel_enu_mps=_vector(s.vel),
                pos_cov_enu_m2=cov,
                classification=classify.summary(posterior, s.evidence_mask, s.hover_s),
                sensors=tuple(s.sensors),
                bearing_only=s.bearing_only,
                remote_id=binding,
            )
        )
    return reports
