"""Acoustic array check: channel order, polarity and geometry from a source at a known bearing.

Why it is needed: a microphone array's direction finding assumes that wire channel k carries the
microphone at position k. A ribbon cable plugged the other way round, an ALSA device that numbers
its channels differently or a microphone wired with inverted polarity give confident, wrong
bearings (a swap of two microphones of a square array mirrors every bearing), and nothing in the
audio itself looks broken. A source at a known direction (a phone playing white noise, a sweep or
a tone, 1-3 m from the array) fixes what each pair of channels must show.

Method: PHAT-normalised cross-spectra of every pair of wire channels, averaged over the recording.
For each hypothesis (which microphone each wire channel carries, and each channel's polarity) the
expected cross-spectrum phase follows from the geometry and the source direction; the score is the
coherence of the measured cross-spectra with that expectation, summed over pairs. Every
permutation and polarity pattern is scored (7 microphones: 5040 × 64, vectorised), the best one is
compared with the configured one, and a runner-up that scores nearly as well means the source sat
on a symmetry axis of the array (the check then asks for another bearing instead of guessing).
Polarity is relative: all channels inverted is indistinguishable from none, and harmless.
Then, with the best mapping, each pair's time difference is measured at the correlation peak near
its expected lag and compared with the geometry (a wrong preset or mismeasured positions show up
here), and SRP-PHAT gives the bearing, which checks the mount's yaw against the stated bearing.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cuas_node.drivers.acoustic.decode import read_wav
from cuas_node.drivers.acoustic.doa import DoaOptions, SrpPhat, stft, unit_vectors
from cuas_node.drivers.acoustic.geometry import ArrayGeometry, explicit
from cuas_node.drivers.acoustic.protocol import PcmFrameParser
from cuas_node.kernel.physics import SPEED_OF_SOUND_MPS

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class CheckOptions:
    band_hz: tuple[float, float] = (150.0, 6000.0)
    frame_s: float = 0.064
    min_coherence: float = 0.15  # below this the source was not heard clearly enough to judge
    # A different hypothesis whose score is within max(min_gap, share · (1 − best)) of the best is a
    # tie: the gap that counts is relative to what the best hypothesis leaves unexplained.
    ambiguity_min_gap: float = 0.005
    ambiguity_share: float = 0.15
    max_tdoa_rms_us: float = 25.0  # geometry check: measured vs expected pair delays
    max_bearing_error_deg: float = 10.0
    speed_of_sound_mps: float = SPEED_OF_SOUND_MPS


@dataclass
class ArrayCheckResult:
    geometry: str
    verdict: str  # ok | swapped | polarity | swapped+polarity | ambiguous | inconclusive | geometry
    messages: list[str]
    mic_to_wire: list[int]  # best hypothesis: wire channel carrying each microphone
    inverted_wire_channels: list[int]
    suggested_channel_map: list[int]
    coherence_best: float
    coherence_configured: float
    coherence_runner_up: float
    tdoa_rms_us: float
    tdoa_residuals_us: list[float]
    bearing_measured_deg: float | None
    elevation_measured_deg: float | None
    bearing_expected_deg: float
    elevation_expected_deg: float
    plot: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    def report(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "ok": self.ok,
            "messages": list(self.messages),
            "result": {
                "mic_to_wire_channel": self.mic_to_wire,
                "inverted_wire_channels": self.inverted_wire_channels,
                "suggested_channel_map": self.suggested_channel_map,
                "bearing_measured_deg": self.bearing_measured_deg
                if self.bearing_measured_deg is not None
                else math.nan,
                "elevation_measured_deg": self.elevation_measured_deg
                if self.elevation_measured_deg is not None
                else math.nan,
                "bearing_expected_deg": self.bearing_expected_deg,
                "elevation_expected_deg": self.elevation_expected_deg,
            },
            "residuals": {
                "tdoa_rms_us": round(self.tdoa_rms_us, 2),
                "tdoa_per_pair_us": [round(v, 2) for v in self.tdoa_residuals_us],
            },
            "conditioning": {
                "coherence_best": round(self.coherence_best, 4),
                "coherence_configured": round(self.coherence_configured, 4),
                "coherence_runner_up": round(self.coherence_runner_up, 4),
            },
            "config": {"channel_map": self.suggested_channel_map},
        }


def read_audio(path: Path) -> tuple[FloatArray, int]:
    """(n, channels) samples in full-scale units and the sample rate, from a multichannel WAV or a
    capture of the array's framed-PCM serial stream (`calibrate capture --raw-dir`)."""
    if path.suffix.lower() == ".wav":
        return read_wav(path)
    parser = PcmFrameParser()
    blocks: list[npt.NDArray[np.int16]] = []
    fs = 0
    for frame in parser.feed(path.read_bytes()):
        if blocks and (frame.channels != blocks[0].shape[1] or frame.sample_rate != fs):
            continue
        fs = frame.sample_rate
        blocks.append(frame.samples)
    if not blocks:
        raise ValueError(f"{path}: no framed-PCM audio found (is it a capture of the array's port?)")
    return np.concatenate(blocks, axis=0).astype(np.float64) / 32768.0, fs


