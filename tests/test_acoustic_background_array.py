"""The site background learnt through the array's pipeline (`calibrate acoustic-background` with
`--capture`, `--geometry` or `--config`/`--sensor`): its threshold is set on the scores the node
compares it with, each window's most drone-like source with the array's evidence, so an insect at
a capsule, which the node marks down, neither raises it nor makes it refused, while a drone still
does; and the file says which path learnt it."""

from __future__ import annotations

import json
import math
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from cuas_node.calibration.acoustic_simulated_clips import unit_rms
from cuas_node.drivers.acoustic.background import Background, BackgroundError, logit_stats, weights_digest
from cuas_node.drivers.acoustic.background_learn import Recording, learn_background
from cuas_node.drivers.acoustic.decode import ArrayScorer
from cuas_node.drivers.acoustic.detector import DEFAULT_WEIGHTS_PATH, DroneDetector
from cuas_node.drivers.acoustic.driver import AcousticPipeline
from cuas_node.drivers.acoustic.geometry import explicit, preset
from cuas_node.drivers.acoustic.protocol import encode_frame
from cuas_node.drivers.acoustic.steering import steered_mono
from cuas_node.drivers.sim.acoustic import SimAcousticArray
from cuas_node.drivers.sim.voices import colored_noise
from cuas_node.kernel.pose import Pose
from tests.acoustic_stream import sim_stream

FS = 16000
GEO = preset("respeaker-4")
POSE = Pose.from_angles(0, 0, 0, (0, 0, 0))
SITE_S = 20.0
INSECT_AT_S, INSECT_S = 8.0, 2.0  # an insect at a capsule for 2 s of the 20: 4-5 windows of 39


def _alone(kind: str, enu: np.ndarray, seconds: float, seed: int) -> np.ndarray:
    """One source as the array hears it, without the site's noise (added to a site's recording)."""
    quiet = SimAcousticArray(GEO, POSE, seed=seed, ambient_db_spl=-math.inf, wind_db_spl=-math.inf)
    return sim_stream(quiet, seconds, [kind], [enu])


