"""RF path loss: the RSSI-versus-distance model of the FPV scanner and the Remote ID receivers.

Model (log-distance): RSSI(d) = P1 − 10·n·log10(d / 1 m) + shadowing, with P1 the RSSI at 1 m (the
transmitter's EIRP, the antennas and the receiver's RSSI curve in one number) and n the exponent
(2 in free space, 2.5-4 near the ground and among obstacles). Why fit it per site and receiver:
RSSI is the only range evidence these receivers give, and both the exponent and P1 vary by a
factor that turns 100 m into 50 or 200 m.

Distances come from a reference flight: a Remote ID report carries its own position, so a Remote ID
receiver's samples need nothing else; the FPV scanner's samples are paired with the reference
track (the RID drone carrying the video transmitter, or a GPX/CSV log) at their capture time. The
fit is robust (soft-L1): multipath fades and a body blocking the antenna are outliers, not noise.
It is refused when the distances span less than a factor `min_distance_ratio` (then P1 and n cannot
be told apart) or when either parameter's standard deviation exceeds its limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import least_squares

from cuas_node.calibration.io import ReferenceTrack
from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.measurement import AnyMeasurement, RemoteIdReport, RfPresence

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class PathLossOptions:
    min_points: int = 20
    min_distance_m: float = 2.0  # closer than this the far-field model does not hold
    min_distance_ratio: float = 4.0
    max_sigma_exponent: float = 0.25
    max_sigma_p1_db: float = 3.0
    f_scale_db: float = 4.0
    max_reference_gap_s: float = 3.0


@dataclass
class PathLossResult:
    sensor_id: str
    source: str
    p1_dbm: float
    exponent: float
    sigma_p1_db: float
    sigma_exponent: float
    correlation: float
    shadowing_db: float
    n_used: int
    distance_min_m: float
    distance_max_m: float
    refusals: list[str]
    plot: dict[str, FloatArray] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return not self.refusals

    def predict(self, distance_m: npt.ArrayLike) -> FloatArray:
        d = np.maximum(np.asarray(distance_m, dtype=np.float64), 1e-3)
        return np.asarray(self.p1_dbm - 10.0 * self.exponent * np.log10(d), dtype=np.float64)

    def report(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "refusals": list(self.refusals),
            "result": {
                "rssi_at_1m_dbm": round(self.p1_dbm, 3),
                "exponent": round(self.exponent, 4),
                "shadowing_sigma_db": round(self.shadowing_db, 3),
                "source": self.source,
            },
            "sigma": {
                "rssi_at_1m_dbm": round(self.sigma_p1_db, 4),
                "exponent": round(self.sigma_exponent, 4),
            },
            "residuals": {
                "n_used": self.n_used,
                "rms_db": round(self.shadowing_db, 3),
                "distance_min_m": round(self.distance_min_m, 2),
                "distance_max_m": round(self.distance_max_m, 2),
            },
            "conditioning": {
                "distance_ratio": round(self.distance_max_m / max(self.distance_min_m, 1e-9), 2),
                "correlation_p1_exponent": round(self.correlation, 4),
            },
        }


def fit_path_loss(
    distance_m: npt.ArrayLike,
    rssi_dbm: npt.ArrayLike,
    sensor_id: str = "",
    source: str = "",
    options: PathLossOptions | None = None,
) -> PathLossResult:
    opt = options or PathLossOptions()
    d = np.asarray(distance_m, dtype=np.float64)
    y = np.asarray(rssi_dbm, dtype=np.float64)
    ok = np.isfinite(d) & np.isfinite(y) & (d >= opt.min_distance_m)
    d, y = d[ok], y[ok]
    refusals: list[str] = []
    if d.size < max(3, opt.min_points):
        refusals.append(f"only {d.size} RSSI samples with a known distance (need {opt.min_points})")
    if d.size < 3:
        return PathLossResult(
            sensor_id,
            source,
            math.nan,
            math.nan,
            math.inf,
            math.inf,
            math.nan,
            math.nan,
            int(d.size),
            float(d.min(initial=0.0)),
            float(d.max(initial=0.0)),
            refusals,
        )
    x = 10.0 * np.log10(d)

    def residual(p: FloatArray) -> FloatArray:
        return np.asarray(y - (p[0] - p[1] * x), dtype=np.float64)

    # Start from ordinary least squares (the model is linear in P1 and n).
    design = np.column_stack([np.ones_like(x), -x])
    start = np.linalg.lstsq(design, y, rcond=None)[0]
    sol = least_squares(residual, start, loss="soft_l1", f_scale=opt.f_scale_db)
    p1, n = (float(v) for v in sol.x)
    res = sol.fun
    scale = 1.4826 * float(np.median(np.abs(res - np.median(res))))
    info = sol.jac.T @ sol.jac
    try:
        cov = np.linalg.inv(info) * scale**2
        s_p1, s_n = (float(math.sqrt(max(v, 0.0))) for v in np.diag(cov))
        corr = float(cov[0, 1] / (s_p1 * s_n)) if s_p1 > 0 and s_n > 0 else math.nan
    except np.linalg.LinAlgError:
        s_p1, s_n, corr = math.inf, math.inf, math.nan
    ratio = float(d.max() / d.min())
    if ratio < opt.min_distance_ratio:
        refusals.append(
            f"distances span only a factor {ratio:.1f} ({d.min():.0f}-{d.max():.0f} m; need "
            f"{opt.min_distance_ratio:g}): fly from close in (~10 m) out to the far edge of coverage"
        )
    if not s_n <= opt.max_sigma_exponent:
        refusals.append(f"exponent poorly determined (1-sigma {s_n:.2f}, limit {opt.max_sigma_exponent})")
    if not s_p1 <= opt.max_sigma_p1_db:
        refusals.append(f"RSSI at 1 m poorly determined (1-sigma {s_p1:.1f} dB, limit {opt.max_sigma_p1_db})")
    return PathLossResult(
        sensor_id=sensor_id,
        source=source,
        p1_dbm=p1,
        exponent=n,
        sigma_p1_db=s_p1,
        sigma_exponent=s_n,
        correlation=corr,
        shadowing_db=scale,
        n_used=int(d.size),
        distance_min_m=float(d.min()),
        distance_max_m=float(d.max()),
        refusals=refusals,
        plot={"distance_m": d, "rssi_dbm": y},
    )


def samples_from_capture(
    measurements: Sequence[AnyMeasurement],
    sensor_id: str,
    frame: LocalFrame,
    sensor_offset_m: tuple[float, float, float] = (0.0, 0.0, 0.0),
    reference: ReferenceTrack | None = None,
    channel: str | None = None,
    uas_id: str | None = None,
    time_offset_s: float = 0.0,
    max_gap_s: float = 3.0,
) -> tuple[FloatArray, FloatArray, str]:
    """(distance, rssi, description) of a sensor's samples: Remote ID reports by their own position,
    FPV presences by the reference track at their capture time."""
    offset = np.asarray(sensor_offset_m, dtype=np.float64)
    rid = [
        m
        for m in measurements
        if isinstance(m, RemoteIdReport)
        and m.sensor_id == sensor_id
        and m.rssi_dbm is not None
        and m.lat is not None
        and m.lon is not None
        and (m.alt_geo_m is not None or m.alt_baro_m is not None)
        and (uas_id is None or m.uas_id == uas_id)
    ]
    if rid:
        enu = frame.to_enu(
            np.array([m.lat for m in rid], dtype=np.float64),
            np.array([m.lon for m in rid], dtype=np.float64),
            np.array(
                [m.alt_geo_m if m.alt_geo_m is not None else m.alt_baro_m for m in rid], dtype=np.float64
            ),
        )
        d = np.linalg.norm(enu - offset, axis=1)
        return d, np.array([float(m.rssi_dbm or 0.0) for m in rid]), "remote-id self-reported positions"
    rf = [
        m
        for m in measurements
        if isinstance(m, RfPresence)
        and m.sensor_id == sensor_id
        and (
            channel is None
            or channel in (f"{m.band}{m.channel}", *m.aliases)
            or channel == f"{m.freq_mhz:.0f}"
        )
    ]
    if not rf:
        raise ValueError(f"no RSSI samples from sensor {sensor_id!r} in the capture")
    if reference is None:
        raise ValueError("an FPV scanner's samples need a reference track (--reference or Remote ID)")
    t_ref = reference.t
    enu_ref = frame.to_enu(reference.lat, reference.lon, reference.alt_m)
    t = np.array([m.t_capture for m in rf]) + time_offset_s
    i = np.clip(np.searchsorted(t_ref, t), 1, t_ref.size - 1)
    valid = (t >= t_ref[0]) & (t <= t_ref[-1]) & (t_ref[i] - t_ref[i - 1] <= max_gap_s)
    pos = np.stack([np.interp(t, t_ref, enu_ref[:, k]) for k in range(3)], axis=-1)
    d = np.where(valid, np.linalg.norm(pos - offset, axis=1), np.nan)
    return d, np.array([m.rssi_dbm for m in rf]), f"rf presences against {reference.source}"
