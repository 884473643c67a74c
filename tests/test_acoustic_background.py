"""Site calibration of the acoustic detector (`calibrate acoustic-background`) and the one decision
path shared by the node's driver, `acoustic score` and `decode acoustic`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import wave
from pathlib import Path

import numpy as np
import pytest

from cuas_node.calibration.acoustic_simulated_clips import outdoor_ambience, unit_rms
from cuas_node.drivers.acoustic.background import Background, BackgroundError
from cuas_node.drivers.acoustic.background_learn import Recording, learn_background
from cuas_node.drivers.acoustic.decode import read_wav, score_wav_files
from cuas_node.drivers.acoustic.detector import (
    DroneDetector,
    configured_detector,
    load_default,
    shipped_threshold,
)

FS = 16000
CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "captures" / "acoustic"
needs_captures = pytest.mark.skipif(not (CAPTURES / "drone").is_dir(), reason="../shared/captures absent")


def site_sound(seconds: float, seed: int, hum_hz: float = 100.0) -> np.ndarray:
    """A site: outdoor ambience and a transformer humming at `hum_hz` and its harmonics, steady."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    t = np.arange(n) / FS
    hum = sum(np.sin(2 * np.pi * hum_hz * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 12))
    x = outdoor_ambience(n, FS, rng) + 0.6 * unit_rms(hum)
    return np.asarray(0.02 * unit_rms(x))


def real_drone(n_clips: int) -> np.ndarray:
    files = sorted((CAPTURES / "drone").glob("B_S2_D1_*.wav"))[:n_clips]
    return np.concatenate([read_wav(f)[0].mean(axis=1) for f in files])


def write_wav(path: Path, x: np.ndarray, fs: int = FS) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(fs)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def site_background() -> Background:
    return learn_background([Recording("site", site_sound(40.0, 1), FS)])


def test_background_learns_the_standing_lines_and_a_threshold(site_background: Background) -> None:
    bg = site_background
    freqs = np.arange(bg.suppress_db.size) * FS / 1024
    lines = freqs[bg.suppress_db > 0]
    assert lines.size > 0
    # what it learnt to subtract sits on the hum's harmonics, not elsewhere
    assert np.all(np.abs(lines / 100.0 - np.round(lines / 100.0)) * 100.0 < 20.0), lines
    # a rarer target false-alarm rate needs a higher threshold, and all are likelihoods
    assert 0 < bg.threshold(10.0) <= bg.threshold(1.0) <= bg.threshold(0.1) < 1
    assert bg.windows == 78 and bg.seconds == pytest.approx(40.0)


