"""The simulator's RF sensors reach the real drivers: Remote ID lines through a pty, the FPV
scanner through register-level models, both built from the node config exactly as `sim` does."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cuas_node.config import FpvRx5808Sensor, build_config
from cuas_node.driver_factory import build_driver, fpv_receivers
from cuas_node.drivers.sim.runner import Simulation
from cuas_node.drivers.sim.scenario import load_scenario
from cuas_node.kernel.clock import ScaledClock
from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.measurement import AcousticBearing, AnyMeasurement, RemoteIdReport, RfPresence


def _run(
    name: str,
    seconds: float,
    speed: float,
    enough: Callable[[dict[str, list[AnyMeasurement]]], bool] | None = None,
) -> tuple[Simulation, dict[str, list[AnyMeasurement]]]:
    """Run the scenario's devices into the real drivers for `seconds` of wall time; when `enough`
    is given and not yet true by then, on for up to 5 times longer (a loaded CI machine starves
    the simulator's threads: wall time is not what the test is about)."""
    scenario = load_scenario(name)
    clock = ScaledClock(1_800_000_000.0, speed)
    sim = Simulation(scenario, clock)
    config = build_config(sim.node_config() | {"node": {"id": "t"}}, "test")
    sim.build_hardware({s.id: fpv_receivers(s) for s in config.sensors if isinstance(s, FpvRx5808Sensor)})
    drivers = [build_driver(s, clock, sim.hardware) for s in config.sensors]
    sim.start_devices()
    for d in drivers:
        d.open()
    clock.start()
    sim.start()
    got: dict[str, list[AnyMeasurement]] = {d.sensor_id: [] for d in drivers}
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds or (
            enough is not None and not enough(got) and elapsed < 5 * seconds
        ):
            for d in drivers:
                got[d.sensor_id].extend(d.read())
    finally:
        sim.stop()
        for d in drivers:
            d.close()
    return sim, got


def test_remote_id_drone_reports_its_identity_and_true_position() -> None:
    sim, got = _run(
        "remote-id-cooperative",
        seconds=3.0,
        speed=5.0,
        enough=lambda got: sum(isinstance(m, RemoteIdReport) for m in got["rid-1"]) >= 8,
    )
    reports = [m for m in got["rid-1"] if isinstance(m, RemoteIdReport)]
    assert len(reports) >= 8  # Location at 1 Hz on two carriers for ~15 scenario seconds
    assert {r.uas_id for r in reports} == {"1596F3508QL10000042"}
    assert {r.operator_id for r in reports} - {None} == {"NLD-OP-7C2D5E9"}
    frame = LocalFrame(52.0116, 4.3571, 52.0)
    for r in reports:
        assert r.lat is not None and r.lon is not None and r.alt_geo_m is not None
        enu = frame.to_enu(r.lat, r.lon, r.alt_geo_m)
        t = r.t_capture - sim.clock.epoch
        truth = sim.world.state(t)
        assert truth.ids == ["survey-1"]
        assert np.linalg.norm(enu - truth.enu[0]) < 8.0, (t, enu, truth.enu[0])  # 1 s of flight at most


def test_fpv_scanner_hears_the_racer_on_r1() -> None:
    _, got = _run(
        "fpv-racer",
        seconds=4.0,
        speed=2.0,
        enough=lambda got: any(isinstance(m, RfPresence) for m in got["fpv-1"]),
    )
    presences = [m for m in got["fpv-1"] if isinstance(m, RfPresence)]
    assert presences, "no FPV detection"
    strongest = max(presences, key=lambda p: p.snr_db)
    assert (strongest.band, strongest.channel, strongest.freq_mhz) == ("R", 1, 5658)


ACOUSTIC_SCENARIO = """
name = "acoustic-test"
duration_s = 20
seed = 4
[node]
id = "sim-ac"
position = { lat = 52.0, lon = 4.3, alt_m = 10.0 }
[[sensors]]
kind = "acoustic-array"
id = "mic-1"
geometry = "respeaker-6"
mount = { yaw_deg = 30.0 }
[[targets]]
id = "quad"
kind = "quadcopter"
waypoints = [ { t = 0, enu_m = [60.0, 60.0, 25.0] }, { t = 20, enu_m = [60.5, 60.5, 25.0] } ]
"""


def test_acoustic_array_hears_a_hovering_drone_where_it_is(tmp_path: Path) -> None:
    path = tmp_path / "acoustic.toml"
    path.write_text(ACOUSTIC_SCENARIO)
    _, got = _run(
        str(path),
        seconds=4.0,
        speed=2.0,
        enough=lambda got: sum(isinstance(m, AcousticBearing) for m in got["mic-1"]) >= 5,
    )
    bearings = [m for m in got["mic-1"] if isinstance(m, AcousticBearing)]
    assert len(bearings) >= 5
    # The drone is at compass bearing 45°; the array's boresight points at 30°: 15° right of it.
    az = np.degrees(np.median([b.az_rad for b in bearings]))
    assert abs(az - 15.0) < 5.0, az
    assert np.median([b.drone_likelihood for b in bearings]) > 0.5


def test_a_scenario_on_the_wall_clock_starts_when_it_really_starts() -> None:
    """`sim` fixes the scenario's epoch while the node sets up; at `start` it moves to the real
    moment (never backwards), so published times are UTC, not the set-up time behind."""
    clock = ScaledClock(1_800_000_000.0)
    assert clock.now() == 1_800_000_000.0  # stands still until started
    clock.start(1_800_000_002.5)
    assert 1_800_000_002.5 <= clock.now() < 1_800_000_003.5
    late = ScaledClock(1_800_000_000.0)
    late.start(1_700_000_000.0)
    assert late.now() >= 1_800_000_000.0
