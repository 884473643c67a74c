"""Fusion features on synthetic measurements with known truth: bearing-only tracks, Remote ID
identity and spoofing, classification, late measurements (tests/test_late_measurements.py has
the update itself), zones and alerts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from cuas_node.assembly import core_setup
from cuas_node.config import build_config
from cuas_node.core.step import NodeCore
from cuas_node.fusion.measurement_models import BearingModel, Coverage
from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.measurement import AcousticBearing, AnyMeasurement, RadarDetection, RemoteIdReport
from cuas_node.kernel.pose import Pose, cartesian_to_spherical
from cuas_node.kernel.reports import AlertAck, AlertEvent, TrackReport

ORIGIN = LocalFrame(52.0, 4.3, 10.0)
RNG = np.random.default_rng(11)


@pytest.fixture(autouse=True)
def _same_noise_whatever_ran_before() -> None:
    """Every test draws its noise from the same start, so its data does not depend on which tests
    ran before it in this process (pytest-xdist spreads them over workers in any order)."""
    global RNG
    RNG = np.random.default_rng(11)


def _core(sensors: list[dict[str, Any]], **extra: Any) -> NodeCore:
    """The node's core step, built from a config as the node builds it (no reorder window, so
    each step fuses what it is given)."""
    data: dict[str, Any] = {
        "node": {"id": "t", "position": {"lat": ORIGIN.lat, "lon": ORIGIN.lon, "alt_m": ORIGIN.alt_m}},
        "sensors": sensors,
        "fusion": {"reorder_window_s": 0.0} | extra.pop("fusion", {}),
    } | extra
    return NodeCore(core_setup(build_config(data, "test")))


def _feed(core: NodeCore, batch: list[AnyMeasurement]) -> None:
    """One core step at the newest capture time of the batch."""
    core.step(max(m.t_capture for m in batch), batch)


RADAR = {"kind": "ti-mmwave", "id": "radar", "port": "/dev/null", "max_range_m": 300, "fov_az_deg": 80}
MIC = {"kind": "acoustic-array", "id": "mic", "port": "/dev/null"}
RID = {"kind": "remoteid", "id": "rid", "port": "/dev/null"}


def _radar(t: float, enu: np.ndarray, vel: np.ndarray, angle_sigma_deg: float = 1.0) -> RadarDetection:
    r, az, el = cartesian_to_spherical(enu)
    radial = float(enu @ vel / r)
    s = (0.2, math.radians(angle_sigma_deg), math.radians(1.5 * angle_sigma_deg), 0.1)
    noisy = RNG.normal([r, az, el, radial], s)
    return RadarDetection("radar", t, 0.0, *map(float, noisy), *s, snr_db=20.0, n_points=3, extent_m=0.4)


def _bearing(t: float, enu: np.ndarray, likelihood: float = 0.9, sigma_deg: float = 2.0) -> AcousticBearing:
    _, az, el = cartesian_to_spherical(enu)
    s = math.radians(sigma_deg)
    return AcousticBearing(
        "mic",
        t,
        0.0,
        float(az + RNG.normal(0, s)),
        float(el + RNG.normal(0, s)),
        s,
        s,
        drone_likelihood=likelihood,
        level_db=-30.0,
    )


def _rid(t: float, enu: np.ndarray, vel: np.ndarray, uas: str = "SERIAL-1") -> RemoteIdReport:
    lat, lon, alt = ORIGIN.to_geodetic(enu)
    return RemoteIdReport(
        "rid",
        t,
        0.0,
        uas_id=uas,
        lat=float(lat),
        lon=float(lon),
        alt_geo_m=float(alt),
        vel_enu_mps=(float(vel[0]), float(vel[1]), float(vel[2])),
        h_accuracy_m=10.0,
        v_accuracy_m=15.0,
        speed_accuracy_mps=1.0,
        ua_type="helicopter_or_multirotor",
    )


def _tracks(core: NodeCore, t: float) -> list[TrackReport]:
    core.step(t)
    return core.tracks_now()


def test_bearing_model_jacobian_matches_numerical_derivative() -> None:
    pose = Pose.from_angles(20.0, 5.0, 0.0, (0.5, 0.0, 2.0))
    for c in (None, 343.0):
        model = BearingModel("mic", pose, Coverage(600.0), propagation_mps=c)
        x = np.array([[40.0, 90.0, 30.0, 6.0, -3.0, 0.5], [-20.0, 50.0, 10.0, 0.0, 0.0, 0.0]])
        _, h = model.predict(x)
        numeric = np.zeros_like(h)
        for i in range(6):
            dx = np.zeros(6)
            dx[i] = 1e-6
            numeric[:, :, i] = (model.predict(x + dx)[0] - model.predict(x - dx)[0]) / 2e-6
        # With sound the model holds the delay fixed within one update (its derivative is v/c).
        assert np.allclose(h, numeric, atol=1e-8 if c is None else 2e-4)


def test_acoustic_only_drone_becomes_a_bearing_only_track_and_radar_ranges_it() -> None:
    core = _core([MIC, RADAR])
    drone = np.array([60.0, 120.0, 40.0])
    for k in range(20):
        _feed(core, [_bearing(k * 0.25, drone)])
    tracks = _tracks(core, 5.0)
    assert len(tracks) == 1 and tracks[0].bearing_only is True
    assert tracks[0].classification.label == "multirotor"
    number = tracks[0].number
    # Radar joins: the same track gets a range, and loses the flag.
    for k in range(10):
        _feed(core, [_radar(5.0 + k * 0.1, drone, np.zeros(3))])
    tracks = _tracks(core, 6.0)
    assert [t.number for t in tracks] == [number]
    assert not tracks[0].bearing_only
    assert np.linalg.norm(np.array(tracks[0].enu_m) - drone) < 5.0
    assert set(tracks[0].sensors) == {"mic", "radar"}


def test_sound_delay_is_corrected_for_a_moving_drone() -> None:
    """A drone 300 m away flying 15 m/s across the line of sight, seen by a radar and by an array
    with finer angles: the sound left ~0.9 s (13 m) before it is heard, and without the delay
    correction the array would drag the track back by most of that."""
    core = _core([MIC, RADAR])
    v = np.array([15.0, 0.0, 0.0])
    errors = []
    for k in range(150):
        t = k * 0.1
        truth = np.array([-90.0, 300.0, 60.0]) + v * t
        emitted = truth - v * (np.linalg.norm(truth) / 343.0)  # where it was when the sound left
        _feed(core, [_radar(t, truth, v, angle_sigma_deg=1.5), _bearing(t, emitted, sigma_deg=1.0)])
        if k >= 50:
            (track,) = _tracks(core, t)
            errors.append(np.linalg.norm(np.array(track.enu_m) - truth))
    assert float(np.mean(errors)) < 4.0


def _fly(core: NodeCore, steps: int, spoof: np.ndarray | None = None, radar: bool = True) -> np.ndarray:
    v = np.array([4.0, 1.0, 0.0])
    truth = np.zeros(3)
    for k in range(steps):
        t = k * 0.1
        truth = np.array([-40.0, 80.0, 30.0]) + v * t
        batch: list[Any] = [_radar(t, truth, v)] if radar else []
        if k % 5 == 0:
            batch.append(_rid(t, truth + (spoof if spoof is not None else 0.0), v))
        if batch:
            _feed(core, batch)
    return truth


def test_cooperative_remote_id_binds_to_its_radar_track_as_consistent() -> None:
    core = _core([RADAR, RID])
    _fly(core, 150)
    tracks = _tracks(core, 15.0)
    assert len(tracks) == 1
    rid = tracks[0].remote_id
    assert rid is not None
    assert rid.uas_id == "SERIAL-1" and rid.consistency == "consistent" and rid.in_coverage is True
    assert rid.offset_m < 10.0
    assert tracks[0].classification.label == "multirotor"


def test_spoofed_remote_id_is_flagged_inconsistent_on_the_physical_track() -> None:
    core = _core([RADAR, RID])
    truth = _fly(core, 200, spoof=np.array([70.0, -30.0, 0.0]))
    tracks = _tracks(core, 20.0)
    assert len(tracks) == 1, [(t.number, t.enu_m) for t in tracks]  # no phantom at the claimed spot
    assert np.linalg.norm(np.array(tracks[0].enu_m) - truth) < 5.0
    rid = tracks[0].remote_id
    assert rid is not None and rid.consistency == "inconsistent" and rid.offset_m > 60.0
    # A broadcaster caught lying is not believed about what it is either.
    assert "remote_id" not in tracks[0].classification.evidence
    assert tracks[0].classification.label not in ("multirotor", "fixed_wing")


def test_remote_id_without_physical_support_is_unconfirmed() -> None:
    core = _core([RADAR, RID])
    _fly(core, 150, radar=False)
    tracks = _tracks(core, 15.0)
    assert len(tracks) == 1
    rid = tracks[0].remote_id
    assert rid is not None and rid.consistency == "unconfirmed" and rid.in_coverage is True


@pytest.mark.parametrize(("speed", "label"), [(0.3, "multirotor"), (12.0, "bird")])
def test_radar_kinematics_classify_hover_and_bird_speed(speed: float, label: str) -> None:
    core = _core([RADAR])
    v = np.array([speed, 0.0, 0.0])
    for k in range(200):
        t = k * 0.1
        _feed(core, [_radar(t, np.array([-20.0, 90.0, 25.0]) + v * t, v)])
    (track,) = _tracks(core, 20.0)
    assert track.classification.label == label
    assert track.classification.evidence == ("radar_kinematics",)
    assert abs(sum(p for _, p in track.classification.probabilities) - 1.0) < 0.01


@pytest.mark.parametrize(("likelihood", "drone"), [(0.45, False), (0.85, True)])
def test_heard_by_the_array_is_drone_evidence_only_when_it_sounded_like_one(
    likelihood: float, drone: bool
) -> None:
    """A target at 2 m/s, seen by the radar and heard by the array. With the detector's drone
    likelihood at 0.85 it is a multirotor. At 0.45 the sound leans away from a drone: the bearing
    is evidence against one, and must not license the drone label that slow flight makes most
    probable (it did, with 0.43: the demo under CPU load called a bird a multirotor this way)."""
    core = _core([MIC, RADAR])
    v = np.array([0.0, 2.0, 0.0])
    for k in range(100):
        t = k * 0.1
        enu = np.array([-20.0, 60.0, 20.0]) + v * t
        batch: list[AnyMeasurement] = [_radar(t, enu, v)]
        if k % 5 == 0:
            batch.append(_bearing(t, enu, likelihood=likelihood))
        _feed(core, batch)
    (track,) = [r for r in _tracks(core, 10.0) if not r.bearing_only]
    assert "acoustic" in track.classification.evidence
    assert (track.classification.label == "multirotor") is drone, track.classification


def test_out_of_sequence_measurement_is_fused_not_dropped() -> None:
    core = _core([RADAR])
    v = np.array([5.0, 0.0, 0.0])
    late = []
    for k in range(40):
        t = k * 0.1
        m = _radar(t, np.array([0.0, 100.0, 20.0]) + v * t, v)
        if k in (30, 31):
            late.append(m)  # held back: arrives after the scans of t = 3.2 … 3.9
        else:
            _feed(core, [m])
    before = core.engine.tracker.table.updates.max()
    _feed(core, late)
    (track,) = _tracks(core, 4.0)
    assert core.engine.tracker.table.updates.max() == before + 2
    assert np.linalg.norm(np.array(track.enu_m) - (np.array([0.0, 100.0, 20.0]) + v * 3.9)) < 3.0


def test_reorder_window_fuses_in_capture_order() -> None:
    core = _core([RADAR], fusion={"reorder_window_s": 0.3})
    v = np.array([5.0, 0.0, 0.0])
    ms = [_radar(k * 0.1, np.array([0.0, 100.0, 20.0]) + v * k * 0.1, v) for k in range(30)]
    order = list(range(30))
    for i in range(0, 30, 3):
        order[i : i + 3] = order[i : i + 3][::-1]  # every three arrive backwards
    fused_t: list[float] = []
    original = core.engine.tracker.process

    def spy(scan: Any) -> Any:
        fused_t.append(scan.t)
        return original(scan)

    core.engine.tracker.process = spy  # type: ignore[method-assign]
    for i in order:
        _feed(core, [ms[i]])
    core.finish(3.0)
    assert fused_t == sorted(fused_t) and len(fused_t) == 30


def test_zone_alert_lifecycle() -> None:
    # A 100 m square north of the node, up to 120 m above it.
    corners = [
        ORIGIN.to_geodetic(np.array(p)) for p in ([-50, 50, 0], [50, 50, 0], [50, 150, 0], [-50, 150, 0])
    ]
    zone = {
        "id": "yard",
        "level": "critical",
        "polygon": [[float(c[0]), float(c[1])] for c in corners],
        "floor_m": 0,
        "ceiling_m": 120,
    }
    core = _core([RADAR], zones=[zone], fusion={"alert_update_s": 2.0})
    v = np.array([0.0, 5.0, 0.0])
    events: list[AlertEvent] = []
    acked = False
    for k in range(400):
        t = k * 0.1
        result = core.step(t, [_radar(t, np.array([0.0, 10.0, 30.0]) + v * t, v)])  # crosses north
        events += result.alerts
        if events and not acked:  # an operator acknowledges the alert once it is raised
            assert core.active_alerts() == [events[0].key]
            assert core.acknowledge(events[0].key, AlertAck("ops", t, "seen"))
            acked = True
    states = [e.state for e in events]
    assert states[0] == "new" and states[-1] == "cleared"
    assert "updated" in states and states.count("new") == 1 and states.count("cleared") == 1
    new = events[0]
    assert (new.key.zone_id, new.zone_level) == ("yard", "critical")
    assert new.track is not None and 40.0 <= new.track.enu_m[1] <= 60.0
    assert {e.key for e in events} == {new.key}
    # The acknowledgement rides on every later event of the alert, and is forgotten once cleared.
    assert new.ack is None
    assert all(e.ack is not None and (e.ack.by, e.ack.note) == ("ops", "seen") for e in events[1:])
    assert core.active_alerts() == [] and not core.acknowledge(new.key, AlertAck("ops", 99.0))


def test_an_alert_cleared_because_its_track_is_gone_carries_no_track() -> None:
    """docs/mqtt.md: `track` is absent on `cleared` when the track is gone (here: a clean stop
    deletes every track while it is inside the zone)."""
    corners = [
        ORIGIN.to_geodetic(np.array(p)) for p in ([-50, 50, 0], [50, 50, 0], [50, 150, 0], [-50, 150, 0])
    ]
    zone = {"id": "yard", "polygon": [[float(c[0]), float(c[1])] for c in corners], "ceiling_m": 120}
    core = _core([RADAR], zones=[zone])
    events: list[AlertEvent] = []
    for k in range(30):
        events += core.step(k * 0.1, [_radar(k * 0.1, np.array([0.0, 100.0, 30.0]), np.zeros(3))]).alerts
    assert [e.state for e in events] == ["new"]
    cleared = core.retire(3.0).alerts
    assert [(e.state, e.track) for e in cleared] == [("cleared", None)]


def test_radar_range_bias_from_calibration_is_removed() -> None:
    """A radar that reads 0.8 m long (calibrated range_bias_m) is corrected in fusion."""
    biased = dict(RADAR, range_bias_m=0.8)
    core = _core([biased])
    target = np.array([0.0, 120.0, 30.0])
    for k in range(30):
        d = _radar(k * 0.1, target, np.zeros(3))
        _feed(core, [RadarDetection(**{**_fields(d), "range_m": d.range_m + 0.8})])
    (track,) = _tracks(core, 3.0)
    assert abs(np.linalg.norm(track.enu_m) - np.linalg.norm(target)) < 0.3


def _fields(d: RadarDetection) -> dict[str, Any]:
    return {f: getattr(d, f) for f in RadarDetection.__dataclass_fields__}
