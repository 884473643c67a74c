"""Typed reports for tests of the outputs (what the core step hands to the publisher), and the
Remote ID reports that fusion tests feed in."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.measurement import RemoteIdReport
from cuas_node.kernel.reports import AlertEvent, AlertKey, ClassSummary, RemoteIdBinding, TrackReport

CLASS = ClassSummary(
    label="multirotor",
    confidence=0.8123,
    probabilities=(
        ("multirotor", 0.8123),
        ("fixed_wing", 0.05),
        ("bird", 0.1),
        ("aircraft", 0.0077),
        ("unknown", 0.03),
    ),
    evidence=("radar_kinematics", "acoustic"),
)


def track(number: int = 1, status: str = "confirmed", **changes: object) -> TrackReport:
    fields: dict[str, object] = {
        "number": number,
        "status": status,
        "t": 1_700_000_000.25,
        "lat": 52.1,
        "lon": 4.3,
        "alt_m": 61.5,
        "enu_m": (120.0, -40.5, 55.0),
        "vel_enu_mps": (3.0, 0.5, 0.0),
        "pos_cov_enu_m2": ((4.0, 0.1, 0.0), (0.1, 4.0, 0.0), (0.0, 0.0, 9.0)),
        "classification": CLASS,
        "sensors": ("radar-1",),
    }
    fields.update(changes)
    return TrackReport(**fields)  # type: ignore[arg-type]


def binding(**changes: object) -> RemoteIdBinding:
    fields: dict[str, object] = {
        "uas_id": "1596F3A2B4C5D6E7F801",
        "consistency": "consistent",
        "last_seen": 1_700_000_000.123456,
        "reported_lat": 52.10000123,
        "reported_lon": 4.30000456,
        "reported_alt_m": 61.456,
        "offset_m": 3.14159,
        "in_coverage": True,
        "id_type": "serial_number",
        "ua_type": "helicopter_or_multirotor",
    }
    fields.update(changes)
    return RemoteIdBinding(**fields)  # type: ignore[arg-type]


def alert(state: str = "new", number: int = 1, serial: int = 1, with_track: bool = True) -> AlertEvent:
    return AlertEvent(
        AlertKey(number, "yard", serial),
        state,
        1_700_000_001.0,
        1_700_000_000.5,
        "critical",
        track(number) if with_track else None,
    )


def remote_id_at(
    frame: LocalFrame,
    enu: npt.ArrayLike,
    t: float,
    uas_id: str = "DRONE1",
    t_receive: float | None = None,
    vel_enu_mps: tuple[float, float, float] = (5.0, 0.0, 0.0),
) -> RemoteIdReport:
    """A broadcaster's report from the receiver `rid` of where it is (ENU in `frame`) at `t`,
    with the accuracies of a good GNSS fix."""
    lat, lon, alt = frame.to_geodetic(np.asarray(enu, dtype=np.float64))
    return RemoteIdReport(
        "rid",
        t,
        t if t_receive is None else t_receive,
        uas_id,
        lat=float(lat),
        lon=float(lon),
        alt_geo_m=float(alt),
        vel_enu_mps=vel_enu_mps,
        h_accuracy_m=10.0,
        v_accuracy_m=15.0,
        speed_accuracy_mps=1.0,
    )
