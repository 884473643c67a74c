"""A Remote ID claim holds a track the radar has lost (`TrackManager.claimed`).

A radar that looks where a drone says it is and sees nothing is no proof that the drone is gone:
a drone descends into the ground clutter, or turns its small side to the radar, and still says
where it is. Charged the radar's misses, a cooperative drone's track was deleted 0.4 s after the
radar lost it, and each later report started a tentative track that the next radar frame
rejected: the broadcaster was never published again, although docs/mqtt.md promises such a
track, flagged `unconfirmed` with `in_coverage`. A claim holds only a track a physical sensor saw
while the reports landed on it: a broadcaster no sensor ever saw (a laptop, a spoofer 170 m from
any drone) gets no track in a radar's coverage, as before."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np

from cuas_node.assembly import core_setup
from cuas_node.config import build_config
from cuas_node.core.step import NodeCore
from cuas_node.kernel.measurement import EmptyRadarScan, Measurement, RadarDetection
from cuas_node.kernel.reports import TrackReport
from tests.reports import remote_id_at

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


def _slow(t: float) -> np.ndarray:
    """2 m/s: a minute after the radar lost it, still within `rid_loose_gate_m` (150 m)."""
    return np.array([300.0 + 2.0 * t, 2000.0, 100.0])


def _fly(
    core: NodeCore,
    seconds: float,
    radar_sees: Callable[[float], bool],
    broadcasts: Callable[[float], bool],
    claim: Callable[[float], np.ndarray] | None = None,
    late_s: float = 0.0,
    others: int = 0,
    impostor_from: float = math.inf,
    path: Callable[[float], np.ndarray] = _where,
    neighbour: np.ndarray | None = None,
) -> list[tuple[float, list[TrackReport]]]:
    """A drone on `path`, detected at Pd 0.9 while `radar_sees(t)`, among half a false alarm a
    frame (a frame with no plot is an empty scan: the radar looked), broadcasting at 1 Hz while
    `broadcasts(t)` that it is at `claim(t)` (default: on `path`), with `path`'s velocity, its
    reports delivered `late_s` after capture; `others` more broadcasters heard 8 km away (out of
    the radar's view), each at 1 Hz at its own phase; from `impostor_from`, another broadcaster
    claims the drone's line; a silent object hovering at `neighbour`, which the radar sees. The
    published tracks near the drone after each 50 ms step."""
    frame = core.engine.frame
    assert frame is not None
    rng = random.Random(7)
    measurements: list[Measurement] = []
    for k in range(int(seconds * RADAR_HZ)):
        t = k / RADAR_HZ + 0.013
        plots = [  # (range, azimuth, elevation): the drone's and about one false alarm in two frames
            (rng.uniform(200.0, 5000.0), rng.uniform(-1.0, 1.0), rng.uniform(-0.3, 0.3))
            for _ in range(int(rng.random() < 0.5))
        ]
        seen = ([path(t)] if radar_sees(t) else []) + ([neighbour] if neighbour is not None else [])
        for e, n, u in seen:
            if rng.random() < 0.9:
                r = math.hypot(e, n, u)
                az = math.atan2(e, n) + rng.gauss(0.0, SIGMAS[1])
                el = math.asin(u / r) + rng.gauss(0.0, SIGMAS[2])
                plots.append((r + rng.gauss(0, 5), az, el))
        measurements += [
            RadarDetection("radar", T0 + t, T0 + t, r, az, el, None, *SIGMAS, None, 15.0)
            for r, az, el in plots
        ] or [EmptyRadarScan("radar", T0 + t, T0 + t)]
    claim = claim or path
    reports = [(k + 0.05, "DRONE1", claim(k + 0.05)) for k in range(int(seconds))]
    reports = [r for r in reports if broadcasts(r[0])]
    reports += [
        (k + 0.55, "IMPOSTOR", path(k + 0.55)) for k in range(int(seconds)) if k + 0.55 >= impostor_from
    ]
    for j in range(others):
        far = np.array([-8000.0 - 100.0 * j, 0.0, 100.0])
        reports += [(k + 0.05 + (j + 1) / (others + 1), f"OTHER{j}", far) for k in range(int(seconds))]
    velocity = tuple((path(1.0) - path(0.0)).tolist())  # (straight lines only)
    measurements += [
        remote_id_at(frame, at, T0 + t, uas_id, T0 + t + late_s, velocity) for t, uas_id, at in reports
    ]
    measurements.sort(key=lambda m: m.t_receive)
    published = []
    i = 0
    for k in range(1, int(seconds / 0.05)):
        now = T0 + 0.05 * k
        batch = []
        while i < len(measurements) and measurements[i].t_receive <= now:
            batch.append(measurements[i])
            i += 1
        core.step(now, batch)
        near = [r for r in core.tracks_now() if r.status != "tentative" and r.enu_m[0] > -5000.0]
        published.append((now - T0, near))
    return published


def _held(
    published: list[tuple[float, list[TrackReport]]], start: float, end: float, coasting: bool = False
) -> bool:
    """One confirmed track throughout [start, end), the same one (`coasting`: or coasting)."""
    spans = [tracks for t, tracks in published if start <= t < end]
    allowed = ("confirmed", "coasting") if coasting else ("confirmed",)
    return all(len(tracks) == 1 and tracks[0].status in allowed for tracks in spans) and (
        len({tracks[0].number for tracks in spans}) == 1
    )


def test_a_broadcasting_drone_the_radar_loses_keeps_its_one_track() -> None:
    """Seen by the radar for 10 s, then not (the radar looks and sees nothing there), while it
    broadcasts until 40 s, the reports of 20 and 21 s lost on the air: one track throughout,
    confirmed but while it goes unfed two report intervals, published `unconfirmed` and in
    coverage once nothing physical supports it; when the broadcasts stop, the claim lapses after
    3 report intervals and its track goes."""
    published = _fly(
        _core(),
        50.0,
        radar_sees=lambda t: t < 10.0,
        broadcasts=lambda t: t < 40.0 and not 20.0 < t < 21.5,
        path=_slow,
    )
    assert _held(published, 1.0, 20.0) and _held(published, 22.1, 40.0)
    assert _held(published, 1.0, 40.0, coasting=True)
    late = next(tracks[0] for t, tracks in published if t >= 30.0)
    assert late.remote_id is not None
    assert (late.remote_id.consistency, late.remote_id.in_coverage) == ("unconfirmed", True)
    assert np.linalg.norm(np.array(late.enu_m) - _slow(30.0)) < 30.0
    assert not any(tracks for t, tracks in published if t >= 44.0)


def test_a_claim_is_timed_by_its_own_broadcasts_however_many_are_heard() -> None:
    """Three other drones heard far away: the receiver's reports come four times a second, but
    each track's come once a second. Timed by the receiver's 0.25 s, the held track coasted
    between its reports (confirmed and coasting in turn, 40 % of the time coasting); and reports
    delivered 2.5 s after capture still hold it (the claim is judged on the receiver's clock)."""
    for late_s in (0.0, 2.5):
        published = _fly(
            _core(), 30.0, radar_sees=lambda t: t < 8.0, broadcasts=lambda t: True, late_s=late_s, others=3
        )
        assert _held(published, 3.0, 30.0), late_s


def test_a_claim_no_physical_sensor_ever_backed_gets_no_track_in_coverage() -> None:
    """A broadcaster the radar never detects although it looks there (a laptop announcing a
    drone, or a spoofer far from its own): claims are cheap, and the radar's looks say nothing is
    there, so no track is published; the same claim out of every radar's view would be."""
    published = _fly(_core(), 20.0, radar_sees=lambda t: False, broadcasts=lambda t: True)
    assert not any(tracks for _, tracks in published)


def test_a_spoofer_beside_its_own_drone_gets_no_phantom_track() -> None:
    """The broadcast claims a position 72 m from where the radar sees the drone fly, with its
    velocity: its phantom track was never physically seen, so the radar's misses reject it
    before it confirms; the physical track ends up with the identity, flagged."""
    published = _fly(
        _core(),
        20.0,
        radar_sees=lambda t: True,
        broadcasts=lambda t: True,
        claim=lambda t: _where(t) + np.array([60.0, 40.0, 0.0]),
    )
    numbers = {r.number for _, tracks in published for r in tracks}
    assert len(numbers) == 1
    last = published[-1][1][0]
    assert last.remote_id is not None and last.remote_id.consistency == "inconsistent"


def test_a_claim_is_its_own_broadcasters_and_is_earned() -> None:
    """Another broadcaster that takes up the held track's line once its own falls silent does
    not keep it (it held for 50 s), and a broadcaster whose reports landed on a physically seen
    track fewer than `confirm_reports` times holds nothing when the radar loses it (one report on
    a bird's track let a spoofer steer it for a minute)."""
    published = _fly(
        _core(), 40.0, radar_sees=lambda t: t < 10.0, broadcasts=lambda t: t < 12.0, impostor_from=12.0
    )
    assert not any(tracks for t, tracks in published if t >= 17.0)
    published = _fly(_core(), 30.0, radar_sees=lambda t: t < 10.0, broadcasts=lambda t: t > 8.5)
    assert not any(tracks for t, tracks in published if t >= 12.0)


def test_a_lone_plot_in_a_held_tracks_gate_is_no_physical_support() -> None:
    """The radar lost the drone at 10 s; two single frames later put a plot on it. A held track
    charged no misses took each as a target found again: its broadcaster was shown `consistent`
    for 3 s, its alerts `physical`. A held track is found again only as any lost track is, by
    hits that outweigh its misses or come in a row."""
    published = _fly(
        _core(),
        30.0,
        radar_sees=lambda t: t < 10.0 or 20.0 <= t < 20.05 or 25.0 <= t < 25.05,
        broadcasts=lambda t: True,
    )
    assert _held(published, 1.0, 30.0)
    shown = {r.remote_id.consistency for t, tracks in published if t >= 14.0 for r in tracks if r.remote_id}
    assert shown == {"unconfirmed"}


def test_a_held_drone_keeps_its_identity_beside_a_hovering_one() -> None:
    """A broadcasting drone hovers and the radar loses it; a silent drone hovers 80 m away, which
    the radar sees. Identity's phantom rule (a physical track moving like the broadcaster within
    150 m) took the held track for a phantom after 3 reports and gave the ID to the neighbour."""
    here = np.array([350.0, 2000.0, 100.0])
    published = _fly(
        _core(),
        40.0,
        radar_sees=lambda t: t < 10.0,
        broadcasts=lambda t: True,
        path=lambda t: here,
        neighbour=here + np.array([0.0, 80.0, 0.0]),
    )
    bound = [(t, r) for t, tracks in published if t >= 3.0 for r in tracks if r.remote_id]
    assert bound and {r.remote_id.consistency for _, r in bound if _ >= 14.0} == {"unconfirmed"}
    assert all(np.linalg.norm(np.array(r.enu_m) - here) < 30.0 for _, r in bound)
    assert len({r.number for _, r in bound}) == 1


def test_a_drone_the_radar_finds_again_outlives_its_claim() -> None:
    """Lost by the radar for a minute while it broadcast, then found again just as its
    broadcasts stopped: the misses counted while it was held were paid back a hit at a time,
    and the lapsed claim let the next miss delete the track the radar was following again."""
    published = _fly(
        _core(), 80.0, radar_sees=lambda t: t < 10.0 or t >= 70.0, broadcasts=lambda t: t < 69.5, path=_slow
    )
    assert _held(published, 1.0, 80.0, coasting=True)


def test_a_claim_holds_only_near_where_the_radar_lost_the_track() -> None:
    """At 5 m/s the broadcaster's own reports carry its held track 150 m (`rid_loose_gate_m`)
    from where the radar lost it 30 s later: there the radar, looking, should see it again, and
    the claim no longer holds (a spoofer on a bird's track took it away and was never flagged
    `inconsistent`): the radar's misses end the track although the broadcasts go on."""
    published = _fly(_core(), 50.0, radar_sees=lambda t: t < 10.0, broadcasts=lambda t: True)
    assert _held(published, 1.0, 38.0)
    assert not any(tracks for t, tracks in published if t >= 42.0)


def test_a_claim_is_earned_by_reports_that_landed_on_the_track() -> None:
    """A spoofer's reports on a bird's track at 3 and 6 s, 600 m off between: three supported
    reports were counted though two landed elsewhere, and the bird's track, held, outlived the
    radar's loss of it at 6.5 s under the spoofer's claims."""
    off = np.array([600.0, 0.0, 0.0])
    published = _fly(
        _core(),
        20.0,
        radar_sees=lambda t: t < 6.5,
        broadcasts=lambda t: t >= 3.0,
        claim=lambda t: _where(t) + (off if 4.0 < t < 6.0 else 0.0),
    )
    assert not any(tracks for t, tracks in published if t >= 9.0)


def test_a_claim_holds_a_drone_coming_down_however_far() -> None:
    """Lost by the radar at 180 m as it comes down at 6 m/s, and broadcasting on the way: a
    claim reaches `rid_loose_gate_m` across and above where it was last seen, any height below.
    Measured in 3-D, 150 m of descent ended the claim and the track, and the drone, still
    broadcasting, could never be published again."""
    published = _fly(
        _core(),
        38.0,
        radar_sees=lambda t: t < 10.0,
        broadcasts=lambda t: True,
        path=lambda t: np.array([300.0, 2000.0, 240.0 - 6.0 * t]),
    )
    assert _held(published, 1.0, 38.0)


def test_new_broadcasters_are_forgotten_every_cycle_not_only_when_health_asks() -> None:
    """`track` and `replay` never ask for health: the first-heard times of broadcasters gone for
    good were kept one per broadcaster (helper-101's soak: 1800 after 1.5 h of one-shot IDs)."""
    from cuas_node.fusion.identity import NEW_WINDOW_S, IdentityBinder

    binder = IdentityBinder(loose_gate_m=50.0)
    binder.arrivals.extend([0.0] * 100 + [90.0])
    binder.forget_stale(NEW_WINDOW_S + 50.0)
    assert list(binder.arrivals) == [90.0]
