"""Acoustic array check: a source at a known bearing, synthesised with the array's true geometry
(exact fractional delays), then wired wrongly on purpose: the check must name what is wrong."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from cuas_node.calibration.acoustic_check import check_array, expected_delays, read_audio
from cuas_node.drivers.acoustic.geometry import ArrayGeometry, preset
from cuas_node.drivers.acoustic.protocol import FLAG_UTC, encode_frame

FS = 16000


def synthesise(
    geometry: ArrayGeometry,
    az_deg: float,
    el_deg: float = 5.0,
    *,
    seconds: float = 2.0,
    tone_hz: float | None = None,
    distance_m: float | None = 2.0,
    snr_db: float = 20.0,
    seed: int = 0,
) -> np.ndarray:
    """(n, M) samples in microphone order: white noise (a phone's noise app) or a tone, delayed
    exactly per microphone in the frequency domain, plus independent sensor noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    pad = n + 2048
    if tone_hz is None:
        source = rng.standard_normal(pad)
    else:
        source = np.sin(2 * math.pi * tone_hz * np.arange(pad) / FS)
    spec = np.fft.rfft(source)
    f = np.fft.rfftfreq(pad, 1.0 / FS)
    tau = expected_delays(geometry.positions, math.radians(az_deg), math.radians(el_deg), distance_m, 343.0)
    x = np.fft.irfft(spec[None, :] * np.exp(-2j * math.pi * f[None, :] * tau[:, None]), n=pad)[
        :, 1024 : 1024 + n
    ].T
    x = x / np.sqrt(np.mean(x**2)) * 0.1
    return x + rng.standard_normal(x.shape) * 0.1 * 10 ** (-snr_db / 20)


def test_correct_wiring_is_ok() -> None:
    geo = preset("respeaker-4")
    result = check_array(synthesise(geo, 30.0), FS, geo, 30.0, 5.0, distance_m=2.0)
    assert result.verdict == "ok", result.messages
    assert result.tdoa_rms_us < 10
    assert result.bearing_measured_deg is not None and abs(result.bearing_measured_deg - 30.0) < 5


def test_swapped_and_inverted_channels_are_named() -> None:
    geo = preset("respeaker-4")
    mics = synthesise(geo, 30.0)
    wire = mics[:, [0, 2, 1, 3]].copy()  # microphones 1 and 2 on each other's wire channels
    wire[:, 3] *= -1  # channel 3 wired with inverted polarity
    result = check_array(wire, FS, geo, 30.0, 5.0, distance_m=2.0)
    print(result.messages)
    assert result.verdict == "swapped+polarity", result.messages
    assert result.mic_to_wire == [0, 2, 1, 3]
    assert result.inverted_wire_channels == [3]
    assert result.suggested_channel_map == [0, 2, 1, 3]
    assert any("microphone 1" in m and "wire channel 2" in m for m in result.messages)
    assert any("inverted polarity on wire channel(s) 3" in m for m in result.messages)


def test_six_and_eight_channel_arrays_swaps() -> None:
    for name, perm in (("respeaker-6", [0, 1, 4, 3, 2, 5]), ("minidsp-uma8", [0, 1, 2, 3, 4, 6, 5])):
        geo = preset(name)
        wire = synthesise(geo, -25.0, seed=2)[:, perm]
        result = check_array(wire, FS, geo, -25.0, 5.0, distance_m=2.0)
        assert result.verdict == "swapped", (name, result.messages)
        assert result.mic_to_wire == perm


def test_a_tone_finds_polarity_and_never_guesses_a_swap() -> None:
    """A single tone constrains far less than noise: polarity is found, a swap is found or the check
    says it cannot tell, but it never names a wrong channel map."""
    geo = preset("respeaker-4")
    mics = synthesise(geo, 30.0, tone_hz=600.0, seed=3)
    mics[:, 2] *= -1
    result = check_array(mics, FS, geo, 30.0, 5.0, distance_m=2.0)
    assert result.verdict == "polarity" and result.inverted_wire_channels == [2], result.messages
    geo6 = preset("respeaker-6")
    wire = synthesise(geo6, -25.0, tone_hz=700.0, seed=2)[:, [0, 1, 4, 3, 2, 5]]
    result = check_array(wire, FS, geo6, -25.0, 5.0, distance_m=2.0)
    assert result.verdict in ("swapped", "ambiguous")
    if result.verdict == "swapped":
        assert result.mic_to_wire == [0, 1, 4, 3, 2, 5]


def test_source_on_symmetry_axis_is_ambiguous_not_guessed() -> None:
    geo = preset("respeaker-4")
    mics = synthesise(geo, 0.0, el_deg=0.0, distance_m=None)  # boresight: left/right mirror images
    wire = mics[:, [2, 1, 0, 3]]
    result = check_array(wire, FS, geo, 0.0, 0.0)
    assert result.verdict == "ambiguous"


def test_cli_reads_framed_pcm_capture(tmp_path: Path) -> None:
    from cuas_node.calibration.cli import main as calibrate_main

    geo = preset("respeaker-4")
    wire = synthesise(geo, 30.0)[:, [1, 0, 2, 3]]
    data = b"".join(
        encode_frame(wire[k : k + 256] * 32767, FS, seq, 1_000_000 * seq, flags=FLAG_UTC)
        for seq, k in enumerate(range(0, wire.shape[0] - 255, 256))
    )
    raw = tmp_path / "array.bin"
    raw.write_bytes(data)
    samples, fs = read_audio(raw)
    assert fs == FS and samples.shape[1] == 4
    out = tmp_path / "array-acoustic-check.toml"
    status = calibrate_main(
        [
            "acoustic-check",
            "--audio",
            str(raw),
            "--geometry",
            "respeaker-4",
            "--bearing-deg",
            "30",
            "--elevation-deg",
            "5",
            "--distance-m",
            "2",
            "--sensor-frame",
            "--out",
            str(out),
        ]
    )
    assert status == 1  # a wiring problem is a failed check
    report = tomllib.loads(out.read_text())
    assert report["verdict"] == "swapped"
    assert report["config"]["channel_map"] == [1, 0, 2, 3]
    assert out.with_suffix(".png").exists()


@pytest.mark.parametrize("az", [20.0, 140.0])
def test_polarity_only(az: float) -> None:
    geo = preset("respeaker-4")
    mics = synthesise(geo, az, seed=4)
    mics[:, 1] *= -1
    result = check_array(mics, FS, geo, az, 5.0, distance_m=2.0)
    assert result.verdict == "polarity" and result.inverted_wire_channels == [1]