def _plane_wave(x: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """A far source's sound `x` at each microphone, delayed by the geometry for direction `unit`."""
    f = np.fft.rfftfreq(x.size, 1 / FS)
    spec = np.fft.rfft(x)
    tau = -(GEO.positions @ unit) / 343.0
    return np.stack([np.fft.irfft(spec * np.exp(-2j * np.pi * f * t), x.size) for t in tau], axis=1)


def _quantised(x: np.ndarray) -> np.ndarray:
    """As an int16 recording holds it, so a WAV written of it reads back the same samples."""
    return np.asarray(np.clip(np.round(x * 32768.0), -32768, 32767) / 32768.0)


@pytest.fixture(scope="module")
def site() -> np.ndarray:
    """20 s of a site at a ReSpeaker 4: the simulator's ambience and wind at each capsule, and a
    transformer 100 Hz hum with broadband noise from one far direction (a site's steady coherent
    sound: the array finds a source in it, as it does at a real site)."""
    rng = np.random.default_rng(1)
    x = sim_stream(SimAcousticArray(GEO, POSE, seed=1, ambient_db_spl=35.0), SITE_S, [], [])
    t = np.arange(x.shape[0]) / FS
    hum = sum(np.sin(2 * np.pi * 100 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 12))
    far = unit_rms(unit_rms(colored_noise(t.size, rng, 1.0, FS)) + 0.6 * unit_rms(hum))
    unit = np.array([math.sin(1.0), math.cos(1.0), 0.2])
    return _quantised(x + _plane_wave(far * np.sqrt(np.mean(x**2)), unit / np.linalg.norm(unit)))


@pytest.fixture(scope="module")
def with_insect(site: np.ndarray) -> np.ndarray:
    """The same site with an insect 2-4 cm from capsule 1 for 2 s."""
    rng = np.random.default_rng(1)
    away = rng.normal(size=3)
    spot = GEO.positions[1] + away / np.linalg.norm(away) * rng.uniform(0.02, 0.04)
    insect = _alone("insect", spot, INSECT_S + 0.5, seed=101)
    x = site.copy()
    start, n = int(INSECT_AT_S * FS), int(INSECT_S * FS)
    x[start : start + n] += insect[:n]
    return _quantised(x)


@pytest.fixture(scope="module")
def site_on_array(site: np.ndarray) -> Background:
    return learn_background([Recording("site", site, FS)], scorer=ArrayScorer({"geometry": GEO}))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def test_an_insect_at_a_capsule_neither_raises_nor_refuses_the_array_background(
    site: np.ndarray, with_insect: np.ndarray, site_on_array: Background
) -> None:
    """One beam of the channels takes the insect for a drone and refuses the background (without
    the insect it learns it). The array's pipeline marks the insect down as at the array in every
    window it fills, as the node does, to below the site's median score; the background learnt
    through it is accepted, its threshold within its own sampling error (a bootstrap over the
    site's windows: what another 20 s of the same site could give) of the threshold learnt on the
    site without the insect."""
    assert learn_background([Recording("site", steered_mono(site, FS), FS)]).learnt_on == "mono"
    with pytest.raises(BackgroundError, match="drone-like source"):
        learn_background([Recording("site+insect", steered_mono(with_insect, FS), FS)])

    # The site's statistics are those of the array pipeline's scores, relative to its lines.
    relative = DroneDetector(background=site_on_array)
    scores = ArrayScorer({"geometry": GEO})(site, FS, relative)
    logits = np.array([_logit(d.drone_likelihood) for d in scores if d.drone_likelihood > 0.0])
    stats = (site_on_array.logit_mean, site_on_array.logit_std, site_on_array.logit_max)
    assert logit_stats(logits, upper=True) == pytest.approx(stats, abs=1e-3)

    pipe = AcousticPipeline(GEO, FS, detector=relative)
    inside = np.arange(INSECT_AT_S, INSECT_AT_S + INSECT_S - 1.0 + 1e-9, 0.5)  # the windows it fills
    for t in inside:
        sources = pipe.process(with_insect[int(t * FS) : int(t * FS) + FS])
        top = max((src.detection for src in sources), key=lambda d: d.drone_likelihood)
        assert _logit(top.drone_likelihood) < site_on_array.logit_mean
    assert pipe.near_field == inside.size

    bg = learn_background([Recording("site+insect", with_insect, FS)], scorer=ArrayScorer({"geometry": GEO}))
    assert bg.learnt_on == "array" and bg.array == "respeaker-4"
    shift = _logit(bg.threshold(1.0)) - _logit(site_on_array.threshold(1.0))

    def threshold_logit(sample: np.ndarray) -> float:
        mean, spread, peak = logit_stats(sample, upper=True)
        return _logit(
            replace(site_on_array, logit_mean=mean, logit_std=spread, logit_max=peak).threshold(1.0)
        )

    rng = np.random.default_rng(0)
    error = float(np.std([threshold_logit(rng.choice(logits, logits.size)) for _ in range(200)]))
    assert abs(shift) < error, (shift, error)


def test_a_far_drone_in_the_array_background_is_still_refused(site: np.ndarray) -> None:
    """A quadcopter 100 m out for 6 s of the 20: the array hears it coherent from one direction and
    far, so its evidence does not mark it down; the background is refused, the drone's time named."""
    drone = _alone("quadcopter", np.array([0.0, 100.0, 30.0]), 8.0, seed=201)
    x = site.copy()
    x[8 * FS : 14 * FS] += drone[FS : 7 * FS]  # from when its sound has reached the array
    with pytest.raises(BackgroundError, match=r"drone-like source .* from (7\.5|8\.0|8\.5) s in site"):
        learn_background([Recording("site", x, FS)], scorer=ArrayScorer({"geometry": GEO}))


def test_an_array_that_finds_no_source_cannot_set_a_threshold() -> None:
    """The simulator's ambience and wind alone, independent at each capsule: the array finds no
    direction in them, so the node takes no decision there; the windows are heard (not "silent")
    but give no scores to set a threshold on, and the learner says so."""
    quiet = sim_stream(SimAcousticArray(GEO, POSE, seed=3, ambient_db_spl=35.0), 11.0, [], [])
    with pytest.raises(BackgroundError, match=r"respeaker-4 array found a source in 0 of 20 windows only"):
        learn_background([Recording("quiet", quiet, FS)], scorer=ArrayScorer({"geometry": GEO}))


def test_the_background_file_records_the_path_it_was_learnt_on(
    site_on_array: Background, tmp_path: Path
) -> None:
    """The file says "array" and the geometry; a file without the field (written before it) loads
    as mono; the node warns at start when the path differs from the sensor's, not when it is the
    same (the pre-flight's note: `run` logs it, `config check` prints it, `doctor` warns)."""
    from cuas_node.config import build_config
    from cuas_node.preflight import startup_problems

    path = tmp_path / "array.json"
    site_on_array.save(path)
    doc = json.loads(path.read_text())
    assert (doc["learnt_on"], doc["array_geometry"]) == ("array", "respeaker-4")
    again = Background.load(path, weights_digest(DEFAULT_WEIGHTS_PATH))
    assert (again.learnt_on, again.array) == ("array", "respeaker-4")
    assert again.threshold(1.0) == pytest.approx(site_on_array.threshold(1.0), abs=1e-3)

    old = tmp_path / "old.json"
    old.write_text(json.dumps({k: v for k, v in doc.items() if k not in ("learnt_on", "array_geometry")}))
    mono = Background.load(old)
    assert (mono.learnt_on, mono.array) == ("mono", None)
    assert mono.threshold(1.0) == pytest.approx(again.threshold(1.0))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**doc, "array_geometry": None}))
    with pytest.raises(BackgroundError, match="damaged background file"):
        Background.load(bad)

    def warnings_at_start(background: Path, geometry: str) -> list[str]:
        sensor = {"kind": "acoustic-array", "id": "mic", "port": "/dev/null", "geometry": geometry}
        sensors = [{**sensor, "background_file": str(background)}]
        _problems, notes = startup_problems(build_config({"node": {"id": "n"}, "sensors": sensors}, "t"))
        return [n for n in notes if "background_file" in n]

    assert warnings_at_start(path, "respeaker-4") == []
    (word,) = warnings_at_start(old, "respeaker-4")
    assert (
        "sensor 'mic'" in word
        and "learnt on one beam (mono) but scored through the respeaker-4 array" in word
    )
    (word,) = warnings_at_start(path, "respeaker-6")
    assert "learnt through the respeaker-4 array but scored through the respeaker-6 array" in word


