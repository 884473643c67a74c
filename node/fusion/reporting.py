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
from cuas_node.fusion.snapshots import TrackSnapshot
from cuas_node.fusion.tracks import TrackTable
from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.reports import TrackReport, Vector3

FloatArray = npt.NDArray[np.float64]


def _vector(v: Sequence[float]) -> Vector3:
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

    column = {
        name: np.array([getattr(s, name) for s in snapshots], dtype=np.float64)
        for name in ("speed_mps", "speed_sigma_mps", "accel_mps2", "extent_m", "hover_s")
    }
    kinematics = classify.Kinematics(**column)
    logp = classify.posterior(np.array([s.class_logp for s in snapshots]), kinematics)
    evidence = np.array([s.evidence_mask for s in snapshots], dtype=np.uint64)
    classes = classify.summaries(logp, evidence, column["hover_s"])
    position = enu.tolist()
    lats, lons, alts = np.asarray(lat).tolist(), np.asarray(lon).tolist(), np.asarray(alt).tolist()
    vel = np.array([s.vel for s in snapshots]).tolist()
    cov = np.array([s.cov for s in snapshots]).tolist()
    reports = []
    for i, s in enumerate(snapshots):
        binding = None
        if slots is not None:
            binding = binder.describe(s.number, table, int(slots[i]), s.t, in_physical_coverage, geodetic)
        c = cov[i]
        reports.append(
            TrackReport(
                number=s.number,
                status=s.status,
                t=s.t,
                lat=lats[i],
                lon=lons[i],
                alt_m=alts[i],
                enu_m=_vector(position[i]),
                vel_enu_mps=_vector(vel[i]),
                pos_cov_enu_m2=(_vector(c[0]), _vector(c[1]), _vector(c[2])),
                classification=classes[i],
                sensors=tuple(s.sensors),
                bearing_only=s.bearing_only,
                remote_id=binding,
            )
        )
    return reports
