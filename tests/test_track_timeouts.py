"""Which sensors time a track out (`TrackManager.viewing`): the radars that fed it and can see
it now; every sensor that fed it only when no such radar can. Timed by the fastest sensor that
ever fed it, a track kept a fast radar's or Remote ID's short timeouts after that sensor could
no longer see it or fell silent, and coasted between a slow radar's scans."""

from __future__ import annotations

import math
import random

import numpy as np

from cuas_node.assembly import core_setup
from cuas_node.config import build_config
from cuas_node.core.step import NodeCore
from cuas_node.fusion.tracks import Status
from cuas_node.kernel.measurement import RadarDetection, RemoteIdReport
from tests.reports import remote_id_at

T0 = 1_750_000_000.0
SIGMAS = (5.0, math.radians(0.5), math.radians(1.0))


def test_the_sensors_timing_a_track_are_its_feeders_that_can_see_it() -> None:
    """`TrackManager.viewing`: of a track's feeders, the radars that look at it; where none
    does, the other sensors that fed it (a fast radar out of view timed a track Remote ID kept
    at 1 Hz: coasting after every report); every feeder of a track radars alone fed. A Remote
    ID receiver that fed the track once kept the fallback from applying, and the track, out of
    its one radar's view at a soft beam edge, was timed by Remote ID's period with no radar's
    patience."""
    radar = {"kind": "radar", "max_range_m": 5000, "min_range_m": 200, "fov_az_deg": 60, "fov_el_deg": 20}
    radar |= {"range_sigma_m": 5, "az_sigma_deg": 0.5, "el_sigma_deg": 1.0, "rate_hz": 1, "range_rate": False}
    sensors = [
        radar | {"id": "long", "mount": {"yaw_deg": 0.0}},
        radar
        | {"id": "short", "rate_hz": 20, "max_range_m": 300, "min_range_m": 5, "mount": {"yaw_deg": 180.0}},
        {"kind": "remoteid", "id": "rid", "port": "/dev/null"},
    ]
    data = {"node": {"id": "t", "position": {"lat": 52.0, "lon": 4.0, "alt_m": 0.0}}, "sensors": sensors}
    data["fusion"] = {"reorder_window_s": 0.0}
    core = NodeCore(core_setup(build_config(data, "test")))
    plots = [
        RadarDetection(sid, T0, T0, r, 0.0, 0.05, None, *SIGMAS, None, 15.0)
        for sid, r in (("long", 3000.0), ("short", 100.0))
    ]
    core.step(T0, plots)  # both radars known, and their accuracies
    tracker = core.engine.tracker
    bits = tracker.sensor_bits
    off_edge = math.radians(61.0)  # north is the long radar's boresight; its edge at 60 degrees
    outside = [2000 * math.sin(off_edge), 2000 * math.cos(off_edge), 100, 0, 0, 0]
    x = np.array([[1000.0, 1000.0, 100.0, 0, 0, 0], outside, outside, [1000.0, 1000.0, 100.0, 0, 0, 0]])
    p = np.tile(np.eye(6), (4, 1, 1))
    p[3, :3, :3] *= 400.0**2  # inside the coverage, but too loosely known for a miss to count
    slots = tracker.table.allocate(x, p, T0, bits["long"], True)
    radars = np.uint64((1 << bits["long"]) | (1 << bits["short"]))
    tracker.table.sensor_mask[slots] = radars | np.uint64(1 << bits["rid"])
    tracker.table.sensor_mask[slots[2]] = radars
    viewing = tracker.manager.viewing(slots, T0)
    assert viewing[0] == np.uint64(1 << bits["long"])  # not the 20 Hz radar's, nor Remote ID's
    assert viewing[1] == np.uint64(1 << bits["rid"])  # out of every radar's view: Remote ID's
    assert viewing[2] == radars  # fed by radars alone: theirs
    assert viewing[3] == np.uint64(1 << bits["rid"])  # no radar looks at it


def test_a_radar_track_is_timed_by_the_radar_once_remote_id_falls_silent() -> None:
    """A 1 Hz radar tracks a drone that broadcast Remote ID at 5 Hz for its first 10 s. Timed by
    the fastest sensor that fed it, Remote ID's 0.2 s, the track coasted between every two radar
    scans after the broadcasts stopped (91 status changes in 55 s); a sensor that reports at
    will keeps a track fed while it reports, and the radar that sees it times it."""
    radar = {"kind": "radar", "id": "long", "max_range_m": 5000, "min_range_m": 200, "fov_az_deg": 60}
    radar |= {"fov_el_deg": 20, "range_sigma_m": 5, "az_sigma_deg": 0.5, "el_sigma_deg": 1.0, "rate_hz": 1}
    radar |= {"false_alarms_per_scan": 0.5, "range_rate": False}
    data = {"node": {"id": "t", "position": {"lat": 52.0, "lon": 4.0, "alt_m": 0.0}}}
    data |= {
        "fusion": {"reorder_window_s": 0.0},
        "sensors": [radar, {"kind": "remoteid", "id": "rid", "port": "/dev/null"}],
    }
    core = NodeCore(core_setup(build_config(data, "test")))
    frame = core.engine.frame
    assert frame is not None
    rng = random.Random(1)
    measurements: list[RadarDetection | RemoteIdReport] = []
    for k in range(30):
        t = k + 0.013
        e, n, u = 300.0 + 5.0 * t, 2000.0, 100.0
        r, az, el = math.hypot(e, n, u), math.atan2(e, n), math.asin(u / math.hypot(e, n, u))
        measurements.append(
            RadarDetection("long", T0 + t, T0 + t, r + rng.gauss(0, 5), az, el, None, *SIGMAS, None, 15.0)
        )
    for k in range(50):
        t = 0.2 * k + 0.05
        measurements.append(remote_id_at(frame, [300.0 + 5.0 * t, 2000.0, 100.0], T0 + t))
    measurements.sort(key=lambda m: m.t_capture)
    statuses = set()
    for k in range(1, 560):
        now = T0 + 0.05 * k
        core.step(now, [m for m in measurements if now - 0.05 < m.t_capture <= now])
        table = core.engine.tracker.table
        statuses |= {int(table.status[s]) for s in table.active()}
    assert Status.CONFIRMED in statuses and Status.COASTING not in statuses
