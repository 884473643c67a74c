"""Which tracks a Remote ID claim holds against a radar that no longer sees them.

A radar that looks where a drone says it is and sees nothing is no proof that the drone is gone,
once a physical sensor saw it while its own broadcaster's reports landed on it: a drone that
descends into the ground clutter, lands, or turns its small side to the radar still says where it
is. The rule is here; where it acts:
- earned (`earned`) by `confirm_reports` reports in a row of the track's bound broadcaster that
  landed on it while a physical sensor supported it (counted by `identity`), renewed (`renew`,
  from `remote_id_input`) by each later report of that broadcaster landing on it while it holds;
- it holds (`claimed`) for `CLAIM_PERIODS` of the receivers' report intervals and their
  lateness after its last report, on the data's clock (two lost broadcasts end nothing), and
  while the track is within `rid_loose_gate_m` across and above where a physical sensor last
  saw it (any height below: a landing);
- while it holds (`TrackManager.record`), the track is charged the radar's misses but deleted by
  none (a lapsed claim ends it at its next miss), the radar learns no Pd from it, the claim's
  reports shift no M-of-N window and hold the target, and a radar hit counts as physical support
  only once the track holds its target by the radar's own evidence (then its misses are
  forgiven): a clutter plot in its gate is not the drone back; while no radar has updated it
  since the claim, its reports time it (`held`, `TrackManager.viewing`); and `identity` judges
  its reports neither phantom nor a neighbour's.
A claim no physical sensor ever backed holds nothing: claims are cheap (a laptop can announce a
thousand drones), and inside a radar's coverage the radar's looks reject its track before it
confirms. What remains possible (docs/mqtt.md): a broadcaster whose reports landed on some
physically seen track (a bird) for `confirm_reports` reports can keep that track after the radar
loses it, within `rid_loose_gate_m` across and above where it was lost, while it broadcasts: shown
`unconfirmed`, and judged neither phantom nor `inconsistent` meanwhile.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cuas_node.fusion.measurement_models import PositionVelocityModel
from cuas_node.fusion.sensor_stats import SensorStats, fed_by
from cuas_node.fusion.tracks import TrackTable

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

CLAIM_PERIODS = 3.0  # a claim holds this many report intervals (and their lateness): two lost end nothing


def _window_s(
    table: TrackTable, stats: SensorStats, lag_s: FloatArray | None, active: IndexArray
) -> FloatArray:
    """Per track, how long after its last report its claim holds: `CLAIM_PERIODS` of the report
    interval of the receivers that fed it (at least F3411's 1 s, `REMOTE_ID_INTERVAL_S`) and how
    late a report may come (`REMOTE_ID_LATE`), as long as their own timeouts keep it; plus,
    judged on the data's clock (`lag_s`, per sensor: how late its newest scan arrived), how much
    later than the promptest sensor they deliver. 0 for a track no receiver fed."""
    bits = np.array(
        [b for b, m in stats.models.items() if isinstance(m, PositionVelocityModel)], dtype=np.intp
    )
    if not bits.size:
        return np.zeros(active.size)
    window = (CLAIM_PERIODS + stats.look_late[bits]) * stats.period_s[bits]
    if lag_s is not None:
        window = window + lag_s[bits] - lag_s[np.isfinite(stats.last_t)].min()
    fed = fed_by(table.sensor_mask[active], bits)
    return np.asarray(np.max(np.where(fed, np.nan_to_num(window), 0.0), axis=1), dtype=np.float64)


def claimed(
    table: TrackTable, stats: SensorStats, lag_s: FloatArray, active: IndexArray, t: float, reach_m: float
) -> BoolArray:
    """Tracks a claim holds at `t` (the data's clock), within `reach_m` (`rid_loose_gate_m`)
    across and above where a physical sensor last saw them, any height below: a drone that went
    down into clutter or landed is near there (a landing from 200 m must not end its claim),
    while a claim that carries its track further is one the radar, looking there, should see
    again (and a spoofer must not take a bird's track out of sight and away with it)."""
    within = np.asarray(t - table.t_claimed[active] <= _window_s(table, stats, lag_s, active))
    if not within.any():  # (every scan of a node without Remote ID, and most with it)
        return within
    moved = table.x[active, :3] - table.x_physical[active]
    return within & (np.hypot(moved[:, 0], moved[:, 1]) <= reach_m) & (moved[:, 2] <= reach_m)


def held(
    table: TrackTable, stats: SensorStats, lag_s: FloatArray, active: IndexArray, t: float, reach_m: float
) -> BoolArray:
    """Claimed tracks no radar has updated since the claim: their reports time them."""
    return claimed(table, stats, lag_s, active, t, reach_m) & (
        table.t_physical[active] < table.t_claimed[active]
    )


def earned(supported: bool, landed_count: int, confirm_reports: int) -> bool:
    """A report of the track's bound broadcaster earns its claim once `confirm_reports` of its
    reports in a row landed on the track while a physical sensor supported it (`identity`:
    `supported`, `landed_count`)."""
    return supported and landed_count >= confirm_reports


def renew(table: TrackTable, stats: SensorStats, slot: int, t: float, earned: bool) -> None:
    """A report of the track's own broadcaster at `t` (the receiver's clock) landed on `slot`:
    it starts a claim when `earned`, and renews one that still holds."""
    here = np.array([slot], dtype=np.intp)
    if earned or t - table.t_claimed[slot] <= _window_s(table, stats, None, here)[0]:
        table.t_claimed[slot] = max(table.t_claimed[slot], t)
