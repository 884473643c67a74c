"""The simulated array: true propagation delay, and end to end through the driver."""

from __future__ import annotations

import math

import numpy as np

from cuas_node.drivers.acoustic.decode import decode_acoustic
from cuas_node.drivers.acoustic.driver import AcousticArrayDriver
from cuas_node.drivers.acoustic.geometry import preset
from cuas_node.drivers.acoustic.protocol import PcmFrameParser
from cuas_node.drivers.sim.acoustic import SimAcousticArray
from cuas_node.kernel.measurement import AcousticBearing
from cuas_node.kernel.pose import Pose
from tests.fakes import ChunkTransport


class _Clock:
    def now(self) -> float:
        return 1000.0

    def monotonic(self) -> float:
        return 5.0

    def sleep(self, seconds: float) -> None: ...


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
        "mic", ChunkTransport.split(data, 4096), _Clock(), geometry=geo, pose=pose, threshold=0.0
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
        "mic", ChunkTransport.split(data[:cut] + data[cut + 3000 :], 4096), _Clock(), geometry=geo
    )
    for _ in range(len(data) // 4096 + 2):
        driver.read()
    c = driver.health().counters
    assert c["dropped_frames"] >= 1 and c["stream_resets"] >= 1