def expected_delays(
    positions: FloatArray, az_rad: float, el_rad: float, distance_m: float | None, c: float
) -> FloatArray:
    """Arrival time of the source's sound at each microphone, relative to the array centre."""
    u = unit_vectors(az_rad, el_rad)
    if distance_m is None:
        return np.asarray(-(positions @ u) / c, dtype=np.float64)
    src = u * distance_m
    return np.asarray((np.linalg.norm(src - positions, axis=1) - distance_m) / c, dtype=np.float64)


def check_array(
    samples: npt.ArrayLike,
    sample_rate: int,
    geometry: ArrayGeometry,
    az_deg: float,
    el_deg: float = 0.0,
    distance_m: float | None = None,
    options: CheckOptions | None = None,
) -> ArrayCheckResult:
    """Check one recording of a source at (az, el) in the array's own frame (degrees)."""
    opt = options or CheckOptions()
    x_all = np.asarray(samples, dtype=np.float64)
    cmap = list(geometry.channel_map)
    if x_all.ndim != 2 or x_all.shape[1] <= max(cmap):
        raise ValueError(f"the recording has {x_all.shape[-1]} channels; the array needs {max(cmap) + 1}")
    x = x_all[:, cmap]  # column k: the wire channel configured for microphone k
    m = geometry.n_mics
    nfft = 1 << max(8, math.ceil(math.log2(opt.frame_s * sample_rate)))
    spec = stft(x, nfft, nfft // 2)  # (T, M, F)
    freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    band = (freqs >= opt.band_hz[0]) & (freqs <= min(opt.band_hz[1], 0.45 * sample_rate))
    spec, freqs = spec[:, :, band], np.asarray(freqs[band], dtype=np.float64)
    cross = spec[:, :, None, :] * np.conj(spec[:, None, :, :])  # (T, a, b, F)
    cross /= np.abs(cross) + 1e-20
    c_ab = cross.mean(axis=0)  # (a, b, F): PHAT coherence per bin, noise bins average out
    # Weight the bins by how far their coherence rises above what noise alone leaves after
    # averaging T frames (~1/sqrt(T)): a tone counts only at its own frequency, white noise everywhere.
    mag = np.abs(c_ab)
    weight = np.clip(mag - 3.0 / math.sqrt(max(1, spec.shape[0])), 0.0, None)
    c_ab = weight * c_ab / (mag + 1e-20)
    total = weight.sum(axis=-1)
    np.fill_diagonal(total, 1.0)
    tau = expected_delays(
        geometry.positions, math.radians(az_deg), math.radians(el_deg), distance_m, opt.speed_of_sound_mps
    )
    dtau = tau[:, None] - tau[None, :]  # (m, n)
    steer = np.exp(2j * math.pi * freqs[None, None, :] * dtau[:, :, None])  # (m, n, F)
    # g[a, b, m, n]: how well wire pair (a, b) matches the expectation for microphones (m, n).
    g = np.real(np.einsum("abf,mnf->abmn", c_ab, steer)) / np.maximum(total, 1e-12)[:, :, None, None]

    perms = np.array(list(itertools.permutations(range(m))), dtype=np.intp)  # perms[p, mic] = wire
    signs = np.array([(1, *s) for s in itertools.product((1, -1), repeat=m - 1)], dtype=np.float64)
    mic = np.arange(m)
    pair_score = g[perms[:, :, None], perms[:, None, :], mic[None, :, None], mic[None, None, :]]
    iu = np.triu_indices(m, k=1)
    n_pairs = iu[0].size
    upper = np.zeros((m, m))
    upper[iu] = 1.0
    # score[p, k] = Σ_{m<n} s_m s_n P[p, m, n] / pairs: the mean coherence with the hypothesis.
    scores = np.einsum("km,pmn,kn->pk", signs, pair_score * upper, signs) / n_pairs
    flat = np.argsort(scores, axis=None)[::-1]
    best_p, best_k = np.unravel_index(int(flat[0]), scores.shape)
    best = float(scores[best_p, best_k])
    configured = float(scores[0, 0])  # identity permutation, no inversion
    runner = max((float(scores.flat[i]) for i in flat[1:2]), default=0.0)
    mic_to_wire_idx = [int(v) for v in perms[best_p]]
    sign = signs[best_k].copy()
    if (sign < 0).sum() * 2 > m:
        sign = -sign  # fewer inversions: all-inverted is the same hypothesis
    inverted = sorted(cmap[mic_to_wire_idx[k]] for k in range(m) if sign[k] < 0)
    suggested = [cmap[w] for w in mic_to_wire_idx]

    messages: list[str] = []
    swapped = mic_to_wire_idx != list(range(m))
    # Geometry: per-pair delay at the correlation peak near its expected lag, with the best mapping.
    xb = x[:, mic_to_wire_idx] * sign[None, :]
    tdoa_res = _tdoa_residuals(xb, sample_rate, dtau, nfft, opt)
    tdoa_rms = float(np.sqrt(np.mean(np.square(tdoa_res)))) if tdoa_res.size else math.nan
    bearing: float | None = None
    elevation: float | None = None
    corrected = explicit(geometry.positions.tolist(), None, geometry.name)
    try:
        peaks = SrpPhat(corrected, sample_rate, DoaOptions(band_hz=opt.band_hz, max_sources=1)).localise(
            xb[: min(xb.shape[0], 4 * sample_rate)]
        )
        if peaks:
            bearing = math.degrees(peaks[0].az_rad)
            elevation = math.degrees(peaks[0].el_rad)
    except ValueError:
        pass

    if best < opt.min_coherence:
        verdict = "inconclusive"
        messages.append(
            f"the source was not heard clearly (coherence {best:.2f} < {opt.min_coherence}): play it louder, "
            "closer (1-3 m), with less wind and background noise"
        )
    elif best - runner < max(opt.ambiguity_min_gap, opt.ambiguity_share * (1.0 - best)):
        verdict = "ambiguous"
        messages.append(
            "two channel assignments explain the recording equally well: the source is on a symmetry "
            "axis of the array. Record again with the source at a bearing between two microphones "
            "(e.g. 20-35° off boresight) and run the check on both recordings"
        )
    else:
        parts = []
        if swapped:
            parts.append("swapped")
            for k in range(m):
                if mic_to_wire_idx[k] != k:
                    pos = ", ".join(f"{v * 1000:.0f}" for v in geometry.positions[k])
                    messages.append(
                        f"microphone {k} (at [{pos}] mm) is on wire channel {cmap[mic_to_wire_idx[k]]}, "
                        f"the config says channel {cmap[k]}"
                    )
            messages.append(f"fix: set channel_map = {suggested} for this sensor (or rewire)")
        if inverted:
            parts.append("polarity")
            messages.append(
                "inverted polarity on wire channel(s) "
                + ", ".join(str(c) for c in inverted)
                + ": check the microphone wiring (the direction finder tolerates it only partly)"
            )
        verdict = "+".join(parts) if parts else "ok"
        if math.isfinite(tdoa_rms) and tdoa_rms > opt.max_tdoa_rms_us:
            verdict = "geometry" if verdict == "ok" else verdict
            messages.append(
                f"pair delays differ from the geometry by {tdoa_rms:.0f} µs RMS "
                f"(limit {opt.max_tdoa_rms_us:g}): check the geometry preset or microphone positions "
                "and the source's bearing"
            )
        if bearing is not None:
            err = (bearing - az_deg + 180.0) % 360.0 - 180.0
            if abs(err) > opt.max_bearing_error_deg:
                messages.append(
                    f"the array hears the source at {bearing:.1f}°, stated {az_deg:.1f}° ({err:+.1f}°): "
                    "check the board's orientation against the mount yaw"
                )
        if verdict == "ok":
            messages.append("channel order, polarity and geometry agree with the configuration")
    return ArrayCheckResult(
        geometry=geometry.name,
        verdict=verdict,
        messages=messages,
        mic_to_wire=[cmap[w] for w in mic_to_wire_idx],
        inverted_wire_channels=inverted,
        suggested_channel_map=suggested,
        coherence_best=best,
        coherence_configured=configured,
        coherence_runner_up=runner,
        tdoa_rms_us=tdoa_rms,
        tdoa_residuals_us=[float(v) for v in tdoa_res],
        bearing_measured_deg=bearing,
        elevation_measured_deg=elevation,
        bearing_expected_deg=az_deg,
        elevation_expected_deg=el_deg,
        plot={"scores": np.sort(scores.ravel())[::-1][:50], "tdoa_expected_us": dtau[iu] * 1e6},
    )


def _tdoa_residuals(x: FloatArray, fs: int, dtau: FloatArray, nfft: int, opt: CheckOptions) -> FloatArray:
    """Measured minus expected delay of each pair (µs), searched within ±0.4 ms of the expectation."""
    spec = stft(x, nfft, nfft // 2)
    all_f = np.fft.rfftfreq(nfft, 1.0 / fs)
    band = (all_f >= opt.band_hz[0]) & (all_f <= min(opt.band_hz[1], 0.45 * fs))
    i, j = np.triu_indices(x.shape[1], k=1)
    cross = spec[:, i, :] * np.conj(spec[:, j, :])
    cross /= np.abs(cross) + 1e-20
    g = cross.mean(axis=0) * band[None, :]
    interp = 32
    n_lag = nfft * interp
    cc = np.fft.irfft(g, n=n_lag, axis=-1)
    lags = np.fft.fftfreq(n_lag, 1.0 / n_lag) / (fs * interp)  # seconds, circular order
    out = []
    for k in range(i.size):
        expected = dtau[i[k], j[k]]
        # X_i conj(X_j) of a copy delayed by τ_i − τ_j correlates best at lag τ_i − τ_j.
        window = np.abs(lags - expected) < 4e-4
        if not window.any():
            out.append(math.nan)
            continue
        idx = np.flatnonzero(window)
        peak = idx[int(np.argmax(cc[k, idx]))]
        out.append((lags[peak] - expected) * 1e6)
    return np.asarray(out, dtype=np.float64)
