"""WAV files as recorders and other tools write them (`decode.read_wav`, used by `acoustic score`,
`calibrate acoustic-background` and `calibrate acoustic-check`): 8–32-bit PCM, 32/64-bit float and
WAVE_FORMAT_EXTENSIBLE headers are read to the same full-scale samples and the same verdict; a
file that is not a WAV is an error that names it; spaced channels are put in step before they
are averaged (`steering`)."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile
from scipy.signal import resample_poly

from cuas_node.calibration.acoustic_simulated_clips import simulated_clip
from cuas_node.drivers.acoustic.decode import read_wav, score_wav_files
from cuas_node.drivers.acoustic.steering import channel_delays, steered_mono

RATE = 44100
_PCM_GUID = bytes.fromhex("0100000000001000800000aa00389b71")  # KSDATAFORMAT_SUBTYPE_PCM


def _extensible_24bit(path: Path, x: np.ndarray, rate: int) -> Path:
    """A 24-bit WAVE_FORMAT_EXTENSIBLE file, as field recorders write it (Python 3.11's `wave`
    refuses the header)."""
    channels = x.shape[1]
    ints = np.round(np.clip(x, -1.0, 1.0 - 2.0**-23) * 2.0**23).astype("<i4").reshape(-1)
    data = np.frombuffer(ints.tobytes(), dtype=np.uint8).reshape(-1, 4)[:, :3].tobytes()
    fmt = struct.pack(
        "<HHIIHHHHI16s", 0xFFFE, channels, rate, rate * channels * 3, channels * 3, 24, 22, 24, 3, _PCM_GUID
    )
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.fixture(scope="module")
def drone_stereo() -> np.ndarray:
    """3 s of a simulated drone at 44.1 kHz on two channels (the second quieter)."""
    clip = simulated_clip(1, np.random.default_rng(2))
    up = resample_poly(np.tile(clip, 3), 441, 160)
    up = 0.3 * up / np.max(np.abs(up))
    return np.stack([up, 0.8 * up], axis=1)


def test_every_common_encoding_reads_to_the_same_samples(tmp_path: Path, drone_stereo: np.ndarray) -> None:
    x = drone_stereo
    files = {
        "int16": (tmp_path / "i16.wav", 2.0**-15),
        "float32": (tmp_path / "f32.wav", 1e-7),
        "float64": (tmp_path / "f64.wav", 1e-15),
        "int32": (tmp_path / "i32.wav", 2.0**-31),
        "ext24": (tmp_path / "e24.wav", 2.0**-23),
    }
    wavfile.write(files["int16"][0], RATE, np.round(x * 2**15).astype(np.int16))
    wavfile.write(files["float32"][0], RATE, x.astype(np.float32))
    wavfile.write(files["float64"][0], RATE, x)
    wavfile.write(files["int32"][0], RATE, np.round(x * 2**31).astype(np.int32))
    _extensible_24bit(files["ext24"][0], x, RATE)
    for path, step in files.values():
        y, rate = read_wav(path)
        assert rate == RATE and y.shape == x.shape and y.dtype == np.float64
        assert np.max(np.abs(y - x)) <= step, path.name
    u8 = tmp_path / "u8.wav"
    wavfile.write(u8, 16000, np.round(x[:16000, 0] * 127 + 128).astype(np.uint8))
    y, rate = read_wav(u8)
    assert rate == 16000 and y.shape == (16000, 1) and np.max(np.abs(y[:, 0] - x[:16000, 0])) <= 1 / 127
    # The verdict does not depend on how the file was encoded.
    rows = list(score_wav_files([p for p, _ in files.values()]))
    likelihoods = [r["drone_likelihood"] for r in rows]
    assert rows[0]["detected"] and all(r["detected"] == rows[0]["detected"] for r in rows)
    assert max(likelihoods) - min(likelihoods) <= 0.01


def test_what_is_not_a_wav_is_an_error_naming_the_file(tmp_path: Path, drone_stereo: np.ndarray) -> None:
    cases = {
        "empty.wav": b"",
        "text.wav": b"a text file, not audio at all",
        "header.wav": _extensible_24bit(tmp_path / "ok.wav", drone_stereo, RATE).read_bytes()[:30],
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError, match=f"{path}: not a readable WAV file"):
            read_wav(path)
    # A file cut short in its data gives the samples it holds.
    cut = tmp_path / "cut.wav"
    cut.write_bytes((tmp_path / "ok.wav").read_bytes()[:10_000])
    y, _ = read_wav(cut)
    assert 0 < y.shape[0] < drone_stereo.shape[0]
    # The command names each bad file, scores the rest and exits 1.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cuas_node.cli",
            "acoustic",
            "score",
            str(tmp_path / "text.wav"),
            str(tmp_path / "ok.wav"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and len(done.stdout.splitlines()) == 1
    assert f"{tmp_path / 'text.wav'}: not a readable WAV file" in done.stderr


def test_channels_are_put_in_step_before_they_are_averaged() -> None:
    """A WAV has no geometry: each channel is shifted onto the first by the delay of their
    strongest common sound (GCC-PHAT), block by block, in either direction."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(3 * 16000)
    for delay in (0, 3, -5, 40):
        later = np.roll(x, delay) + 0.3 * rng.standard_normal(x.size)
        both = np.stack([x, later], axis=1)
        assert channel_delays(both[16000:24000], 16000).tolist() == [0, delay]
        inner = slice(100, -100)
        assert np.corrcoef(steered_mono(both, 16000)[inner], x[inner])[0, 1] > 0.98
    mono = x[:, None]
    assert np.array_equal(steered_mono(mono, 16000), x)
    same = np.stack([x, x], axis=1)
    assert np.allclose(steered_mono(same, 16000), x)


def test_a_spaced_pair_hears_the_drone_as_one_microphone_does(tmp_path: Path) -> None:
    """A drone 0.75 ms later at the second microphone (a 30 cm pair, the drone to the side): the
    plain mean of the channels notches its comb at 667 Hz, 2 kHz, 3.3 kHz ... (likelihood 0.44
    here, not detected); put in step, the pair scores as one channel does."""
    clip = resample_poly(np.tile(simulated_clip(1, np.random.default_rng(8)), 2), 441, 160)
    rng = np.random.default_rng(108)
    hiss = 0.1 * np.std(clip)
    pair = np.stack(
        [
            clip + hiss * rng.standard_normal(clip.size),
            np.roll(clip, 33) + hiss * rng.standard_normal(clip.size),
        ],
        axis=1,
    )
    scale = 0.5 / np.max(np.abs(pair))
    wavfile.write(tmp_path / "one.wav", RATE, (clip * scale).astype(np.float32))
    wavfile.write(tmp_path / "pair.wav", RATE, (pair * scale).astype(np.float32))
    one, both = score_wav_files([tmp_path / "one.wav", tmp_path / "pair.wav"])
    assert one["detected"] and both["detected"]
    assert abs(both["drone_likelihood"] - one["drone_likelihood"]) <= 0.05
