"""The simulated array: true propagation delay, and end to end through the driver."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from cuas_node.drivers.acoustic.decode import decode_acoustic
from cuas_node.drivers.acoustic.driver import AcousticArrayDriver
from cuas_node.drivers.acoustic.geometry import preset
from cuas_node.drivers.acoustic.protocol import PcmFrameParser
from cuas_node.drivers.sim.acoustic import SimAcousticArray
from cuas_node.kernel.measurement import AcousticBearing
from cuas_node.kernel.pose import Pose
from tests.fakes import ChunkTransport, StillClock


def _run(
    sim: SimAcousticArray, seconds: float, enu: tuple[float, float, float], vel=(0.0, 0.0, 0.0)
) -> bytes:
    out = b""
    for k in range(int(seconds * 10) + 1):  # t = 0 registers the target: it starts emitting then
        t = k / 10
        pos = np.array(enu) + np.array(vel) * t
        out += sim.block(t, ["d1"], ["quadcopter"], [pos], [vel])
    return out


def test_drone_300_m_away_is_heard_0_875_s_late() -> None:
    geo = preset("respeaker-4")
    sim = SimAcousticArray(
        geo, Pose.from_angles(0, 0, 0, (0, 0, 0)), seed=1, ambient_db_spl=0.0, wind_db_spl=0.0
    )
    frames = PcmFrameParser().feed(_run(sim, 1.5, (0.0, 300.0, 30.0)))
    x = np.concatenate([f.samples for f in frames]).astype(np.float64)[:, 0]
    energy = np.convolve(x**2, np.ones(16) / 16, mode="same")
    onset = np.argmax(energy > 0.05 * energy.max()) / 16000
    assert abs(onset - math.hypot(300.0, 30.0) / 343.0) < 0.01


def test_end_to_end_bearing_from_simulated_array() -> None:
    geo = preset("respeaker-4")
    pose = Pose.from_angles(0, 0, 0, (0, 0, 0))
    sim = SimAcousticArray(geo, pose, seed=2)
    az, el, r = math.radians(40), math.radians(20), 60.0
    enu = (r * math.cos(el) * math.sin(az), r * math.cos(el) * math.cos(az), r * math.sin(el))
    data = _run(sim, 2.6, enu)
    driver = AcousticArrayDriver(
        "mic", ChunkTransport.split(data, 4096), StillClock(), geometry=geo, pose=pose, threshold=0.0
    )
    out: list[AcousticBearing] = []
    for _ in range(len(data) // 4096 + 2):
        out += [m for m in driver.read() if isinstance(m, AcousticBearing)]
    assert out, "no bearing"
    best = out[-1]
    assert abs(math.degrees(best.az_rad) - 40) < 4
    assert abs(math.degrees(best.el_rad) - 20) < 8
    assert driver.health().counters["frames"] > 0 and driver.health().counters["dropped_frames"] == 0
    rows = list(decode_acoustic(data))
    assert rows[-1]["type"] == "summary" and rows[-1]["geometry"] == "respeaker-4"
    assert any(r["type"] == "source" for r in rows)


def test_driver_survives_dropped_frames() -> None:
    geo = preset("respeaker-4")
    sim = SimAcousticArray(geo, Pose.from_angles(0, 0, 0, (0, 0, 0)), seed=3)
    data = _run(sim, 1.2, (20.0, 50.0, 10.0))
    cut = len(data) // 2
    driver = AcousticArrayDriver(
        "mic", ChunkTransport.split(data[:cut] + data[cut + 3000 :], 4096), StillClock(), geometry=geo
    )
    for _ in range(len(data) // 4096 + 2):
        driver.read()
    c = driver.health().counters
    assert c["dropped_frames"] >= 1 and c["stream_resets"] >= 1


def _bearing_lags(frames, arrival) -> list[tuple[float, float]]:
    """(arrival time on the node's clock, how far the bearing's capture lies behind it) per bearing,
    `arrival(k, device_end_s)` giving frame k's arrival."""
    geo = preset("respeaker-4")
    driver = AcousticArrayDriver(
        "mic", ChunkTransport.split(b"", 1), StillClock(), geometry=geo, threshold=0.0
    )
    out = []
    for k, f in enumerate(frames):
        t = arrival(k, f.timestamp_us * 1e-6 + f.n_samples / f.sample_rate)
        out += [
            (t, t - m.t_capture) for m in driver.to_measurements(f, t, t) if isinstance(m, AcousticBearing)
        ]
    return out


