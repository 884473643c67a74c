"""A sensor whose scans fusion drops as stale most of the time is named in health, not left `ok`.

Fusion drops a radar's or array's scan captured longer before the newest such scan than every
track's history reaches (`late.StaleScans`). A sensor whose clock runs seconds behind the node's
(no `time_offset_s` calibrated) has every scan dropped: without a word it would read `ok` while
nothing of it is used. These tests run the core step on such a sensor and read what health says.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from cuas_node.assembly import core_setup
from cuas_node.config import build_config
from cuas_node.core.step import NodeCore
from cuas_node.drivers.driver import SensorHealth
from cuas_node.fusion.late import StaleScans
from cuas_node.fusion.verdicts import KEPT_VERDICTS, WINDOW_S, RecentVerdicts
from cuas_node.health_report import RateSampler, sensor_entry, sensor_state
from cuas_node.kernel.measurement import AcousticBearing, RadarDetection, SensorState
from cuas_node.kernel.pose import cartesian_to_spherical

SIGMAS = (0.2, math.radians(1.0), math.radians(1.5), 0.1)


TOML = """
[node]
id = "t"
position = { lat = 52.0, lon = 4.3, alt_m = 10.0 }

[fusion]
reorder_window_s = 0.0

[[sensors]]
kind = "ti-mmwave"
id = "radar"
port = "/dev/null"
max_range_m = 300

[[sensors]]
kind = "acoustic-array"
id = "mic"
port = "/dev/null"
"""


def _config(mic_offset_s: float = 0.0) -> dict[str, Any]:
    mic: dict[str, Any] = {"kind": "acoustic-array", "id": "mic", "port": "/dev/null"}
    if mic_offset_s:
        mic["time_offset_s"] = mic_offset_s
    return {
        "node": {"id": "t", "position": {"lat": 52.0, "lon": 4.3, "alt_m": 10.0}},
        "fusion": {"reorder_window_s": 0.0},
        "sensors": [{"kind": "ti-mmwave", "id": "radar", "port": "/dev/null", "max_range_m": 300}, mic],
    }


def _core(mic_offset_s: float = 0.0) -> NodeCore:
    return NodeCore(core_setup(build_config(_config(mic_offset_s), "test")))


def _where(t: float) -> np.ndarray:
    return np.array([0.0, 80.0 + 6.0 * t, 20.0])


def _detection(rng: np.random.Generator, t: float, stamp: float | None = None) -> RadarDetection:
    """The radar's plot of the drone at t, stamped `stamp` (t by default)."""
    r, az, el = cartesian_to_spherical(_where(t))
    noisy = rng.normal([r, az, el, 6.0 * 0.97], SIGMAS)
    at = t if stamp is None else stamp
    return RadarDetection("radar", at, at, *map(float, noisy), *SIGMAS, snr_db=20.0, n_points=3, extent_m=0.4)


def _bearing(t_capture: float, t_true: float) -> AcousticBearing:
    _, az, el = cartesian_to_spherical(_where(t_true))
    return AcousticBearing("mic", t_capture, t_capture, float(az), float(el), 0.05, 0.05, 0.99, -20.0)


def _fly(
    core: NodeCore,
    seconds: float,
    mic_behind_s: float | None,
    start: float = 0.0,
    step: Callable[[float, list[Any]], object] | None = None,
) -> None:
    """A radar frame every 0.1 s on the node's clock; a bearing every 0.5 s from an array whose
    clock reads `mic_behind_s` behind the node's (None: the array is silent). `step`: the core's
    by default, or a runtime's cycle."""
    step = step or core.step
    rng = np.random.default_rng(3)
    for k in range(1, round(seconds * 10) + 1):
        t = start + k * 0.1
        batch: list[Any] = [_detection(rng, t)]
        if mic_behind_s is not None and k % 5 == 0:
            batch.append(_bearing(t - 1.0 - mic_behind_s, t - 1.0))  # delivered a second after capture
        step(t, batch)


def test_an_array_whose_clock_runs_behind_is_named_with_how_far_and_reads_degraded() -> None:
    core = _core()
    _fly(core, 12.0, mic_behind_s=4.0)
    stale = core.status().stale_sensors
    assert set(stale) == {"mic"}
    # its 4 s behind and the second it takes, less the frame period (judged before that step's frame)
    assert stale["mic"] == pytest.approx(4.9, abs=0.05)
    assert core.engine.counters.stale_by_sensor == {"mic": 24}

    health = SensorHealth("mic", "acoustic-array", SensorState.OK, 40, 12.0, age_s=0.2)
    entry = sensor_entry(health, {}, 0, RateSampler(), 12.0, 5.0, stale["mic"])
    assert entry["state"] == "degraded"
    assert "stale" in entry["detail"] and "4.9 s" in entry["detail"] and "time_offset_s" in entry["detail"]


