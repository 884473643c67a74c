"""The node's own part of the `health` message: each sensor's state and rates, and fusion's counts.

Rates are named after what they count, per sensor kind, so that nobody reads a radar's detections
per second as its frame rate: a TI radar reports `frames_per_s` (frames its parser accepted) and
`detections_per_s` (clustered detections handed to fusion); a GPS `epochs_per_s` and `fixes_per_s`;
and so on (`RATE_NAMES`). `rate_hz`, the measurements per second, stays for consumers of schema 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cuas_node.core.step import FusionStatus
from cuas_node.drivers.driver import SensorHealth
from cuas_node.kernel.measurement import SensorState

SILENT_AFTER_S = 5.0
"""An open sensor that delivered nothing for this long is `degraded`: a technician must look."""

RATE_NAMES: dict[str, tuple[str, str]] = {
    "ti-mmwave": ("frames", "detections"),
    "nmea": ("epochs", "fixes"),
    "remoteid": ("messages", "reports"),
    "acoustic-array": ("frames", "bearings"),
    "fpv-rx5808": ("sweeps", "detections"),
}
"""Per sensor kind: (the parser counter that counts its protocol records, what its measurements
are). Both become `<name>_per_s` in the sensor's health entry."""


@dataclass
class RateSampler:
    """The counts at the previous health message, to turn running totals into rates."""

    last: dict[str, int] = field(default_factory=dict)

    def rate(self, name: str, total: int, interval_s: float) -> float:
        previous = self.last.get(name, 0)  # counters start at 0 with the node: the first rate is since start
        self.last[name] = total
        return max(0, total - previous) / interval_s if interval_s > 0 else 0.0


def sensor_age_s(health: SensorHealth, now: float) -> float | None:
    """Seconds since the sensor's last sign of life: on the monotonic clock where the driver
    gives it (`SensorHealth.age_s`), else by the wall clock; None: never seen."""
    if health.last_seen is None:
        return None
    return health.age_s if health.age_s is not None else now - health.last_seen


def sensor_state(
    health: SensorHealth, now: float, stale_behind_s: float | None = None, ahead_s: float | None = None
) -> tuple[SensorState, str]:
    """The sensor's state and its reason as health and the status LED show it: the driver's,
    unless the driver is content but the sensor has been silent, or the node drops most of what
    it delivers for its stamps: scans captured too long before the newest (`stale_behind_s`,
    how far behind: `late.StaleScans`) or stamped after the node's time (`ahead_s`, how far
    ahead: `NodeCore._captured_by`). A sensor whose every measurement is dropped must not read
    `ok`: it delivers, and nothing of it is used."""
    age = sensor_age_s(health, now)
    if health.state != SensorState.OK:
        return health.state, health.detail
    if age is None or age > SILENT_AFTER_S:
        return (
            SensorState.DEGRADED,
            "no data from the sensor yet" if age is None else f"no data for {age:.0f} s",
        )
    if ahead_s is not None:
        return SensorState.DEGRADED, (
            f"the node drops most of its measurements as stamped {ahead_s:.1f} s after the node's "
            "time (its clock ahead of the node's, or the node's behind: synchronise both)"
        )
    if stale_behind_s is not None:
        return SensorState.DEGRADED, (
            f"fusion drops most of its scans as stale: captured {stale_behind_s:.1f} s before the "
            "newest radar or array scan, its normal delivery delay included (its clock behind the "
            "node's: synchronise it or calibrate its time_offset_s; or a host or link too slow to "
            "deliver them in time)"
        )
    return health.state, health.detail


def sensor_entry(
    health: SensorHealth,
    errors: dict[str, int],
    queue_dropped: int,
    rates: RateSampler,
    now: float,
    interval_s: float,
    stale_behind_s: float | None = None,
    ahead_s: float | None = None,
) -> dict[str, Any]:
    """One element of the `health.sensors` array (`sensor_state` for the last two)."""
    state, detail = sensor_state(health, now, stale_behind_s, ahead_s)
    age = sensor_age_s(health, now)
    counters = dict(health.counters)
    counters.update({f"{k}_errors": v for k, v in errors.items()})
    counters["queue_dropped"] = queue_dropped
    measurements_per_s = rates.rate("measurements", health.measurements, interval_s)
    entry: dict[str, Any] = {
        "id": health.sensor_id,
        "kind": health.kind,
        "state": str(state),
        "rate_hz": round(measurements_per_s, 2),
    }
    record_name, measurement_name = RATE_NAMES.get(health.kind, ("records", "measurements"))
    if record_name in health.counters:
        records_per_s = rates.rate(record_name, health.counters[record_name], interval_s)
        entry[f"{record_name}_per_s"] = round(records_per_s, 2)
    entry[f"{measurement_name}_per_s"] = round(measurements_per_s, 2)
    entry["measurements"] = health.measurements
    entry["counters"] = counters
    entry["detail"] = detail if state != SensorState.OK else ""
    if health.last_seen is not None:
        entry["last_seen"] = round(health.last_seen, 3)
        entry["age_s"] = round(max(0.0, age or 0.0), 3)
    return entry


def fusion_entry(status: FusionStatus, queue_depth: int) -> dict[str, Any]:
    """`health.fusion`: what is being tracked, by status, and how the fusion thread keeps up."""
    return {
        "tracks": status.confirmed + status.coasting,
        "confirmed": status.confirmed,
        "coasting": status.coasting,
        "tentative": status.tentative,
        "births_refused": status.births_refused,
        "births_pruned": status.births_pruned,
        "late": status.late,
        "held": status.held,
        "queue_depth": queue_depth,
        "cycle_ms": round(status.cycle_ms, 3),
        "remote_id": status.remote_id,
        "dropped": status.dropped,
        "without_range_rate": status.without_range_rate,
        "outside_coverage": status.outside_coverage,
        "fixtures_learnt": status.fixtures_learnt,
        "clutter_spots": status.clutter_spots,
        "range_rate_contradicted": status.range_rate_contradicted,
    }
