"""The array's evidence: a drone's comb is coherent from one direction, wind and a comb picked up
separately on each channel are not (drivers/acoustic/coherence.py, applied in the pipeline); a
multichannel WAV without geometry asks the same of its channels (`comb_coherence`, applied by
`acoustic score`), and never marks down one sound heard on every channel."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cuas_node.drivers.acoustic.coherence import (
    COHERENT,
    MAX_PENALTY,
    coherence_logit,
    comb_coherence,
    harmonic_coherence,
    incoherence_logit,
)
from cuas_node.drivers.acoustic.decode import read_wav, score_samples
from cuas_node.drivers.acoustic.detector import DroneDetector
from cuas_node.drivers.acoustic.driver import AcousticPipeline
from cuas_node.drivers.acoustic.geometry import preset
from cuas_node.drivers.acoustic.protocol import PcmFrameParser
from cuas_node.drivers.acoustic.steering import steered_mono
from cuas_node.drivers.sim.acoustic import SimAcousticArray
from cuas_node.kernel.pose import Pose

FS = 16000
GEO = preset("respeaker-4")
POSE = Pose.from_angles(0, 0, 0, (0, 0, 0))
CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "captures" / "acoustic"


def _blocks(
    sim: SimAcousticArray, seconds: float, enu: tuple[float, float, float] | None
) -> list[np.ndarray]:
    data = b""
    for k in range(int(seconds * 10) + 1):
        if enu is None:
            data += sim.block(k / 10, [], [], [], [])
        else:
            data += sim.block(k / 10, ["d1"], ["quadcopter"], [np.array(enu)], [np.zeros(3)])
    x = np.concatenate([f.samples for f in PcmFrameParser().feed(data)]).astype(np.float64) / 32768.0
    return [x[s : s + FS] for s in range(FS // 2, x.shape[0] - FS, FS // 2)]


def test_a_drone_is_coherent_and_wind_is_not() -> None:
    pipe = AcousticPipeline(GEO, FS, pose=POSE)
    drone = _blocks(SimAcousticArray(GEO, POSE, seed=3), 2.5, (0.0, 100.0, 30.0))
    wind = _blocks(SimAcousticArray(GEO, POSE, seed=3, wind_db_spl=75.0), 2.5, None)
    for b in drone:
        (src,) = pipe.process(b)[:1]
        assert src.detection.f0_hz is not None
        assert harmonic_coherence(b, FS, GEO.positions, src.peak.unit, src.detection.f0_hz) > 0.4
        assert src.detection.detected
    for b in wind:
        for src in pipe.process(b):
            gamma = harmonic_coherence(b, FS, GEO.positions, src.peak.unit, src.detection.f0_hz or 150.0)
            assert gamma < COHERENT
            assert not src.detection.detected


def _separate_combs(seconds: float = 1.0) -> np.ndarray:
    """Vibration or pick-up at each capsule: a comb on every channel, but not one sound (each a few
    tenths of a percent off the others, so the phases between microphones drift over the block)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * FS)) / FS

    def comb(f0: float, phases: np.ndarray) -> np.ndarray:
        fm = 1 + 0.002 * np.sin(2 * math.pi * 3 * t)
        return np.asarray(sum(np.sin(2 * math.pi * f0 * fm * k * t + phases[k]) / k for k in range(1, 15)))

    return np.stack(
        [
            0.01 * comb(f0, rng.uniform(0, 6.3, 15)) + 0.003 * rng.standard_normal(t.size)
            for f0 in (180.0, 180.6, 181.3, 179.5)
        ],
        axis=1,
    )


def test_a_comb_on_each_channel_separately_is_not_one_source() -> None:
    """The beam alone looks drone-like; the array says it has no direction and the pipeline marks
    it down."""
    block = _separate_combs()
    pipe = AcousticPipeline(GEO, FS, pose=POSE)
    mono = pipe.detector.detect(block.mean(axis=1), FS)
    assert mono.detected  # one microphone, or the channels summed, cannot tell
    for az in np.radians(np.arange(0, 360, 30)):
        unit = np.array([math.sin(az), math.cos(az), 0.0])
        assert harmonic_coherence(block, FS, GEO.positions, unit, 180.0) < COHERENT
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


