"""A radar's learnt detection probability is that of targets: tracks that stayed where they
started (a flickering reflector, a tree, a roof edge tracked before the site is known) teach it
nothing (`looks.moved`). Counted, an outside test's twenty trees (a plot in a third of the
scans) taught its radar a Pd of 0.40 (0.85 in truth), and every lost track then waited 36 misses
in a row to be deleted."""

from __future__ import annotations

import io
import json
import math
import random
import tempfile
from pathlib import Path

from cuas_node.config import load_config
from cuas_node.kernel.measurement import RadarDetection
from cuas_node.publish import wire
from cuas_node.track import Tracking
from tests.test_frame_stamps import FRAME_TOML
from tests.test_frame_stamps import _tracking as frame_tracking

TOML = FRAME_TOML.replace("false_alarms_per_scan = 5", "false_alarms_per_scan = 3")

T0 = 1_750_000_000.0
SIGMAS = (2.0, math.radians(1.0), math.radians(1.0))
PD = 0.9
DRONES = ((400.0, -0.5, 12.0), (700.0, 0.0, -10.0), (1000.0, 0.4, 8.0))  # range, azimuth, speed across
GONE_AT = 20.0  # the first drone lands


def _lines(
    seconds: float, reflectors: int, drones: tuple[tuple[float, float, float], ...] = DRONES, seed: int = 2
) -> list[str]:
    """Drones crossing the field of view (Pd 0.9; the first lands at `GONE_AT`), `reflectors`
    fixed points each giving a plot in a third of the scans, 3 false alarms a scan; 10 scans a
    second."""
    rng = random.Random(seed)
    spots = [
        (rng.uniform(150, 1400), rng.uniform(-0.9, 0.9), rng.uniform(0.0, 0.03)) for _ in range(reflectors)
    ]
    lines = []
    for n in range(round(seconds * 10)):
        t = n / 10.0
        plots = [
            (r, az + v * t / r, 0.1)
            for k, (r, az, v) in enumerate(drones)
            if rng.random() < PD and not (k == 0 and t >= GONE_AT)
        ]
        plots += [spot for spot in spots if rng.random() < 1.0 / 3.0]
        plots = [
            (r + rng.gauss(0, SIGMAS[0]), az + rng.gauss(0, SIGMAS[1]), el + rng.gauss(0, SIGMAS[2]))
            for r, az, el in plots
        ]
        plots += [(rng.uniform(20, 1500), rng.uniform(-1.0, 1.0), rng.uniform(-0.3, 0.3)) for _ in range(3)]
        for r, az, el in plots:
            m = RadarDetection("plots", T0 + t, t + 0.05, r, az, el, None, *SIGMAS, None, 12.0)
            lines.append(wire.dumps(wire.measurement_record(m)))
    return lines


def _tracking(lines: list[str]) -> Tracking:
    return frame_tracking(lines, TOML)


def _learnt_pd(tracking: Tracking) -> float:
    tracker = tracking.core.engine.tracker
    return tracker.stats.pd(tracker.sensor_bits["plots"])


def _last_published_near_the_landed_drone(tracking: Tracking) -> float:
    """The last time a published track lay within 30 m of where the first drone landed."""
    r, az, v = DRONES[0]
    az_end = az + v * GONE_AT / r
    east, north = r * math.sin(az_end), r * math.cos(az_end)
    last = -math.inf
    assert isinstance(tracking.out, io.StringIO)
    for line in tracking.out.getvalue().splitlines():
        doc = json.loads(line)
        for tr in doc.get("tracks", []):
            if tr["status"] in ("confirmed", "coasting") and math.dist(tr["enu_m"][:2], (east, north)) < 30.0:
                last = doc["t"] - T0
    return last


def test_tracks_on_flickering_reflectors_do_not_teach_the_radar_its_pd() -> None:
    """Twenty reflectors tracked beside three drones: the learnt Pd stays the drones' (0.9), as
    without the reflectors, so a landed drone's track ends as soon."""
    clean, cluttered = _tracking(_lines(30.0, 0)), _tracking(_lines(30.0, 20))
    assert _learnt_pd(clean) > 0.82
    assert _learnt_pd(cluttered) > 0.82
    assert _last_published_near_the_landed_drone(cluttered) < GONE_AT + 2.0


