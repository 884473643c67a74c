"""Which tracks a Remote ID claim holds against a radar that sees nothing there.

A radar that looks where a drone says it is and sees nothing is no evidence that the drone is
gone, once a physical sensor saw it while its broadcaster's reports landed on it: a drone that
descends into the ground clutter, lands, or turns its small side to the radar still says where
it is. Such a track is charged no radar's misses and is timed by its reports
(`TrackManager.record`, `viewing`) while they keep coming. A claim no physical sensor ever backed
holds nothing: claims are cheap (a laptop can announce a thousand drones), and inside a radar's
coverage the radar's looks reject its track before it confirms.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cuas_node.fusion.measurement_models import PositionVelocityModel
from cuas_node.fusion.sensor_stats import SensorStats
from cuas_node.fusion.tracks import TrackTable

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

CLAIM_PERIODS = 3.0  # a claim holds this many report intervals: two lost broadcasts end nothing


def claimed(
    table: TrackTable, stats: SensorStats, lag_s: FloatArray, active: IndexArray, t: float
) -> BoolArray:
    """Tracks a claim holds (`table.t_claimed`, set by `remote_id_input` for a track physically
    seen when the reports landed on it, and renewed by each report while it holds): reported
    again within `CLAIM_PERIODS` of the receiver's report intervals (at least F3411's 1 s,
    `sensor_stats.REMOTE_ID_INTERVAL_S`), on the receiver's own clock: `lag_s` (per sensor, how
    late its newest scan arrived) says how much later than the promptest sensor it delivers."""
    receivers = [b for b, m in stats.models.items() if isinstance(m, PositionVelocityModel)]
    if not receivers:
        return np.zeros(active.size, dtype=bool)
    late = float(lag_s[receivers].max() - lag_s[np.isfinite(stats.last_t)].min())
    window = CLAIM_PERIODS * float(np.nanmax(stats.period_s[receivers]))
    return np.asarray(t - late - table.t_claimed[active] <= window)
