"""The array's evidence of distance: an insect at a capsule is louder there than at the others at
every harmonic alike, a drone metres away is not (drivers/acoustic/nearfield.py, applied in the
pipeline), and a capsule that reads low (blocked, damaged) is learnt, not taken for a near source."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from cuas_node.drivers.acoustic.coherence import frame_spectra, harmonic_bins
from cuas_node.drivers.acoustic.driver import AcousticArrayDriver, AcousticPipeline
from cuas_node.drivers.acoustic.features import extract, sub_combs
from cuas_node.drivers.acoustic.geometry import preset
from cuas_node.drivers.acoustic.nearfield import (
    GAIN_LEARNT_BLOCKS,
    MAX_PENALTY,
    CapsuleGains,
    far_field_spread_db,
    level_spread_db,
    nearfield_logit,
)
from cuas_node.drivers.acoustic.protocol import PcmFrameParser
from cuas_node.drivers.sim.acoustic import SimAcousticArray
from cuas_node.kernel.pose import Pose
from tests.acoustic_stream import driver_windows, frame_samples, sim_stream

FS = 16000
GEO = preset("respeaker-4")
POSE = Pose.from_angles(0, 0, 0, (0, 0, 0))


def _blocks(sim: SimAcousticArray, seconds: float, kind: str, enu: np.ndarray) -> list[np.ndarray]:
    return driver_windows(sim_stream(sim, seconds, [kind], [enu]), FS)


def _learning_minute(site: SimAcousticArray) -> list[np.ndarray]:
    """The site with nothing in it for as many of the driver's windows (1 s every 0.5 s) as the
    capsule levels are learnt from, and a few more."""
    x = frame_samples(b"".join(site.block(k / 2, [], [], [], []) for k in range(GAIN_LEARNT_BLOCKS + 4)))
    return driver_windows(x, FS, start=0)


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


@pytest.mark.parametrize(
    ("capsule", "gain_db", "first_db", "raw_near"),
    [(3, -6.0, 0.0, False), (3, -8.0, 1.0, False), (1, 6.0, 0.0, True)],
)
def test_a_far_drone_is_not_marked_down_with_an_odd_capsule(
    capsule: int, gain_db: float, first_db: float, raw_near: bool
) -> None:
    """A drone 100 m out is heard alike at every capsule. A capsule 6 dB down (water in its port)
    is below the median capsule, which is what the others are judged against: no spread even
    before anything is learnt. A capsule 6 dB up (a replacement of another sensitivity), and the
    first the drone (+y) reaches, stands out like an insect at it: the raw spread exceeds the
    allowance; its level, learnt from a minute of the site's diffuse sound, is taken off, and the
    drone is still detected. (A weak capsule with the first one 1 dB up, within its tolerance: the
    loudest over the weak one is 9 dB, but it stands 1 dB above the median capsule, and only twice
    that counts.)"""
    gains = np.ones(GEO.n_mics)
    gains[capsule] = 10 ** (gain_db / 20)
    gains[1] *= 10 ** (first_db / 20)
    pipe = AcousticPipeline(GEO, FS, pose=POSE)
    for window in _learning_minute(SimAcousticArray(GEO, POSE, seed=4)):
        pipe.process(window * gains)
    assert pipe.capsules.blocks >= GAIN_LEARNT_BLOCKS
    others = np.delete(pipe.capsules.relative_db, capsule)
    assert abs(pipe.capsules.relative_db[capsule] - np.median(others) - gain_db) < 1.0
    word = pipe.capsules.odd(1.0)
    assert f"microphone {capsule} reads" in word and ("blocked" in word) == (gain_db < 0), word

    blocks = _blocks(SimAcousticArray(GEO, POSE, seed=3), 4.0, "quadcopter", np.array([0.0, 100.0, 30.0]))
    allowance = far_field_spread_db(GEO.positions, 1.0)
    raw = []
    for b in blocks:
        b = b * gains
        (src,) = pipe.process(b)[:1]
        assert src.detection.detected and src.detection.f0_hz is not None
        spectra = frame_spectra(b, FS)
        assert spectra is not None
        raw.append(level_spread_db(spectra, GEO.positions, src.detection.f0_hz))
        learnt = level_spread_db(
            spectra, GEO.positions, src.detection.f0_hz, capsule_db=pipe.capsules.relative_db
        )
        assert learnt <= allowance
    assert (max(raw) > allowance) == raw_near
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


def _comb_pair(gain_db: float, lead_s: float, seed: int = 0, rolloff: float = 1.0) -> np.ndarray:
    """Two channels of one comb (f0 200 Hz, harmonic k at 1/k**rolloff): the first `gain_db`
    louder and heard `lead_s` earlier (negative: later), each with its own noise."""
    rng = np.random.default_rng(seed)
    n = FS
    f = np.fft.rfftfreq(n, 1 / FS)
    t = np.arange(n) / FS
    comb = sum(np.sin(2 * math.pi * 200.0 * k * t + rng.uniform(0, 6)) / k**rolloff for k in range(1, 12))
    spec = np.fft.rfft(comb)
    first = np.fft.irfft(spec * np.exp(2j * math.pi * f * lead_s / 2), n)  # half the lead each way
    second = np.fft.irfft(spec * np.exp(-2j * math.pi * f * lead_s / 2), n)
    x = np.stack([first * 10 ** (gain_db / 20), second], axis=1) * 0.01
    return np.asarray(x + 1e-4 * rng.standard_normal(x.shape))


def test_the_louder_capsule_must_also_hear_first() -> None:
    """8 dB louder at one capsule over every harmonic: near it if the sound reaches it first (by
    up to the pair's 8 cm, 0.23 ms), interference if it reaches it later."""
    pair = np.array([[-0.04, 0.0, 0.0], [0.04, 0.0, 0.0]])
    allowance = far_field_spread_db(pair, 1.0)
    for lead in (0.05e-3, 0.15e-3):
        near = frame_spectra(_comb_pair(8.0, lead), FS)
        contradicted = frame_spectra(_comb_pair(8.0, -lead), FS)
        assert near is not None and contradicted is not None
        assert level_spread_db(near, pair, 200.0) > allowance
        assert level_spread_db(contradicted, pair, 200.0) == 0.0
    even = frame_spectra(_comb_pair(0.5, 0.1e-3), FS)  # within the capsules' tolerance: not near
    assert even is not None and level_spread_db(even, pair, 200.0) < allowance


def test_noise_at_one_capsule_is_taken_off_before_levels_are_compared() -> None:
    """A far comb, equal at both capsules, with broadband noise near the harmonics' own level at
    the capsule the sound reaches first: each harmonic is measured above its channel's own floor,
    so the noise does not read as the comb being louder there (without that, 3-4.6 dB)."""
    pair = np.array([[-0.04, 0.0, 0.0], [0.04, 0.0, 0.0]])
    for seed in range(4):
        x = _comb_pair(0.0, 0.1e-3, seed=seed, rolloff=0.0)
        x[:, 0] += 0.2 * np.random.default_rng(seed).standard_normal(FS)
        spectra = frame_spectra(x, FS)
        assert spectra is not None
        assert level_spread_db(spectra, pair, 200.0) == 0.0


def test_differences_that_disagree_over_few_harmonics_are_not_distance() -> None:
    """One capsule 12, 6, 14 and 8 dB louder at the four harmonics of a 500 Hz comb under the
    pair's 2.1 kHz cap (a reflection's pattern, not 1/r's one ratio): the median's error from
    four harmonics is Student's, not the normal's, and clears nothing; 10 dB at each is near."""
    pair = np.array([[-0.04, 0.0, 0.0], [0.04, 0.0, 0.0]])
    t = np.arange(FS) / FS
    rng = np.random.default_rng(1)

    def block(gains_db: list[float]) -> np.ndarray:
        lines = [(k, rng.uniform(0, 6)) for k in range(1, 5)]
        first = sum(
            10 ** (g / 20) * np.sin(2 * math.pi * 500 * k * (t + 5e-5) + ph)
            for (k, ph), g in zip(lines, gains_db, strict=True)
        )
        second = sum(np.sin(2 * math.pi * 500 * k * t + ph) for k, ph in lines)
        x = 0.01 * np.stack([first, second], axis=1)
        return np.asarray(x + 1e-4 * rng.standard_normal(x.shape))

    uneven, even = frame_spectra(block([12.0, 6.0, 14.0, 8.0]), FS), frame_spectra(block([10.0] * 4), FS)
    assert uneven is not None and even is not None
    assert level_spread_db(uneven, pair, 500.0) == 0.0
    assert level_spread_db(even, pair, 500.0) > far_field_spread_db(pair, 1.0)


def test_an_insect_from_boot_is_not_learnt_as_a_capsule() -> None:
    """An insect at a capsule from the first block: the blocks it is in hold a drone-like comb, so
    they teach the capsule levels nothing; once a minute of the site has been learnt from (the
    insect gone in between), the capsule is not reported and the insect, back, is not a drone."""
    spot = GEO.positions[0] + np.array([0.0, 0.0, 0.03])
    pipe = AcousticPipeline(GEO, FS, pose=POSE)
    insect = _blocks(SimAcousticArray(GEO, POSE, seed=6, ambient_db_spl=35.0), 20.0, "insect", spot)
    for b in insect:
        pipe.process(b)
    assert pipe.capsules.blocks < len(insect) // 4  # it learnt from few of them
    for window in _learning_minute(SimAcousticArray(GEO, POSE, seed=7, ambient_db_spl=35.0)):
        pipe.process(window)
    assert pipe.capsules.blocks >= GAIN_LEARNT_BLOCKS
    assert np.abs(pipe.capsules.relative_db).max() < 1.0 and pipe.capsules.odd(1.0) == ""
    assert not any(src.detection.detected for b in insect[-4:] for src in pipe.process(b))


def test_a_silent_capsule_is_reported_and_left_out() -> None:
    """One capsule dead (all zeros): named in the health word, and the others still tell an insect
    at one of them."""
    gains = CapsuleGains(4)
    for window in _learning_minute(SimAcousticArray(GEO, POSE, seed=8)):
        window[:, 2] = 0.0
        spectra = frame_spectra(window, FS)
        assert spectra is not None
        gains.update(spectra)
    assert "microphone 2 is silent" in gains.odd(1.0) and "microphone 0" not in gains.odd(1.0)
    spot = GEO.positions[0] + np.array([0.0, 0.0, 0.03])
    (block, *_) = _blocks(SimAcousticArray(GEO, POSE, seed=2, ambient_db_spl=35.0), 1.6, "insect", spot)
    block[:, 2] = 0.0
    spectra = frame_spectra(block, FS)
    assert spectra is not None
    pipe = AcousticPipeline(GEO, FS, pose=POSE)
    pipe.capsules = gains
    sources = pipe.process(block)
    assert sources and not any(src.detection.detected for src in sources) and pipe.near_field > 0


def test_f0_refinement_does_not_depend_on_the_level() -> None:
    blocks = _blocks(SimAcousticArray(GEO, POSE, seed=3), 2.0, "quadcopter", np.array([0.0, 100.0, 30.0]))
    for b in blocks:
        quiet, loud = frame_spectra(b, FS), frame_spectra(b * 1e4, FS)
        assert quiet is not None and loud is not None
        for f0 in (150.0, 201.0, 333.0):
            assert np.array_equal(harmonic_bins(quiet, f0), harmonic_bins(loud, f0))


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
    from tests.fakes import ChunkTransport, StillClock

    sim = SimAcousticArray(GEO, POSE, seed=2, ambient_db_spl=35.0)
    spot = GEO.positions[0] + np.array([0.0, 0.0, 0.03])
    data = b"".join(sim.block(k / 10, ["i"], ["insect"], [spot], [np.zeros(3)]) for k in range(31))
    frames = PcmFrameParser().feed(data)
    driver = AcousticArrayDriver(
        "mic", ChunkTransport.split(data, 4096), StillClock(), geometry=GEO, threshold=None
    )
    out = []
    for _ in range(len(data) // 4096 + 2):
        out += [m for m in driver.read() if isinstance(m, AcousticBearing)]
    assert out == [] and driver.counters["near_field"] > 0

    site = SimAcousticArray(GEO, POSE, seed=5)
    quiet = PcmFrameParser().feed(
        b"".join(site.block(k / 2, [], [], [], []) for k in range(GAIN_LEARNT_BLOCKS + 4))
    )
    driver = AcousticArrayDriver("mic", ChunkTransport.split(b"", 1), StillClock(), geometry=GEO)
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


@pytest.mark.parametrize("seed", [131, 166])
def test_an_insect_read_on_a_high_harmonic_is_still_placed_at_the_capsule(seed: int) -> None:
    """Insects whose wingbeat is about 180 Hz (these seeds' voices), 2-3.5 cm from a capsule in a
    48 dB site: the comb search reads the comb on a high harmonic (seed 131: its seventh, 1254 Hz),
    whose own harmonics under the array's 2.1 kHz cap are too few to judge, and which f0/2 and
    f0/3 do not reach back from (2 of 5 windows detected before). Each f0/k whose own lines
    stand in the beam (`features.sub_combs`, down to the lowest drone f0) is judged too."""
    rng = np.random.default_rng(seed)
    mic = GEO.positions[seed % GEO.n_mics]
    away = rng.normal(size=3)
    away[2] = abs(away[2])
    spot = mic + away / np.linalg.norm(away) * rng.uniform(0.02, 0.035)
    blocks = _blocks(SimAcousticArray(GEO, POSE, seed=seed, ambient_db_spl=48.0), 4.0, "insect", spot)
    pipe = AcousticPipeline(GEO, FS, pose=POSE)
    assert sum(_beam_alone(pipe, b) for b in blocks) == len(blocks)  # the comb alone: a drone
    assert not any(src.detection.detected for b in blocks for src in pipe.process(b))


def test_a_drones_comb_has_no_sub_combs_an_insects_read_high_has_its_own() -> None:
    """`features.sub_combs`: a comb at 500 Hz (a drone's, no lines between its own) gives no f0/k
    to judge; a 180 Hz comb read as its fifth harmonic (900 Hz) gives 5 (its own lines stand),
    and not 2, 3 or 4 (f0/k's own lines fall between the 180 Hz comb's)."""
    rng = np.random.default_rng(2)
    t = np.arange(FS) / FS

    def comb(f0: float) -> np.ndarray:
        k = np.arange(1, int(5000 // f0) + 1)
        x = (np.sin(2 * math.pi * f0 * k[:, None] * t + rng.uniform(0, 6, (k.size, 1))) / k[:, None]).sum(0)
        return np.asarray(0.01 * x + 1e-4 * rng.standard_normal(FS))

    drone, insect = extract(comb(500.0), FS).white_db, extract(comb(180.0), FS).white_db
    assert drone is not None and insect is not None
    assert sub_combs(drone, 500.0, FS) == []
    assert sub_combs(insect, 900.0, FS) == [5]


def _far_and_near(drone_f0: float | None, insect_f0: float, seed: int) -> np.ndarray:
    """A ReSpeaker 4 block: unless None, a far drone's comb (`drone_f0`, a plane wave, alike at
    every capsule, 14 dB under) and an insect's comb (`insect_f0`) 2 cm from capsule 0, as 1/r
    and its delays give each capsule; each capsule's own noise."""
    rng = np.random.default_rng(seed)
    n, c = FS, 343.0
    f = np.fft.rfftfreq(n, 1 / FS)
    t = np.arange(n) / FS

    def comb(f0: float) -> np.ndarray:
        k = np.arange(1, int(4000 // f0) + 1)
        x = (np.sin(2 * math.pi * f0 * k[:, None] * t + rng.uniform(0, 6, (k.size, 1))) / k[:, None]).sum(0)
        return np.asarray(np.fft.rfft(0.01 * x))

    u = np.array([0.6, 0.7, 0.39]) / np.linalg.norm([0.6, 0.7, 0.39])
    spot = GEO.positions[0] + np.array([-0.02, 0.0, 0.0])
    insect, drone = comb(insect_f0), 0.2 * comb(drone_f0) if drone_f0 is not None else 0.0
    chans = []
    for p in GEO.positions:
        r = float(np.linalg.norm(p - spot))
        spec = drone * np.exp(2j * math.pi * f * (p @ u) / c) + insect * 0.02 / r * np.exp(
            -2j * math.pi * f * r / c
        )
        chans.append(np.fft.irfft(spec, n))
    x = np.stack(chans, axis=1)
    return np.asarray(x + 1e-4 * rng.standard_normal(x.shape))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_drones_comb_read_high_is_not_judged_on_an_insects_comb_beside_it(seed: int) -> None:
    """A far drone at 245 Hz that the comb search reads on its third harmonic (735 Hz) beside an
    insect at 143 Hz, 2 cm from a capsule: 735/5 = 147 Hz lies on the insect's comb (the spread
    refines it to 143), whose own lines stand, so f0/5 is judged, and on the insect's lines it is
    near (12 dB: the drone marked down). A sub-comb counts only as far as the detector's own
    lines (735 and 1470 Hz, alike at every capsule) share its 1/r: not near. An insect read on
    its fifth harmonic, alone or beside the drone (170 Hz read as 850), is still placed at its
    capsule. (Where the drone's line and the insect's share a bin, 16 Hz at 64 ms frames, the
    detector's lines cannot tell them apart: a 242 Hz drone's 726 Hz beside 715.)"""
    allowance = far_field_spread_db(GEO.positions, 1.0)
    drone = frame_spectra(_far_and_near(245.0, 143.0, seed), FS)
    insect = frame_spectra(_far_and_near(245.0, 170.0, seed), FS)
    alone = frame_spectra(_far_and_near(None, 143.0, seed), FS)
    assert drone is not None and insect is not None and alone is not None
    assert level_spread_db(drone, GEO.positions, 735.0 / 5) > allowance  # the insect's comb
    assert level_spread_db(drone, GEO.positions, 735.0, sub_combs=(5,)) <= allowance
    assert level_spread_db(insect, GEO.positions, 850.0, sub_combs=(5,)) > allowance
    assert level_spread_db(alone, GEO.positions, 715.0, sub_combs=(5,)) > allowance


def test_a_sub_comb_is_not_capped_when_the_detector_has_no_line_under_the_level_cap() -> None:
    """On an array wide enough that its level cap lies below the detector's f0 (here the top of
    the lines judged is set below it), the detector's own lines cannot confirm or deny a
    sub-comb's spread: it stands as measured, not zeroed (a review: an insect at 170 Hz read as
    850 on a custom array 3x the ReSpeaker 4's aperture, 22 dB spread, was capped to 0)."""
    import math

    from cuas_node.drivers.acoustic import nearfield

    f = np.arange(0.0, 24000.0, 16.0)

    class Spectra:  # only what _own_lines_db reads before it finds no line under the cap
        pass

    spectra = Spectra()
    spectra.f = f  # type: ignore[attr-defined]
    own = nearfield._own_lines_db(spectra, 850.0, 700.0, None, None, 0, np.array([1, 2]))  # type: ignore[arg-type]
    assert own == math.inf