def _wav(path: Path, x: np.ndarray) -> Path:
    wavfile.write(path, FS, np.round(x * 32768.0).clip(-32768, 32767).astype(np.int16))
    return path


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from cuas_node.cli import main

    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_calibrate_with_the_array_geometry_end_to_end(
    site: np.ndarray, site_on_array: Background, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`calibrate acoustic-background --geometry respeaker-4` on the site's 4-channel WAV learns
    what the library learns through the array; `acoustic score` with it notes a one-beam scoring;
    a mono WAV alone is refused when the array is named (it was learnt as one beam, exit 0, and
    every run of the node then noted the mismatch: an outside user); the two kinds are not mixed."""
    wav = _wav(tmp_path / "site.wav", site)
    out = tmp_path / "bg.json"
    rc, stdout, err = _main(
        capsys, "calibrate", "acoustic-background", "--geometry", "respeaker-4", str(out), str(wav)
    )
    assert rc == 0, err + stdout
    summary = json.loads(stdout)
    assert (summary["learnt_on"], summary["array_geometry"]) == ("array", "respeaker-4")
    assert summary["threshold"] == round(site_on_array.threshold(1.0), 4)
    assert Background.load(out).array == "respeaker-4"

    rc, _, err = _main(
        capsys, "acoustic", "score", "--background", str(out), "--geometry", "respeaker-4", str(wav)
    )
    assert rc == 0 and "note:" not in err
    rc, _, err = _main(capsys, "acoustic", "score", "--background", str(out), str(wav))
    assert rc == 0 and "learnt through the respeaker-4 array but scored as one beam" in err

    mono = _wav(tmp_path / "mono.wav", site[: 11 * FS, 0])  # 21 windows: enough
    rc, stdout, err = _main(
        capsys,
        "calibrate",
        "acoustic-background",
        "--geometry",
        "respeaker-4",
        str(tmp_path / "m.json"),
        str(mono),
    )
    assert rc == 1 and "none of the 1 recording(s) carries the respeaker-4 array's 4 channels" in err
    assert f"{mono}: 1 channel(s), not the respeaker-4 array's 4: scored as one beam" in err
    assert not (tmp_path / "m.json").exists()
    rc, stdout, err = _main(capsys, "calibrate", "acoustic-background", str(tmp_path / "m.json"), str(mono))
    assert rc == 0 and json.loads(stdout)["learnt_on"] == "mono"  # no array named: one beam
    rc, _, err = _main(
        capsys,
        "calibrate",
        "acoustic-background",
        "--geometry",
        "respeaker-4",
        str(tmp_path / "x.json"),
        str(wav),
        str(mono),
    )
    assert rc == 1 and "learn the background from the array's recordings only" in err
    assert not (tmp_path / "x.json").exists()


def test_capture_from_the_configured_array_learns_through_it(
    with_insect: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--capture` from the configured array (a pty standing in for its serial port) with an
    insect at a capsule in what it hears: learnt through the array's pipeline, not refused."""
    from cuas_node.drivers.sim.pty import PtyPort

    port = PtyPort()
    config = tmp_path / "node.toml"
    config.write_text(
        f'[node]\nid = "n"\n[[sensors]]\nkind = "acoustic-array"\nid = "mic"\nport = "{port.path}"\n'
        'geometry = "respeaker-4"\n'
    )
    pcm = np.round(with_insect * 32768.0).clip(-32768, 32767).astype(np.int16)
    frames = [
        encode_frame(pcm[i : i + 256], FS, seq, int(i * 1e6 / FS))
        for seq, i in enumerate(range(0, pcm.shape[0], 256))
    ]
    stop = threading.Event()

    def stream() -> None:
        """As the array streams, but waiting out a reader that is slow to open or stalls (the
        machine is shared): no frame lost once the capture has begun."""
        for frame in frames:
            if stop.is_set():
                return
            port.write(frame, max_wait_s=2.0)

    writer = threading.Thread(target=stream, daemon=True)
    out = tmp_path / "bg.json"
    writer.start()
    try:
        rc, stdout, err = _main(
            capsys,
            "calibrate",
            "acoustic-background",
            str(out),
            "--capture",
            "3",
            "--config",
            str(config),
            "--sensor",
            "mic",
        )
    finally:
        stop.set()
        writer.join()
        port.close()
    assert rc == 0, err + stdout
    summary = json.loads(stdout)
    assert (summary["learnt_on"], summary["array_geometry"]) == ("array", "respeaker-4")
    # One stretch of the 20 s longer than 12 s holds the insect's 8-10 s.
    assert summary["seconds"] > SITE_S - INSECT_AT_S
    # The stream is the sensor's array: another geometry would mislabel the background.
    sensor = ("--config", str(config), "--sensor", "mic")
    rc, _, err = _main(
        capsys,
        "calibrate",
        "acoustic-background",
        "--geometry",
        "respeaker-6",
        str(out),
        "--capture",
        "1",
        *sensor,
    )
    assert rc == 2 and "--capture listens to the --sensor's array" in err  # a usage error


def test_two_arrays_given_by_their_positions_are_told_apart() -> None:
    """A background learnt through one array given by its positions is not taken as learnt through
    another (an outside user's 5.7 cm and 20 cm arrays were both just "custom"); the same positions
    give the same identity, and a preset is its name."""
    small = explicit([[0.0, 0.0], [0.057, 0.0], [0.0, 0.057]])
    large = explicit([[0.0, 0.0], [0.2, 0.0], [0.0, 0.2]])
    assert small.identity.startswith("custom-") and small.identity != large.identity
    assert explicit([[-0.0, 0.0, 0.0], [0.057, 0.0, 0.0], [0.0, 0.057, 0.0]]).identity == small.identity
    assert GEO.identity == "respeaker-4"
    bg = Background(np.zeros(8), 0.0, 1.0, 0.0, 40, 20.0, "digest", array=small.identity)
    assert bg.mismatch(small.identity) == ""
    assert large.identity in bg.mismatch(large.identity)


def test_windows_placed_at_a_capsule_set_neither_the_spread_nor_the_floor(
    site: np.ndarray, site_on_array: Background
) -> None:
    """An insect at a capsule for 8 s of the 20: the array marks each window it fills down as at
    the array (by 4-10 in logit), a low tail that pulled the median down and so widened the upper
    half's spread (helper-70: +1.3 to +2.1 in logit at 3 cm for 10-60 s; partly marked-down
    windows also set the loudest-window floor). Such windows are set aside, counted in the file,
    and the threshold is the site's own, within its sampling error, as for 2 s of insect."""
    rng = np.random.default_rng(4)
    away = rng.normal(size=3)
    spot = GEO.positions[2] + away / np.linalg.norm(away) * 0.03
    x = site.copy()
    x[4 * FS : 12 * FS] += _alone("insect", spot, 8.5, seed=104)[: 8 * FS]
    bg = learn_background(
        [Recording("site+insect", _quantised(x), FS)], scorer=ArrayScorer({"geometry": GEO})
    )
    relative = DroneDetector(background=site_on_array)
    scores = ArrayScorer({"geometry": GEO})(site, FS, relative)
    logits = np.array([_logit(d.drone_likelihood) for d in scores if d.drone_likelihood > 0.0])

    def threshold_logit(sample: np.ndarray) -> float:
        mean, spread, peak = logit_stats(sample, upper=True)
        return _logit(
            replace(site_on_array, logit_mean=mean, logit_std=spread, logit_max=peak).threshold(1.0)
        )

    error = float(np.std([threshold_logit(rng.choice(logits, logits.size)) for _ in range(200)]))
    shift = _logit(bg.threshold(1.0)) - _logit(site_on_array.threshold(1.0))
    assert abs(shift) < error, (shift, error)
    assert 12 <= bg.near_set_aside <= 17  # the 13-15 windows the insect fills (of 39)
    assert bg.to_json()["near_windows_set_aside"] == bg.near_set_aside


def test_calibrate_exits_2_on_options_that_do_not_go_together(tmp_path: Path) -> None:
    """Usage errors exit 2, as `acoustic score` and argparse do (docs/calibration.md); a refused
    input exits 1. An outside user found `--sensor` without `--config` gave 1 here and 2 there."""
    from cuas_node.calibration.cli import main

    out = str(tmp_path / "bg.json")
    assert main(["acoustic-background", "--sensor", "mic", out, "x.wav"]) == 2
    assert main(["acoustic-background", "--geometry", "[[0,0],[0,0]]", out, "x.wav"]) == 2
    assert main(["acoustic-background", out, str(tmp_path / "missing.wav")]) == 1
