"""A Remote ID broadcast the radar does not see (`TrackManager.claimed`, `IdentityBinder.uncontested`).

A radar that looks where a drone says it is and sees nothing is no proof that the drone is not
there: small or low drones broadcast too. Charged the radar's misses, a cooperative drone's track
was deleted 0.4 s after the radar lost it, and each later report started a tentative track that
the next radar frame rejected: the broadcaster was never published again, although docs/mqtt.md
promises such a track, flagged `unconfirmed` with `in_coverage`. A claim that a physical track
contests (a spoofer beside its own drone) is still charged the misses, so its phantom never
confirms."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np

from cuas_node.assembly import core_setup
from cuas_node.config import build_config
from cuas_node.core.step import NodeCore
from cuas_node.kernel.measurement import EmptyRadarScan, Measurement, RadarDetection, RemoteIdReport
from cuas_node.kernel.reports import TrackReport

T0 = 1_750_000_000.0
SIGMAS = (5.0, math.radians(0.5), math.radians(1.0))
RADAR_HZ = 20.0


def _core() -> NodeCore:
    radar = {"kind": "radar", "id": "radar", "max_range_m": 5000, "min_range_m": 200, "fov_az_deg": 60}
    radar |= {"fov_el_deg": 20, "range_sigma_m": 5, "az_sigma_deg": 0.5, "el_sigma_deg": 1.0}
    radar |= {"rate_hz": RADAR_HZ, "false_alarms_per_scan": 0.5, "range_rate": False}
    data = {
        "node": {"id": "t", "position": {"lat": 52.0, "lon": 4.0, "alt_m": 0.0}},
        "fusion": {"reorder_window_s": 0.0},
        "sensors": [radar, {"kind": "remoteid", "id": "rid", "port": "/dev/null"}],
    }
    return NodeCore(core_setup(build_config(data, "test")))


def _where(t: float) -> np.ndarray:
    return np.array([300.0 + 5.0 * t, 2000.0, 100.0])


def _fly(
    core: NodeCore,
    seconds: float,
    radar_sees: Callable[[float], bool],
    broadcasts: Callable[[float], bool],
    claimed_offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> list[tuple[float, list[TrackReport]]]:
    """A drone at `_where`, detected at Pd 0.9 while `radar_sees(t)`, among half a false alarm a
    frame (a frame with no plot is an empty scan: the radar looked), broadcasting at 1 Hz while
    `broadcasts(t)`; the published tracks after each 50 ms step."""
    frame = core.engine.frame
    assert frame is not None
    rng = random.Random(7)
    measurements: list[Measurement] = []
    for k in range(int(seconds * RADAR_HZ)):
        t = k / RADAR_HZ + 0.013
        e, n, u = _where(t)
        plots = [  # (range, azimuth, elevation): the drone's and about one false alarm in two frames
            (rng.uniform(200.0, 5000.0), rng.uniform(-1.0, 1.0), rng.uniform(-0.3, 0.3))
            for _ in range(int(rng.random() < 0.5))
        ]
        if radar_sees(t) and rng.random() < 0.9:
            r = math.hypot(e, n, u)
            az = math.atan2(e, n) + rng.gauss(0.0, SIGMAS[1])
            el = math.asin(u / r) + rng.gauss(0.0, SIGMAS[2])
            plots.append((r + rng.gauss(0, 5), az, el))
        measurements += [
            RadarDetection("radar", T0 + t, T0 + t, r, az, el, None, *SIGMAS, None, 15.0)
            for r, az, el in plots
        ] or [EmptyRadarScan("radar", T0 + t, T0 + t)]
    for k in range(int(seconds)):
        t = k + 0.05
        if not broadcasts(t):
            continue
        lat, lon, alt = frame.to_geodetic(_where(t) + np.array(claimed_offset))
        measurements.append(
            RemoteIdReport(
                "rid",
                T0 + t,
                T0 + t,
                "DRONE1",
                lat=float(lat),
                lon=float(lon),
                alt_geo_m=float(alt),
                vel_enu_mps=(5.0, 0.0, 0.0),
                h_accuracy_m=10.0,
                v_accuracy_m=15.0,
                speed_accuracy_mps=1.0,
            )
        )
    measurements.sort(key=lambda m: m.t_capture)
    published = []
    i = 0
    for k in range(1, int(seconds / 0.05)):
        now = T0 + 0.05 * k
        batch = []
        while i < len(measurements) and measurements[i].t_capture <= now:
            batch.append(measurements[i])
            i += 1
        core.step(now, batch)
        published.append((now - T0, [r for r in core.tracks_now() if r.status != "tentative"]))
    return published


def test_a_broadcasting_drone_the_radar_loses_keeps_its_one_track() -> None:
    """Seen by the radar for 10 s, then not (empty frames: the radar looks and sees nothing),
    while it broadcasts for 40 s: one track throughout, published `unconfirmed` and in coverage
    once nothing physical supports it; when the broadcasts stop too, the radar's misses end it."""
    published = _fly(_core(), 50.0, radar_sees=lambda t: t < 10.0, broadcasts=lambda t: t < 40.0)
    numbers = {r.number for _, tracks in published for r in tracks}
    assert len(numbers) == 1
    held = [tracks for t, tracks in published if 1.0 <= t < 40.0]
    assert all(len(tracks) == 1 and tracks[0].status == "confirmed" for tracks in held)
    late = next(tracks[0] for t, tracks in published if t >= 30.0)
    assert late.remote_id is not None
    assert (late.remote_id.consistency, late.remote_id.in_coverage) == ("unconfirmed", True)
    assert np.linalg.norm(np.array(late.enu_m) - _where(30.0)) < 30.0
    # Two broadcasts missed is the end of the claim; the radar's misses then delete it.
    assert not any(tracks for t, tracks in published if t >= 43.0)


def test_a_broadcaster_the_radar_never_sees_is_tracked_through_a_lost_report() -> None:
    """Never detected by the radar that covers it, the broadcaster gets one confirmed track (each
    report used to start a tentative one the next radar frame rejected), and one report lost on
    the air changes nothing."""
    published = _fly(_core(), 30.0, radar_sees=lambda t: False, broadcasts=lambda t: not 15.0 < t < 16.0)
    numbers = {r.number for _, tracks in published for r in tracks}
    assert len(numbers) == 1
    assert all(len(tracks) == 1 for t, tracks in published if 3.0 <= t < 30.0)


def test_a_spoofer_beside_its_own_drone_gets_no_phantom_track() -> None:
    """The broadcast claims a position 72 m from where the radar sees the drone fly, with its
    velocity: that claim is contested from the first report, so the radar's misses reject its
    phantom track before it confirms; the physical track ends up with the identity, flagged."""
    published = _fly(
        _core(), 20.0, radar_sees=lambda t: True, broadcasts=lambda t: True, claimed_offset=(60.0, 40.0, 0.0)
    )
    numbers = {r.number for _, tracks in published for r in tracks}
    assert len(numbers) == 1
    last = published[-1][1][0]
    assert last.remote_id is not None and last.remote_id.consistency == "inconsistent"
