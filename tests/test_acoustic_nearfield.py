"""The array's evidence of distance: an insect at a capsule is louder there than at the others at
every harmonic alike, a drone metres away is not (drivers/acoustic/nearfield.py, applied in the
pipeline), and a capsule that reads low (blocked, damaged) is learnt, not taken for a near source."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from cuas_node.drivers.acoustic.coherence import frame_spectra
from cuas_node.drivers.acoustic.driver import AcousticArrayDriver, AcousticPipeline
from cuas_node.drivers.acoustic.geometry import preset
from cuas_node.drivers.acoustic.nearfield import (
    GAIN_LEARNT_BLOCKS,
    MAX_PENALTY,
    far_field_spread_db,
    level_spread_db,
    nearfield_logit,
)
from cuas_node.drivers.acoustic.protocol import PcmFrameParser
from cuas_node.drivers.sim.acoustic import SimAcousticArray
from cuas_node.kernel.pose import Pose

FS = 16000
GEO = preset("respeaker-4")
POSE = Pose.from_angles(0, 0, 0, (0, 0, 0))


def _blocks(sim: SimAcousticArray, seconds: float, kind: str, enu: np.ndarray) -> list[np.ndarray]:
    data = b""
    for k in range(int(seconds * 10) + 1):
        data += sim.block(k / 10, ["t1"], [kind], [enu], [np.zeros(3)])
    x = np.concatenate([f.samples for f in PcmFrameParser().feed(data)]).astype(np.float64) / 32768.0
    return [x[s : s + FS] for s in range(FS // 2, x.shape[0] - FS, FS // 2)]


def _beam_alone(pipe: AcousticPipeline, block: np.ndarray) -> bool:
    """What the detector says of the loudest direction's beam without the array's evidence."""
    peaks = pipe.srp.localise(block)
    return any(pipe.detector.detect(pipe.beamform(block, p.unit), FS).detected for p in peaks)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_an_insect_at_a_capsule_is_not_a_drone(seed: int) -> None:
    """An insect 2-4 cm from one microphone: its wingbeat comb is drone-like to the detector (the
    beam alone calls it one in most blocks), but it is 8-14 dB louder at that microphone at every
    harmonic; the pipeline marks it down and detects nothing."""
    rng = np.random.default_rng(seed)
    mic = GEO.positions[seed % GEO.n_mics]
    away = rng.normal(size=3)
    spot = mic + away / np.linalg.norm(away) * rng.uniform(0.02, 0.04)
    blocks = _blocks(SimAcousticArray(GEO, POSE, seed=seed, ambient_db_spl=35.0), 3.0, "insect", spot)
    pipe = AcousticPipeline(GEO, FS, pose=POSE)
    called = [_beam_alone(pipe, b) for b in blocks]
    assert sum(called) >= len(blocks) // 2  # the comb alone looks like a drone
    for b in blocks:
        assert not any(src.detection.detected for src in pipe.process(b))
    assert pipe.near_field >= sum(called)


def test_a_far_drone_is_not_marked_down_even_with_a_weak_capsule() -> None:
    """A drone 100 m out is heard alike at every capsule: no consistent spread. With the capsule
    furthest from it 6 dB down (water in its port), the others hear it louder *and* first, as
    they would an insect at one of them: the raw spread exceeds the allowance. The capsule's
    level, learnt from a minute of the site's diffuse sound, is taken off, and the drone is
    still detected."""
    weak = np.array([1.0, 1.0, 1.0, 10 ** (-6 / 20)])  # capsule 3 (-y) is the last the drone (+y) reaches
    pipe = AcousticPipeline(GEO, FS, pose=POSE)
    site = SimAcousticArray(GEO, POSE, seed=4)
    data = b"".join(site.block(k / 2, [], [], [], []) for k in range(GAIN_LEARNT_BLOCKS + 4))
    x = np.concatenate([f.samples for f in PcmFrameParser().feed(data)]).astype(np.float64) / 32768.0
    for s in range(0, x.shape[0] - FS, FS // 2):
        spectra = frame_spectra(x[s : s + FS] * weak, FS)
        assert spectra is not None
        pipe.capsules.update(spectra)
    assert pipe.capsules.blocks >= GAIN_LEARNT_BLOCKS
    assert abs(pipe.capsules.relative_db[3] - pipe.capsules.relative_db[:3].mean() + 6.0) < 1.0

    blocks = _blocks(SimAcousticArray(GEO, POSE, seed=3), 4.0, "quadcopter", np.array([0.0, 100.0, 30.0]))
    allowance = far_field_spread_db(GEO.positions, 1.0)
    raw = []
    for b in blocks:
        b = b * weak
        (src,) = pipe.process(b)[:1]
        assert src.detection.detected and src.detection.f0_hz is not None
        spectra = frame_spectra(b, FS)
        assert spectra is not None
        raw.append(level_spread_db(spectra, GEO.positions, src.detection.f0_hz))
        learnt = level_spread_db(
            spectra, GEO.positions, src.detection.f0_hz, capsule_db=pipe.capsules.relative_db
        )
        assert learnt <= allowance
    assert max(raw) > allowance  # without learning the weak capsule would have made it "near"
    assert pipe.near_field == 0


def test_a_drone_with_wind_at_one_capsule_is_not_marked_down() -> None:
    """Wind buffeting one capsule 20 dB above the others (low frequencies, its own turbulence)."""
    rng = np.random.default_rng(7)
    blocks = _blocks(SimAcousticArray(GEO, POSE, seed=5), 3.0, "quadcopter", np.array([40.0, 60.0, 20.0]))
    pipe = AcousticPipeline(GEO, FS, pose=POSE)
    for b in blocks:
        gust = np.cumsum(rng.standard_normal(b.shape[0])) * 2e-4  # brown: wind's low-frequency rumble
        b = b.copy()
        b[:, 1] += gust - np.convolve(gust, np.ones(401) / 401, mode="same")
        for src in pipe.process(b):
            assert src.detection.f0_hz is None or level_spread_db(
                frame_spectra(b, FS), GEO.positions, src.detection.f0_hz, capsule_db=pipe.capsules.relative_db
            ) <= far_field_spread_db(GEO.positions, 1.0)
    assert pipe.near_field == 0


def test_allowance_is_the_capsules_tolerance_and_one_metre_of_geometry() -> None:
    a = 0.0405  # the ReSpeaker 4's capsules from its centre
    assert far_field_spread_db(GEO.positions, 1.0) == pytest.approx(2.0 + 20 * math.log10((1 + a) / (1 - a)))
    assert far_field_spread_db(GEO.positions, 3.0) == pytest.approx(
        far_field_spread_db(GEO.positions, 1.0) + 4.0
    )
    assert nearfield_logit(2.0, 2.7) == 0.0
    assert nearfield_logit(3.7, 2.7) == pytest.approx(-MAX_PENALTY / 2)
    assert nearfield_logit(30.0, 2.7) == -MAX_PENALTY
    one = np.random.default_rng(0).standard_normal((FS, 1))
    assert level_spread_db(frame_spectra(one, FS), np.zeros((1, 3)), 200.0) == 0.0  # one channel cannot say


def test_the_driver_counts_and_reports_from_the_bytes() -> None:
    """Bytes through the real driver: an insect at a capsule gives no bearing and is counted as
    near; a capsule 8 dB down is named in the health detail. The config's tolerance (here 3 dB,
    electret capsules) reaches the pipeline's allowance through the driver factory."""
    from cuas_node.config import build_config
    from cuas_node.driver_factory import build_driver
    from cuas_node.kernel.clock import SystemClock
    from cuas_node.kernel.measurement import AcousticBearing
    from tests.fakes import ChunkTransport

    sim = SimAcousticArray(GEO, POSE, seed=2, ambient_db_spl=35.0)
    spot = GEO.positions[0] + np.array([0.0, 0.0, 0.03])
    data = b"".join(sim.block(k / 10, ["i"], ["insect"], [spot], [np.zeros(3)]) for k in range(31))
    frames = PcmFrameParser().feed(data)
    driver = AcousticArrayDriver(
        "mic", ChunkTransport.split(data, 4096), _Clock(), geometry=GEO, threshold=None
    )
    out = []
    for _ in range(len(data) // 4096 + 2):
        out += [m for m in driver.read() if isinstance(m, AcousticBearing)]
    assert out == [] and driver.counters["near_field"] > 0
    assert "microphone" not in driver.health().detail

    site = SimAcousticArray(GEO, POSE, seed=5)
    quiet = PcmFrameParser().feed(
        b"".join(site.block(k / 2, [], [], [], []) for k in range(GAIN_LEARNT_BLOCKS + 4))
    )
    driver = AcousticArrayDriver("mic", ChunkTransport.split(b"", 1), _Clock(), geometry=GEO)
    for f in quiet:
        x = f.samples.copy()
        x[:, 1] = (x[:, 1] * 10 ** (-8 / 20)).astype(x.dtype)
        driver.accept(replace(f, samples=x), 0.0)
    assert "microphone 1 reads -8" in driver.health().detail, driver.health().detail

    sensor = {"kind": "acoustic-array", "id": "mic", "port": "/dev/null", "sensitivity_tolerance_db": 3.0}
    built = build_driver(
        build_config({"node": {"id": "n"}, "sensors": [sensor]}, "test").sensors[0], SystemClock()
    )
    assert isinstance(built, AcousticArrayDriver) and built.sensitivity_tolerance_db == 3.0
    for f in frames[:80]:
        built.accept(f, 0.0)
    assert built._pipeline is not None
    assert built._pipeline.allowance_db == pytest.approx(far_field_spread_db(GEO.positions, 3.0))
    bad = {**sensor, "sensitivity_tolerance_db": -1}
    with pytest.raises(Exception, match="sensitivity_tolerance_db"):
        build_config({"node": {"id": "n"}, "sensors": [bad]}, "test")


class _Clock:
    def now(self) -> float:
        return 0.0

    def monotonic(self) -> float:
        return 0.0

    def sleep(self, seconds: float) -> None: ...