def test_a_stale_sensor_stays_named_across_a_wall_clock_step_back() -> None:
    """The engine after a clock step judges afresh; the health message sent at the step must
    not call the sensor ok meanwhile (helper-97's review)."""
    core = _core()
    _fly(core, 12.0, mic_behind_s=4.0)
    core.step(-3600.0, [])
    assert core.clock_steps == 1
    assert set(core.status().stale_sensors) == {"mic"}
    _fly(core, 12.0, mic_behind_s=0.0, start=-3600.0)  # its clock mended meanwhile
    assert core.status().stale_sensors == {}
    assert core.engine.counters.stale_by_sensor == {"mic": 24}  # carried: counted since start


def test_the_same_array_with_its_time_offset_calibrated_is_fused_and_not_named() -> None:
    core = _core(mic_offset_s=4.0)
    _fly(core, 12.0, mic_behind_s=4.0)
    assert core.status().stale_sensors == {}
    assert core.engine.dropped()["stale"] == 0
    assert any("mic" in r.sensors for r in core.engine.current())


def test_a_backlog_now_and_then_is_not_a_stale_sensor() -> None:
    """One bearing in ten stale (a host busy for a moment) is what the counter is for, not a
    sensor to flag: the array is on time the rest of the time."""
    core = _core()
    rng = np.random.default_rng(4)
    for k in range(1, 121):
        t = k * 0.1
        batch: list[Any] = [_detection(rng, t)]
        if k % 5 == 0:
            behind = 4.0 if k % 50 == 0 else 0.0
            batch.append(_bearing(t - 1.0 - behind, t - 1.0))
        core.step(t, batch)
    assert core.engine.counters.stale_by_sensor == {"mic": 2}
    assert core.status().stale_sensors == {}


def test_a_stale_sensor_that_falls_silent_is_forgotten_after_the_window() -> None:
    core = _core()
    _fly(core, 12.0, mic_behind_s=4.0)
    assert set(core.status().stale_sensors) == {"mic"}
    _fly(core, WINDOW_S + 0.5, mic_behind_s=None, start=12.0)
    assert core.status().stale_sensors == {}


def test_a_few_scans_are_not_enough_and_half_is_not_most() -> None:
    scans = StaleScans({"a": 0.05, "b": 0.05})
    for k in range(20):
        assert not scans.stale("a", 10.0 + 0.1 * k)
    for k in range(4):
        assert scans.stale("b", 5.0 + 0.1 * k)
    assert scans.mostly_stale() == {}
    assert scans.stale("b", 5.5)
    assert set(scans.mostly_stale()) == {"b"}
    for k in range(5):  # five stale, five on time: half is not most
        assert not scans.stale("b", 12.0 + 0.01 * k)
    assert scans.mostly_stale() == {}
    assert scans.stale("b", 5.6)
    assert set(scans.mostly_stale()) == {"b"}


def test_a_sensor_stale_while_no_other_delivers_keeps_a_bounded_record() -> None:
    """Stale scans never advance the newest time the window ages by: with the radar unplugged
    and the array a day behind, its record must still stay bounded (helper-97's review)."""
    scans = StaleScans({"radar": 0.05, "mic": 2.0})
    assert not scans.stale("radar", 100_000.0)
    for k in range(3 * KEPT_VERDICTS):
        assert scans.stale("mic", 13_600.0 + 0.5 * k)
    assert len(scans.verdicts._recent["mic"]) == KEPT_VERDICTS
    assert set(scans.mostly_stale()) == {"mic"}