def test_a_wav_whose_channels_hear_separate_combs_is_marked_down_and_one_sound_is_not() -> None:
    """`acoustic score` has no geometry: the same comb-per-channel recording, as a stereo WAV, is
    called a drone by its channels' mean and not once the channels are compared; the comb of one
    source, delayed at the second microphone, is one sound and keeps its score."""
    det = DroneDetector()
    separate = _separate_combs(3.0)[:, :2]
    assert score_samples("mean", steered_mono(separate, FS)[:, None], FS, det)["detected"]
    assert not score_samples("pair", separate, FS, det)["detected"]
    one = np.stack([separate[:, 0], np.roll(separate[:, 0], 9)], axis=1)  # one comb, 0.56 ms later
    assert score_samples("pair", one, FS, det) == score_samples(
        "pair", steered_mono(one, FS)[:, None], FS, det
    )


def test_a_mono_recording_saved_as_stereo_scores_as_the_mono_file() -> None:
    """Identical channels are perfectly coherent: no evidence either way (the WAV path only marks
    down; a bonus would make every dual-mono file more drone-like than its mono original)."""
    det = DroneDetector()
    rng = np.random.default_rng(4)
    for x in (_separate_combs(2.0)[:, 0], 0.05 * rng.standard_normal(2 * FS)):
        assert score_samples("f", np.stack([x, x], axis=1), FS, det) == score_samples(
            "f", x[:, None], FS, det
        )


def test_incoherence_logit_is_bounded_and_only_tests_what_it_can_tell() -> None:
    assert incoherence_logit(0.0, 0.5, 0.01) == -MAX_PENALTY
    assert incoherence_logit(0.3, 0.5, 0.01) == 0.0  # at least half of what one source gives
    assert incoherence_logit(0.0, 0.05, 0.01) == 0.0  # half the expected is within chance: no test
    v = [incoherence_logit(m, 0.5, 0.01) for m in np.linspace(-0.2, 0.5, 30)]
    assert np.all(np.diff(v) >= 0) and min(v) >= -MAX_PENALTY
    silent = np.zeros((FS, 2))
    assert incoherence_logit(*comb_coherence(silent, FS, 180.0)) == 0.0
    assert comb_coherence(np.ones((FS, 1)), FS, 180.0) == (0.0, 0.0, 1.0)  # one channel: nothing to test


def _wind(rng: np.random.Generator, like: np.ndarray) -> np.ndarray:
    """Incoherent wind-like noise (1/f² power) as loud as `like`."""
    f = np.fft.rfftfreq(like.size)
    f[0] = f[1]
    y = np.fft.irfft((rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size)) / f, like.size)
    return np.asarray(y / np.std(y) * np.std(like))


@pytest.mark.skipif(not (CAPTURES / "drone").is_dir(), reason="../shared/captures absent")
def test_real_drones_heard_by_a_spaced_pair_in_wind_are_never_marked_down() -> None:
    """Real drone clips as a spaced pair would hear them: the second channel 0.44 ms later, each
    channel with its own wind-like (1/f², incoherent) noise as loud as the drone. The drone is
    one sound: no window of any clip is marked down, so the pair detects what its mean detects.
    Two different stretches of one clip at the two microphones (incoherent by construction) are
    marked down."""
    det = DroneDetector()
    rng = np.random.default_rng(11)
    marked_down = 0
    for path in sorted((CAPTURES / "drone").glob("*.wav"))[::5]:
        x, rate = read_wav(path)
        clip = x[:, 0]

        pair = np.stack([clip + _wind(rng, clip), np.roll(clip, 7) + _wind(rng, clip)], axis=1)
        mean_only = score_samples("clip", steered_mono(pair, rate)[:, None], rate, det)
        assert score_samples("clip", pair, rate, det) == mean_only
        apart = np.stack([clip, np.roll(clip, clip.size // 2)], axis=1)
        before = score_samples("mean", steered_mono(apart, rate)[:, None], rate, det)["drone_likelihood"]
        marked_down += score_samples("pair", apart, rate, det)["drone_likelihood"] < before
    assert marked_down >= 30  # of 40