def test_stationary_tracks_leave_the_configured_pd_in_place() -> None:
    """Nothing moved: the radar's Pd is not learnt from tracks that stayed put (the configured
    0.9 default, not the third a reflector shows)."""
    assert abs(_learnt_pd(_tracking(_lines(15.0, 20, drones=()))) - 0.9) < 0.01


def test_a_scanning_radar_learns_no_pd_from_reflectors_either() -> None:
    """A scanning radar (`sweeps`) sees six reflectors, a plot in half of its sweeps each: the
    misses owed for whole sweeps (`sweep.SweepScan.charge`) teach it nothing either (helper-85:
    0.30)."""
    from tests.test_sweeping_radar import HALF, SWEEP_TOML
    from tests.test_sweeping_radar import SIGMAS as SWEEP_SIGMAS

    rng = random.Random(1)
    spots = [(rng.uniform(800, 4000), rng.uniform(-1.0, 1.0)) for _ in range(6)]
    plots = [
        (n + (az + HALF) / (2 * HALF), r + rng.gauss(0, SWEEP_SIGMAS[0]), az + rng.gauss(0, SWEEP_SIGMAS[1]))
        for n in range(120)
        for r, az in spots
        if rng.random() < 0.5
    ]
    lines = []
    for t_rel, r, az in sorted(plots):
        t = T0 + round(t_rel, 3)
        m = RadarDetection("surv", t, t + 0.2, r, az, 0.05, None, *SWEEP_SIGMAS, None, 15.0)
        lines.append(wire.dumps(wire.measurement_record(m)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "radar.toml"
        path.write_text(SWEEP_TOML.replace("false_alarms_per_scan = 10", "false_alarms_per_scan = 0.5"))
        tracking = Tracking(load_config(path), io.StringIO())
    tracking.run(lines)
    tracker = tracking.core.engine.tracker
    assert tracker.stats.pd(tracker.sensor_bits["surv"]) == 0.9


def test_reflectors_seen_by_a_coarse_and_a_fine_radar_have_not_moved() -> None:
    """Fifteen reflectors seen by a coarse radar (15 m, 3°) and a fine one (0.5 m, 0.3°): the
    coarse radar's first plot lies many of the fine radar's cells off, and the fine radar's first
    update moved the track there; judged on the coarsest radar that fed it, no track moved
    (helper-85: 7 of 15, and both radars learnt 0.32)."""
    coarse = TOML.replace("range_sigma_m = 2", "range_sigma_m = 15").replace(
        "az_sigma_deg = 1.0", "az_sigma_deg = 3.0"
    )
    fine = (
        TOML.split("[[sensors]]")[1]
        .replace('id = "plots"', 'id = "fine"')
        .replace("range_sigma_m = 2", "range_sigma_m = 0.5")
        .replace("az_sigma_deg = 1.0", "az_sigma_deg = 0.3")
        .replace("el_sigma_deg = 1.0", "el_sigma_deg = 0.3")
    )
    sigmas = {"plots": (15.0, math.radians(3.0)), "fine": (0.5, math.radians(0.3))}
    rng = random.Random(3)
    spots = [(rng.uniform(200, 800), rng.uniform(-0.8, 0.8)) for _ in range(15)]
    lines = []
    for n in range(300):
        for sensor, late in (("plots", 0.0), ("fine", 0.05)):
            s_range, s_angle = sigmas[sensor]
            for r, az in spots:
                if rng.random() < 1.0 / 3.0:
                    t = n / 10.0 + late
                    noisy = (
                        r + rng.gauss(0, s_range),
                        az + rng.gauss(0, s_angle),
                        0.05 + rng.gauss(0, s_angle),
                    )
                    m = RadarDetection(
                        sensor, T0 + t, t + 0.02, *noisy, None, s_range, s_angle, s_angle, None, 12.0
                    )
                    lines.append(wire.dumps(wire.measurement_record(m)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "radar.toml"
        path.write_text(coarse + "\n[[sensors]]" + fine)
        tracking = Tracking(load_config(path), io.StringIO())
    tracking.run(lines)
    tracker = tracking.core.engine.tracker
    table = tracker.table
    established = table.status[table.active()] >= 2
    assert established.sum() >= 8 and not table.moved[table.active()][established].any()
    assert all(tracker.stats.pd(tracker.sensor_bits[s]) == 0.9 for s in ("plots", "fine"))