def test_an_array_whose_clock_runs_ahead_is_named_with_how_far() -> None:
    """The mirror image: stamps more than a second after the node's time are dropped as
    `captured_after_now`; a sensor whose every measurement is so dropped reads degraded too."""
    core = _core()
    _fly(core, 12.0, mic_behind_s=-5.0)  # stamped 4 s ahead of the node (5 ahead, 1 s in delivery)
    assert core.status().stale_sensors == {}
    ahead = core.status().ahead_sensors
    assert set(ahead) == {"mic"} and ahead["mic"] == pytest.approx(4.0, abs=1e-6)
    assert core.engine.dropped()["captured_after_now"] == 24
    health = SensorHealth("mic", "acoustic-array", SensorState.OK, 40, 12.0, age_s=0.2)
    state, detail = sensor_state(health, 12.0, None, ahead["mic"])
    assert state == SensorState.DEGRADED and "4.0 s after the node's time" in detail
    core.step(-3600.0, [])  # a clock step: the name is kept until the new clock has judged
    assert set(core.status().ahead_sensors) == {"mic"}
    _fly(core, 12.0, mic_behind_s=0.0, start=-3600.0)
    assert core.status().ahead_sensors == {}


def test_frames_in_flight_at_a_clock_step_back_name_no_sensor() -> None:
    """helper-98's find: the health message sent at a step back named a healthy radar 3600 s
    ahead, for the frames stamped on the old clock that arrived with the step. They are dropped,
    and they are no sign of a sensor clock ahead of the node's."""
    core = _core()
    _fly(core, 12.0, mic_behind_s=0.0)
    rng = np.random.default_rng(7)
    in_flight = [_detection(rng, 12.0 + 0.01 * k) for k in range(1, 9)]  # eight frames, old clock
    core.step(-3600.0, in_flight)
    assert core.clock_steps == 1 and core.engine.dropped()["captured_after_now"] == 8
    assert core.status().ahead_sensors == {}


def test_a_name_carried_over_a_step_expires_for_a_slow_sensor() -> None:
    """A sensor named before a step and then delivering on time but slowly (fewer than 5 frames
    in 10 s) is named no longer once 10 s of the new clock have passed (helper-98's find)."""
    verdicts = RecentVerdicts().restarted(0.0)
    assert verdicts.mostly_dropped(0.0) == {}
    old = RecentVerdicts()
    for k in range(10):
        old.add("mic", 100.0 + k, 4.0, True)
    fresh = old.restarted(109.0)
    fresh.add("mic", 0.0, 0.0, False)
    assert fresh.mostly_dropped(5.0) == {"mic": 4.0}
    fresh.add("mic", 9.0, 0.0, False)
    assert fresh.mostly_dropped(10.5) == {}


def test_gps_fixes_ahead_are_never_judged_and_remote_id_within_its_skew_is_fine() -> None:
    from cuas_node.kernel.measurement import GpsFix, RemoteIdReport

    data = _config()
    data["sensors"] += [
        {"kind": "nmea", "id": "gps", "port": "/dev/null"},
        {"kind": "remoteid", "id": "rid", "port": "/dev/null"},
    ]
    core = NodeCore(core_setup(build_config(data, "test")))
    for k in range(1, 41):
        t = k * 0.5
        fix = GpsFix("gps", t + 20.0, t, 52.0, 4.3, 10.0, 47.0, 1, 9, 0.9)
        rid = RemoteIdReport("rid", t + 20.0, t, f"uas-{k}", 52.001, 4.301, 60.0)
        core.step(t, [fix, rid])
    assert core.status().ahead_sensors == {}


def test_now_and_then_a_frame_ahead_names_no_sensor() -> None:
    core = _core()
    rng = np.random.default_rng(6)
    for k in range(1, 121):
        t = k * 0.1
        stamp = t + 3.0 if k % 10 == 0 else t
        core.step(t, [_detection(rng, t, stamp)])
    assert core.engine.dropped()["captured_after_now"] == 12
    assert core.status().ahead_sensors == {}


def test_the_drivers_own_trouble_and_silence_come_before_staleness() -> None:
    down = SensorHealth("mic", "acoustic-array", SensorState.DOWN, 0, None, detail="port gone")
    assert sensor_state(down, 100.0, 5.0) == (SensorState.DOWN, "port gone")
    silent = SensorHealth("mic", "acoustic-array", SensorState.OK, 10, 90.0, age_s=10.0)
    assert sensor_state(silent, 100.0, 5.0) == (SensorState.DEGRADED, "no data for 10 s")
    fine = SensorHealth("mic", "acoustic-array", SensorState.OK, 10, 99.9, age_s=0.1)
    assert sensor_state(fine, 100.0, None) == (SensorState.OK, "")
    assert "after the node's time" in sensor_state(fine, 100.0, 5.0, 3.0)[1]  # ahead, then stale
    assert sensor_state(silent, 100.0, None, 3.0) == (SensorState.DEGRADED, "no data for 10 s")


