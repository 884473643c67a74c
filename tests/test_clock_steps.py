"""The wall clock steps while the node runs (NTP or a GPS-fed chrony correcting it, an operator's
`date`): the node keeps publishing tracks and health on the new clock.

Found by feeding `NodeCore` a clock that went back an hour: every later measurement was late by
the hour, no track was updated or deleted, and the rate limit held every `tracks` message back
until the clock caught up (an hour of silence with the node `online`); health likewise."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from cuas_node.assembly import core_setup
from cuas_node.config import build_config
from cuas_node.core.step import NodeCore
from cuas_node.core.zones import ZoneSpec
from cuas_node.fusion.classify import CLASSES
from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.measurement import GpsFix, RadarDetection, RemoteIdReport
from cuas_node.runtime import Runtime
from tests.sinks import RecordingSink

EPOCH = 1.8e9
SIGMAS = (0.15, math.radians(1.0), math.radians(2.0), 0.1)
DATA = {
    "node": {"id": "t", "position": {"lat": 52.0, "lon": 4.3, "alt_m": 10.0}},
    "sensors": [{"kind": "ti-mmwave", "id": "ti", "port": "/dev/null", "max_range_m": 200}],
}


def _core(zone: bool = False) -> NodeCore:
    setup = core_setup(build_config(DATA, "test"))
    if zone:  # everything in front of the radar, whatever its class
        frame = LocalFrame(52.0, 4.3, 10.0)
        corners = [
            frame.to_geodetic(np.array(p, dtype=float))
            for p in ((-300, -300, 0), (300, -300, 0), (300, 300, 0), (-300, 300, 0))
        ]
        polygon = tuple((float(c[0]), float(c[1])) for c in corners)
        spec = ZoneSpec("all", "critical", polygon, -100.0, 500.0, frozenset(CLASSES))
        setup = dataclasses.replace(setup, zones=(spec,))
    return NodeCore(setup)


def _drone(t_flight: float, stamp: float) -> RadarDetection:
    """One drone flying out at 5 m/s, seen at flight time `t_flight`, stamped `stamp`."""
    return RadarDetection("ti", stamp, stamp, 60.0 + 5.0 * t_flight, 0.1, 0.05, 5.0, *SIGMAS, snr_db=20.0)


def _fly(core: NodeCore, start: float, stop: float, clock_offset: float, messages: list) -> None:
    """50 ms cycles from flight time `start` to `stop`, on a node clock `clock_offset` from true."""
    for k in range(round((stop - start) / 0.05)):
        flight = start + k * 0.05
        now = EPOCH + flight + clock_offset
        result = core.step(now, [_drone(flight, now)])
        if result.tracks is not None:
            messages.append((flight, result))


def test_a_clock_stepped_back_an_hour_keeps_tracks_coming() -> None:
    core, messages = _core(zone=True), []
    _fly(core, 0.0, 5.0, 0.0, messages)
    before = {r.number for _, m in messages for r in m.tracks if r.status == "confirmed"}
    assert before and any(e.state == "new" for _, m in messages for e in m.alerts)
    messages.clear()
    # The clock goes back an hour; a frame stamped just before the step arrives just after it.
    late = _drone(5.0, EPOCH + 5.0)
    first = core.step(EPOCH + 5.05 - 3600.0, [late])
    assert core.engine.dropped()["captured_after_now"] == 3, "it, and the two frames the reorder window held"
    assert first.tracks is not None, "the deletions go out at once"
    assert {r.number for r in first.tracks if r.status == "deleted"} >= before
    assert [e.state for e in first.alerts] == ["cleared"]
    _fly(core, 5.1, 8.0, -3600.0, messages)
    confirmed = {r.number for _, m in messages for r in m.tracks if r.status == "confirmed"}
    assert confirmed and min(confirmed) > max(before), "a new track, under a new id"
    assert messages[0][0] < 5.5 and max(np.diff([f for f, _ in messages])) < 0.3, "no silence"
    assert [e.state for _, m in messages for e in m.alerts][:1] == ["new"]
    flight, last = messages[-1]
    assert all(abs(r.t - (EPOCH + flight - 3600.0)) < 0.3 for r in last.tracks if r.live), "on the new clock"
    assert core.clock_steps == 1


def test_a_step_back_within_a_second_is_not_a_restart() -> None:
    """NTP's small corrections: fusion goes on (measurements late by the step are retrodicted; a
    target then seems displaced by its speed times the step, which a precise radar may see as a
    new track), and messages keep coming."""
    core, messages = _core(), []
    _fly(core, 0.0, 5.0, 0.0, messages)
    _fly(core, 5.0, 8.0, -0.5, messages)
    assert core.clock_steps == 0 and core.engine.dropped()["captured_after_now"] == 0
    assert max(np.diff([f for f, _ in messages])) < 1.0
    assert any(r.status == "confirmed" for r in messages[-1][1].tracks)


def test_measurements_captured_after_now_are_dropped_but_gps_time_is_foreign() -> None:
    """A node-stamped measurement cannot have been captured after the node's `now`: one that
    claims so (a sensor clock ahead of the node's) is dropped and counted. A GPS fix carries the
    satellites' time: far ahead of a node clock that is behind, it still places the node at once
    (restamped `now`), and radar plots after it are not late."""
    data = {
        **DATA,
        "node": {"id": "t"},
        "sensors": [*DATA["sensors"], {"kind": "nmea", "id": "gps", "port": "/dev/null"}],
    }
    core = NodeCore(core_setup(build_config(data, "test")))
    now = EPOCH
    fix = GpsFix("gps", now + 3600.0, now, 52.0, 4.3, 10.0, 47.0, quality=1)
    core.step(now, [fix, _drone(0.0, now + 30.0), _drone(0.0, now + 1.5), _drone(0.0, now)])
    for k in range(1, 30):
        core.step(now + 0.05 * k, [_drone(0.05 * k, now + 0.05 * k)])
    assert core.position() is not None and core.position().source == "gps"
    assert core.engine.dropped()["captured_after_now"] == 2
    assert core.engine.counters.by_kind["RadarDetection"] + len(core.reorder) == 30
    assert core.status().late == 0


def test_at_a_step_back_held_gps_fixes_are_kept_and_remote_id_dropped() -> None:
    """What the reorder window holds at the step: a GPS fix (the satellites' time) is fused on the
    new clock; a Remote ID report's time was resolved against the old clock: dropped, counted."""
    data = {
        **DATA,
        "node": {"id": "t"},
        "sensors": [
            {"kind": "nmea", "id": "gps", "port": "/dev/null"},
            {"kind": "remoteid", "id": "rid", "port": "/dev/null"},
        ],
    }
    core = NodeCore(core_setup(build_config(data, "test")))
    now = EPOCH
    fix = GpsFix("gps", now - 0.02, 0.0, 52.0, 4.3, 10.0, 47.0, quality=1)
    rid = RemoteIdReport("rid", now - 0.02, 0.0, "UAS-1", lat=52.001, lon=4.301, alt_geo_m=100.0)
    core.step(now, [fix, rid])
    assert len(core.reorder) == 2 and core.position() is None
    core.step(now - 3600.0, [])
    core.step(now - 3600.0 + 0.2, [])
    assert core.position() is not None and core.position().source == "gps"
    assert core.engine.dropped()["captured_after_now"] == 1


@pytest.mark.parametrize("offset_s", [1.5, -1.5])
def test_a_calibrated_time_offset_is_not_a_clock_step(offset_s: float) -> None:
    """`time_offset_s` (-10 to 10 s) moves a sensor's capture times for fusion: a positive one
    moves good stamps ahead of `now`, a negative one corrects a sensor whose stamps run ahead
    (reviewers found each dropping every measurement of its sensor in turn)."""
    data = {**DATA, "sensors": [{**DATA["sensors"][0], "time_offset_s": offset_s}]}
    core, messages = NodeCore(core_setup(build_config(data, "test"))), []
    stamps_ahead = max(-offset_s, 0.0)
    for k in range(100):
        now = EPOCH + k * 0.05
        if core.step(now, [_drone(k * 0.05, now + stamps_ahead)]).tracks is not None:
            messages.append(now)
    assert core.engine.dropped()["captured_after_now"] == 0 and len(messages) > 15


def test_health_goes_out_when_the_clock_steps_back(tmp_path) -> None:
    """Health was due when `now - last >= interval`: an hour back, an hour without health. It goes
    out at once, and `uptime_s` is the monotonic clock's (the wall clock's went negative)."""
    from cuas_node.kernel.clock import ManualClock

    config = build_config({**DATA, "node": {**DATA["node"], "state_dir": str(tmp_path)}}, "test")
    clock = ManualClock(EPOCH)
    sink = RecordingSink("t", session=0)
    runtime = Runtime(config, clock, [], sink, session=0)
    interval = config.mqtt.health_interval_s
    steps = round(2 * interval / 0.05)
    for k in range(1, steps + 1):
        clock.set(k * 0.05)
        runtime.cycle(clock.now(), [])
    published = len(sink.health)
    assert published >= 1
    clock.epoch -= 3600.0  # the wall clock goes back an hour
    for k in range(steps + 1, steps + 21):
        clock.set(k * 0.05)
        runtime.cycle(clock.now(), [])
    assert len(sink.health) == published + 1
    assert sink.health[-1]["uptime_s"] == round((steps + 1) * 0.05, 1)


def _nmea(body: str) -> bytes:
    checksum = 0
    for ch in body.encode():
        checksum ^= ch
    return f"${body}*{checksum:02X}\r\n".encode()


def test_a_sensor_silent_before_a_step_back_is_still_reported_silent(tmp_path) -> None:
    """A reviewer's find: sensor silence was judged on the wall clock, so after a step back the
    health that now goes out at once called a receiver dead for 100 s `ok` (age 0), and so did the
    status LED, until the clock caught up. Silence is measured on the monotonic clock."""
    from cuas_node.drivers.nmea.driver import NmeaDriver
    from cuas_node.kernel.clock import ManualClock
    from tests.fakes import ChunkTransport

    config = build_config(
        {
            **DATA,
            "node": {**DATA["node"], "state_dir": str(tmp_path)},
            "sensors": [{"kind": "nmea", "id": "gps", "port": "/dev/null"}],
        },
        "test",
    )
    clock = ManualClock(EPOCH)
    epochs = [_nmea(f"GPGGA,12000{s}.00,5200.000,N,00418.000,E,1,08,0.9,10.0,M,47.0,M,,") for s in (0, 1)]
    gps = NmeaDriver("gps", ChunkTransport([b"".join(epochs)]), clock)
    sink = RecordingSink("t", session=0)
    runtime = Runtime(config, clock, [gps], sink, session=0)
    gps.open()
    gps.read()
    assert gps.health().last_seen == EPOCH
    clock.set(100.0)  # a hundred seconds of silence
    runtime.cycle(clock.now(), [])
    clock.epoch -= 3600.0  # the wall clock steps back an hour; the monotonic clock runs on
    runtime.cycle(clock.now(), [])
    entry = sink.health[-1]["sensors"][0]
    assert (entry["state"], entry["detail"], entry["age_s"]) == ("degraded", "no data for 100 s", 100.0)
