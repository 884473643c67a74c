"""The array's evidence: a drone's comb is coherent from one direction, wind and a comb picked up
separately on each channel are not (drivers/acoustic/coherence.py, applied in the pipeline)."""

from __future__ import annotations

import math

import numpy as np

from cuas_node.drivers.acoustic.coherence import COHERENT, coherence_logit, frame_spectra, harmonic_coherence
from cuas_node.drivers.acoustic.driver import AcousticPipeline
from cuas_node.drivers.acoustic.geometry import preset
from cuas_node.drivers.sim.acoustic import SimAcousticArray
from cuas_node.kernel.pose import Pose
from tests.acoustic_stream import driver_windows, sim_stream

FS = 16000
GEO = preset("respeaker-4")
POSE = Pose.from_angles(0, 0, 0, (0, 0, 0))


def _blocks(
    sim: SimAcousticArray, seconds: float, enu: tuple[float, float, float] | None
) -> list[np.ndarray]:
    sources = ([], []) if enu is None else (["quadcopter"], [np.array(enu)])
    return driver_windows(sim_stream(sim, seconds, *sources), FS)


def test_a_drone_is_coherent_and_wind_is_not() -> None:
    pipe = AcousticPipeline(GEO, FS, pose=POSE)
    drone = _blocks(SimAcousticArray(GEO, POSE, seed=3), 2.5, (0.0, 100.0, 30.0))
    wind = _blocks(SimAcousticArray(GEO, POSE, seed=3, wind_db_spl=75.0), 2.5, None)
    for b in drone:
        (src,) = pipe.process(b)[:1]
        assert src.detection.f0_hz is not None
        assert (
            harmonic_coherence(frame_spectra(b, FS), GEO.positions, src.peak.unit, src.detection.f0_hz) > 0.4
        )
        assert src.detection.detected
    for b in wind:
        for src in pipe.process(b):
            gamma = harmonic_coherence(
                frame_spectra(b, FS), GEO.positions, src.peak.unit, src.detection.f0_hz or 150.0
            )
            assert gamma < COHERENT
            assert not src.detection.detected


def test_a_comb_on_each_channel_separately_is_not_one_source() -> None:
    """Vibration or pick-up at each capsule: a comb on every channel, but not one sound (each a few
    tenths of a percent off the others, so the phases between microphones drift over the block).
    The beam alone looks drone-like; the array says it has no direction and the pipeline marks it
    down."""
    rng = np.random.default_rng(0)
    t = np.arange(FS) / FS

    def comb(f0: float, phases: np.ndarray) -> np.ndarray:
        fm = 1 + 0.002 * np.sin(2 * math.pi * 3 * t)
        return np.asarray(sum(np.sin(2 * math.pi * f0 * fm * k * t + phases[k]) / k for k in range(1, 15)))

    block = np.stack(
        [
            0.01 * comb(f0, rng.uniform(0, 6.3, 15)) + 0.003 * rng.standard_normal(t.size)
            for f0 in (180.0, 180.6, 181.3, 179.5)
        ],
        axis=1,
    )
    pipe = AcousticPipeline(GEO, FS, pose=POSE)
    mono = pipe.detector.detect(block.mean(axis=1), FS)
    assert mono.detected  # one microphone, or the channels summed, cannot tell
    for az in np.radians(np.arange(0, 360, 30)):
        unit = np.array([math.sin(az), math.cos(az), 0.0])
        assert harmonic_coherence(frame_spectra(block, FS), GEO.positions, unit, 180.0) < COHERENT
    assert not any(src.detection.detected for src in pipe.process(block))


def test_coherence_logit_is_bounded_and_monotonic() -> None:
    g = np.linspace(-0.2, 1.0, 50)
    v = np.array([coherence_logit(float(x)) for x in g])
    assert np.all(np.diff(v) >= 0) and v.min() >= -4.0 and v.max() <= 1.0
    assert coherence_logit(COHERENT) == 0.0


def test_evidence_goes_through_the_detectors_own_decision() -> None:
    from cuas_node.drivers.acoustic.detector import Detection, DroneDetector

    det = DroneDetector(threshold=0.5)
    d = Detection(0.7, 180.0, -30.0, True)
    down = det.with_evidence(d, coherence_logit(0.0))
    assert down.drone_likelihood < 0.5 and not down.detected and down.f0_hz == 180.0
    up = det.with_evidence(Detection(0.45, 180.0, -30.0, False), coherence_logit(0.9))
    assert up.drone_likelihood > 0.5 and up.detected
    assert det.with_evidence(Detection(0.0, None, -120.0, False), 1.0).drone_likelihood == 0.0