def test_track_counts_the_stale_measurements_by_sensor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cuas_node.cli import main
    from cuas_node.publish import wire

    rng = np.random.default_rng(5)
    lines = []
    for k in range(1, 121):
        t = 1_750_000_000.0 + k * 0.1
        lines.append(wire.dumps(wire.measurement_record(_detection(rng, k * 0.1, t))))
        if k % 5 == 0:
            lines.append(wire.dumps(wire.measurement_record(_bearing(t - 5.0, k * 0.1 - 1.0))))
    (tmp_path / "lines.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "node.toml").write_text(TOML)
    assert main(["track", "--config", str(tmp_path / "node.toml"), str(tmp_path / "lines.jsonl")]) == 0
    err = capsys.readouterr().err
    assert "(24 stale;" in err
    (line,) = [x for x in err.splitlines() if "stale measurements by sensor" in x]
    assert "mic: 24" in line and "radar" not in line.split("(")[0] and "time_offset_s" in line


def test_track_names_a_sensor_whose_lines_are_stamped_after_their_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An array whose lines are stamped in another time base than the radar's (an hour ahead:
    local time against UTC) loses every bearing as captured after now: the summary says whose."""
    from cuas_node.cli import main
    from cuas_node.publish import wire

    rng = np.random.default_rng(8)
    lines = []
    for k in range(1, 121):
        t = 1_750_000_000.0 + k * 0.1
        lines.append(wire.dumps(wire.measurement_record(_detection(rng, k * 0.1, t))))
        if k % 5 == 0 and k < 120:  # (a last line ahead would end the log after a gap: track.md)
            lines.append(wire.dumps(wire.measurement_record(_bearing(t + 3600.0, k * 0.1 - 1.0))))
    (tmp_path / "lines.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "node.toml").write_text(TOML)
    assert main(["track", "--config", str(tmp_path / "node.toml"), str(tmp_path / "lines.jsonl")]) == 0
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if "stamped after the time by sensor" in x]
    assert "mic: 23 " in line and "radar" not in line and "local time against UTC" in line


class _LiveDriver:
    """A driver that reports itself `ok` and just heard from (the runtime is fed by hand)."""

    def __init__(self, sensor_id: str, kind: str) -> None:
        self.sensor_id, self.kind = sensor_id, kind

    def open(self) -> None: ...

    def read(self) -> list[Any]:
        return []

    def close(self) -> None: ...

    def health(self) -> SensorHealth:
        return SensorHealth(self.sensor_id, self.kind, SensorState.OK, 10, 0.0, age_s=0.1)


def test_the_runtime_health_message_and_the_led_show_the_stale_sensor(
    tmp_path: Path, schemas: dict[str, Any]
) -> None:
    from cuas_node.gpio import NodeStatus
    from cuas_node.kernel.clock import ManualClock
    from cuas_node.runtime import Runtime
    from tests.sinks import RecordingSink

    data = _config()
    data["node"]["state_dir"] = str(tmp_path)
    config = build_config(data, "test")
    drivers = [_LiveDriver("radar", "ti-mmwave"), _LiveDriver("mic", "acoustic-array")]
    sink = RecordingSink("t")
    runtime = Runtime(config, ManualClock(0.0), drivers, sink, session=1)  # type: ignore[arg-type]
    _fly(runtime.core, 12.0, mic_behind_s=4.0, step=runtime.cycle)
    runtime.ready.set()
    health = runtime.health(12.0, 5.0)
    by_id = {s["id"]: s for s in health["sensors"]}
    assert by_id["radar"]["state"] == "ok" and by_id["radar"]["detail"] == ""
    assert by_id["mic"]["state"] == "degraded" and "stale" in by_id["mic"]["detail"]
    jsonschema.validate({"type": "health", "node_id": "t", "seq": 1, **health}, schemas["health"])
    sink.connected = True
    assert runtime.led_status(12.0) == NodeStatus.DEGRADED
    runtime.core.engine.stale_scans = StaleScans(runtime.core.engine.stale_scans.delivery_s)  # forgotten
    assert runtime.led_status(12.0) == NodeStatus.RUNNING
    _fly(runtime.core, 12.0, mic_behind_s=-5.0, start=12.0, step=runtime.cycle)  # now 4 s ahead
    by_id = {s["id"]: s for s in runtime.health(24.0, 5.0)["sensors"]}
    assert by_id["mic"]["state"] == "degraded" and "after the node's time" in by_id["mic"]["detail"]
    assert runtime.led_status(24.0) == NodeStatus.DEGRADED