def _drone_frames(seconds: float) -> list:
    sim = SimAcousticArray(preset("respeaker-4"), Pose.from_angles(0, 0, 0, (0, 0, 0)), seed=4)
    frames = PcmFrameParser().feed(_run(sim, seconds, (20.0, 50.0, 10.0)))
    return [dataclasses.replace(f, flags=0) for f in frames]  # a free-running front-end clock


def test_bearings_follow_the_node_clock_stepping_forward() -> None:
    """NTP steps a Pi's clock forward after boot while the node runs: a free-running front end's
    bearings must land on the new clock (within the window's half-length of their arrival) once
    the step is confirmed, not stay late by the step for good (the smallest offset seen was kept)."""
    frames = _drone_frames(14.0)
    step_at = len(frames) // 3
    stepped = frames[step_at].timestamp_us * 1e-6 + 1000.0 + 3600.0  # the step, on the new clock
    lags = _bearing_lags(
        frames, lambda k, end: 1000.0 + end + (3600.0 if k >= step_at else 0.0) + 0.01 * (k % 3)
    )
    assert lags and max(lag for _, lag in lags[:3]) < 1.0
    after = [lag for t, lag in lags if t > stepped + 6.0]  # confirmed after 5 s of level offsets
    assert after and max(after) < 1.0, after


@pytest.mark.parametrize(
    ("stall_s", "drain"), [(1.5, math.inf), (4.0, math.inf), (8.0, math.inf), (4.0, 1.04), (2.0, 1.03)]
)
def test_a_host_stall_does_not_move_the_clock_offset(stall_s: float, drain: float) -> None:
    """A host stalls for `stall_s` and then reads the backlog at `drain` times real time (inf: at
    once): those frames arrive late, each less than the one before, but every bearing keeps the
    capture time it has without the stall (the offset is the least-delayed frame's). Reviewers'
    finds: a 4 s stall read at once, then one drained at 1.04x, taken for a forward clock step."""
    frames = _drone_frames(40.0 if drain < math.inf else 14.0)
    start = frames[len(frames) // 4].timestamp_us * 1e-6
    wake = start + stall_s

    def stalled(k: int, end: float) -> float:
        read = wake + (end - start) / drain if end >= start else end
        return 1000.0 + max(end, read)

    steady = [t - lag for t, lag in _bearing_lags(frames, lambda k, end: 1000.0 + end)]
    assert steady and [t - lag for t, lag in _bearing_lags(frames, stalled)] == pytest.approx(
        steady, abs=1e-6
    )


def test_bearings_after_a_front_end_reboot_are_on_the_node_clock() -> None:
    """The front end reboots (its sequence and free-running clock start again at 0): the clock
    offset is learnt afresh, or every later bearing would lie in the past by its former uptime."""
    frames = _drone_frames(8.0)
    half = len(frames) // 2
    t0 = frames[half].timestamp_us
    rebooted = frames[:half] + [
        dataclasses.replace(f, sequence=i, timestamp_us=f.timestamp_us - t0, restart=i == 0)
        for i, f in enumerate(frames[half:])
    ]
    lags = _bearing_lags(rebooted, lambda k, end: 1000.0 + (end if k < half else end + t0 * 1e-6))
    assert lags and all(0.0 < lag < 1.0 for _, lag in lags), lags