def test_background_file_round_trip_and_refusals(site_background: Background, tmp_path: Path) -> None:
    path = tmp_path / "bg.json"
    site_background.save(path)
    assert path.stat().st_size < 20_000  # small: it goes into recordings beside the config
    again = Background.load(path, site_background.weights_sha256)
    assert again.threshold(1.0) == pytest.approx(site_background.threshold(1.0), abs=1e-3)
    with pytest.raises(BackgroundError, match="other detector weights"):
        Background.load(path, "0" * 64)
    (tmp_path / "junk.json").write_text("{]")
    with pytest.raises(BackgroundError, match="not JSON"):
        Background.load(tmp_path / "junk.json")
    with pytest.raises(BackgroundError, match=re.escape("3.0 s of audio gives 4 analysis windows: record")):
        learn_background([Recording("short", site_sound(3.0, 2), FS)])
    # Twenty 1 s clips are 20 s of sound but no 1.024 s window: say why, not "too little".
    with pytest.raises(BackgroundError, match=re.escape("20 of the recordings are shorter than one 1.024 s")):
        learn_background([Recording(f"clip{i}", site_sound(1.0, i), FS) for i in range(20)])
    with pytest.raises(BackgroundError, match="silent"):
        learn_background([Recording("mute", np.zeros(20 * FS), FS)])
    with pytest.raises(BackgroundError, match="at 16000 Hz or more"):
        learn_background([Recording("phone", site_sound(30.0, 2)[::2], FS // 2)])
    with pytest.raises(BackgroundError, match="different sample rates"):
        learn_background(
            [Recording("a", site_sound(20.0, 2), FS), Recording("b", np.zeros(48000 * 20), 48000)]
        )


@needs_captures
def test_a_background_with_a_drone_is_refused() -> None:
    site = site_sound(30.0, 3)
    drone = real_drone(12)
    site[5 * FS : 5 * FS + drone.size] += 0.05 * unit_rms(drone)
    with pytest.raises(BackgroundError, match="drone-like source"):
        learn_background([Recording("site+drone", site, FS)])


@needs_captures
def test_site_windows_stay_quiet_and_a_drone_is_still_heard(site_background: Background) -> None:
    det = DroneDetector(background=site_background)
    other = site_sound(30.0, 11)  # the same site, another half minute
    win = int(1.024 * FS)
    quiet = [det.detect(other[s : s + win], FS).detected for s in range(0, other.size - win, FS // 2)]
    assert np.mean(quiet) <= 0.02
    drone = real_drone(10)
    clips = [drone[i * FS : i * FS + win] for i in range(8)]
    heard = [det.detect(other[:win] + 0.02 * unit_rms(c), FS).detected for c in clips]
    assert np.mean(heard) >= 0.75, heard


def test_one_decision_path(site_background: Background, tmp_path: Path) -> None:
    """The driver factory, `acoustic score` and the driver build the same detector and decide by it."""
    from cuas_node.config import build_config
    from cuas_node.driver_factory import build_driver
    from cuas_node.kernel.clock import SystemClock

    path = tmp_path / "bg.json"
    site_background.save(path)
    sensor = {"kind": "acoustic-array", "id": "mic", "port": "/dev/null", "background_file": str(path)}
    config = build_config({"node": {"id": "n"}, "sensors": [sensor]}, "test")
    driver = build_driver(config.sensors[0], SystemClock())
    scored = configured_detector(path)
    assert driver.detector.threshold == scored.threshold == Background.load(path).threshold(1.0)
    assert np.array_equal(driver.detector.background.suppress_db, scored.background.suppress_db)
    assert configured_detector().threshold == shipped_threshold(load_default())
    assert configured_detector(path, threshold=0.3).threshold == 0.3  # explicit config wins
    x = site_sound(1.1, 5)
    wav = write_wav(tmp_path / "x.wav", x)
    row = next(score_wav_files([wav], scored))
    d = scored.detect(read_wav(wav)[0][: int(1.024 * FS), 0], FS)
    assert row["detected"] == d.detected == (d.drone_likelihood >= scored.threshold)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cuas_node.cli", *args], capture_output=True, text=True, timeout=300
    )


def _in_process(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """The command run by `cli.main` in this process (no start-up), as `_cli` reports it."""
    from cuas_node.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)


@needs_captures
def test_calibrate_and_score_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The commands as a technician runs them: the first in a process of its own, the others
    in-process (the same code, without a start-up each)."""
    site = write_wav(tmp_path / "site.wav", site_sound(30.0, 21))
    out = tmp_path / "bg" / "site.json"
    done = _cli("calibrate", "acoustic-background", str(out), str(site), "--false-alarms-per-hour", "2")
    assert done.returncode == 0, done.stderr + done.stdout
    summary = json.loads(done.stdout)
    assert summary["config"]["background_file"] == str(out.resolve()) and out.is_file()
    drone_file = sorted((CAPTURES / "drone").glob("*.wav"))[0]
    scored = _in_process(capsys, "acoustic", "score", "--background", str(out), str(drone_file), str(site))
    assert scored.returncode == 0, scored.stderr
    rows = [json.loads(line) for line in scored.stdout.splitlines()]
    assert [set(r) for r in rows] == [{"file", "drone_likelihood", "detected", "f0_hz"}] * 2
    expected = list(score_wav_files([drone_file, site], configured_detector(out)))
    assert rows == expected  # the command is the library path, nothing else
    bad = _in_process(capsys, "acoustic", "score", "--background", str(tmp_path / "none.json"), str(site))
    assert bad.returncode == 2 and "cannot read the background file" in bad.stderr
    bad = _in_process(capsys, "acoustic", "score", "--false-alarms-per-hour", "2", str(site))
    assert bad.returncode == 2 and "give --background" in bad.stderr
    # an unreadable file is named with a reason, and the others are still scored
    (tmp_path / "text.wav").write_text("")  # empty: wave raises EOFError with no text
    mixed = _in_process(capsys, "acoustic", "score", str(tmp_path / "text.wav"), str(drone_file))
    assert mixed.returncode == 1 and len(mixed.stdout.splitlines()) == 1
    assert f"{tmp_path / 'text.wav'}: not a readable WAV file" in mixed.stderr
    # below the analysis rate: scored, with a warning
    narrow = write_wav(tmp_path / "narrow.wav", site_sound(3.0, 5)[::2], FS // 2)
    scored = _in_process(capsys, "acoustic", "score", str(narrow))
    assert scored.returncode == 0 and len(scored.stdout.splitlines()) == 1
    assert f"{FS // 2} Hz is below the {FS} Hz the detector analyses" in scored.stderr
    # a drone in the recording: refused, nothing written
    with_drone = site_sound(30.0, 22)
    drone = real_drone(12)
    with_drone[3 * FS : 3 * FS + drone.size] += 0.05 * unit_rms(drone)
    refused_out = tmp_path / "refused.json"
    refused = _in_process(
        capsys,
        "calibrate",
        "acoustic-background",
        str(refused_out),
        str(write_wav(tmp_path / "d.wav", with_drone)),
    )
    assert refused.returncode == 1 and "drone-like source" in refused.stdout
    assert not refused_out.exists()


def test_capture_from_the_configured_array(tmp_path: Path) -> None:
    from cuas_node.calibration.cli_acoustic_background import capture_array
    from cuas_node.config import build_config
    from cuas_node.drivers.acoustic.protocol import encode_frame
    from cuas_node.drivers.sim.pty import PtyPort

    port = PtyPort()
    config = build_config(
        {"node": {"id": "n"}, "sensors": [{"kind": "acoustic-array", "id": "mic", "port": port.path}]}, "test"
    )
    x = site_sound(12.0, 31)
    pcm = (np.repeat(x[:, None], 4, axis=1) * 32767).astype(np.int16)
    frames = [
        encode_frame(pcm[i : i + 256], FS, seq, int(i * 1e6 / FS))
        for seq, i in enumerate(range(0, x.size, 256))
    ]
    writer = threading.Thread(target=lambda: [port.write(f) for f in frames], daemon=True)
    writer.start()
    try:
        rec = capture_array(config.sensors[0], 3.0)
    finally:
        writer.join()
        port.close()
    assert rec.sample_rate == FS
    assert rec.samples.shape[0] > 10 * FS and rec.samples.shape[1] == 4  # the array's wire channels
    # a contiguous stretch of what the array sent (it may have started before the port was opened)
    sent = pcm / 32768.0
    start = next(i for i in range(0, x.size, 256) if np.allclose(sent[i : i + 256], rec.samples[:256]))
    assert np.allclose(rec.samples, sent[start : start + rec.samples.shape[0]])


def test_a_bad_background_file_stops_the_node_with_a_clear_message(tmp_path: Path) -> None:
    """`run` and `config check` build the drivers: a missing or foreign background is named."""
    from cuas_node.config import build_config
    from cuas_node.driver_factory import UnsupportedSensor, build_driver
    from cuas_node.kernel.clock import SystemClock

    foreign = tmp_path / "old.json"
    Background(np.zeros(513), 0.0, 1.0, 0.0, 40, 20.0, "f" * 64).save(foreign)
    for path, message in ((tmp_path / "missing.json", "cannot read"), (foreign, "other detector weights")):
        sensor = {"kind": "acoustic-array", "id": "mic", "port": "/dev/null", "background_file": str(path)}
        config = build_config({"node": {"id": "n"}, "sensors": [sensor]}, "test")
        with pytest.raises(UnsupportedSensor, match=f"sensor 'mic': background_file: .*{message}"):
            build_driver(config.sensors[0], SystemClock())


@needs_captures
def test_a_long_file_needs_a_drone_for_seconds_not_one_window(tmp_path: Path) -> None:
    """`acoustic score` on a 10 s recording: a drone-like second and a half among ambience is a
    window or two that the node would flag, not a drone; four seconds of drone are."""
    det = DroneDetector()
    drone = real_drone(4)
    brief, long = site_sound(10.0, 41, hum_hz=60.0), site_sound(10.0, 41, hum_hz=60.0)
    brief[4 * FS : 4 * FS + 3 * FS // 2] += 0.1 * unit_rms(drone[: 3 * FS // 2])
    long[3 * FS : 3 * FS + drone.size] += 0.1 * unit_rms(drone)
    win = int(1.024 * FS)
    windows = [
        det.detect(brief[s : s + win], FS).drone_likelihood for s in range(0, brief.size - win + 1, win // 2)
    ]
    assert max(windows) >= det.threshold  # the node would flag that one window
    rows = list(
        score_wav_files(
            [write_wav(tmp_path / "brief.wav", brief), write_wav(tmp_path / "long.wav", long)], det
        )
    )
    assert [r["detected"] for r in rows] == [False, True], rows
    assert rows[1]["drone_likelihood"] >= det.threshold > rows[0]["drone_likelihood"]


@needs_captures
def test_a_background_that_raises_the_threshold_says_what_it_costs(tmp_path: Path) -> None:
    """60 s of everyday sounds (the shared not-drone clips joined): the site threshold rises above
    the shipped one, and the command says that faint drones will be missed more often."""
    clips = []
    for path in sorted((CAPTURES / "not_drone").glob("*.wav"))[:60]:
        with wave.open(str(path)) as w:
            if (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (FS, 1, 2):
                clips.append(np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768.0)
    site = write_wav(tmp_path / "site.wav", np.concatenate(clips))
    done = _cli("calibrate", "acoustic-background", str(tmp_path / "bg.json"), str(site))
    assert done.returncode == 0, done.stderr + done.stdout
    threshold = json.loads(done.stdout)["threshold"]
    assert threshold > shipped_threshold(DroneDetector().model)
    assert f"needs a drone likelihood of {threshold:.2f}" in done.stderr
    assert "missed more often" in done.stderr


def test_a_recording_that_cannot_be_read_is_named_with_the_reason(tmp_path: Path) -> None:
    """As `acoustic score` says it: the file and the reason, not Python's "[Errno 2] ..."."""
    missing = tmp_path / "no-such-site.wav"
    done = _cli("calibrate", "acoustic-background", str(tmp_path / "bg.json"), str(missing))
    assert done.returncode == 1
    assert f"{missing}: No such file or directory" in done.stderr and "Errno" not in done.stderr
    assert not (tmp_path / "bg.json").exists()
