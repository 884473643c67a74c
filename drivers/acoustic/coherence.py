"""Multichannel evidence for the drone detector: does the comb come from one direction?

A drone is a point source: at the frequencies of its blade harmonics every microphone hears the
same sound, delayed by the geometry, so the PHAT cross-spectra of all pairs, steered to the source's
direction, line up (coherence near 1 where the harmonics stand above the floor). Wind is turbulence
at each capsule: incoherent between microphones even a few centimetres apart, so the same measure
sits at 0 ± a few hundredths. So is a comb picked up electrically on each channel, or a mono
recording's artefact. The mono detector cannot tell these apart from a drone; the array can.

`harmonic_coherence` measures it on the harmonics of the detector's f0; `coherence_logit` turns it
into a bounded logit adjustment (`driver.AcousticPipeline` applies it through
`DroneDetector.with_evidence`, so the decision path stays the detector's):

* below COHERENT (0.10, several standard deviations above what incoherent noise gives with a few
  pairs and dozens of frames) the comb has no direction: up to −4 in logit at coherence 0;
* above it, a mild bonus up to +1 (coherence does not make a comb more drone-like; it only
  confirms that it is one source).

A WAV file has channels but no geometry (`acoustic score`): `comb_coherence` asks the same
question without a direction. Per harmonic, the magnitude-squared coherence of each pair (the
cross-spectrum's magnitude, so any delay between the channels is allowed) against what one point
source would give with the prominence the comb has over each channel's local floor: a harmonic
holding p times its floor is (1 − 1/p) source, and one source over independent noise at each
microphone has a squared coherence of (1 − 1/p₁)(1 − 1/p₂). `incoherence_logit` marks a comb
down (up to −4) when the coherence falls short of half of that, and only where the test can tell
(half the expected value well above what incoherent noise scatters to in so few frames); it never
adds: two identical channels (a mono recording saved as stereo) are perfectly coherent and must
score as the mono file.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
COHERENT = 0.10
MAX_PENALTY = 4.0
MAX_BONUS = 1.0
MAX_HZ = 4000.0
FRAME_S = 0.064  # frames of ≥ 64 ms: bins of ≤ 16 Hz keep a rotor's harmonics (f0 ≥ 50 Hz) apart
SHORTFALL = 0.5  # a point source keeps at least half the coherence its prominence implies
NULL_SIGMAS = 4.0  # ... and the test is only made where that half stands this far above chance


def _harmonics(f0_hz: float, fs: int) -> FloatArray:
    return np.arange(1, int(min(MAX_HZ, 0.45 * fs) // f0_hz) + 1, dtype=np.float64) * f0_hz


def _harmonic_bins(power: FloatArray, f: FloatArray, harm: FloatArray) -> npt.NDArray[np.intp]:
    """The bin of each harmonic's actual peak in `power`, within ±2 % (+1 bin) of k·f0: f0 is
    known to ~1 %, which at the 20th harmonic is more than a bin."""
    bins = []
    for h in harm:
        lo = max(1, int(h * 0.98 / f[1]) - 1)
        hi = min(f.size - 1, math.ceil(h * 1.02 / f[1]) + 1)
        bins.append(lo + int(np.argmax(power[lo : hi + 1])))
    return np.unique(np.asarray(bins, dtype=np.intp))


def harmonic_coherence(
    x: FloatArray, fs: int, positions: FloatArray, unit: FloatArray, f0_hz: float, c: float = 343.0
) -> float:
    """Mean steered PHAT coherence of all microphone pairs at the harmonics k·f0 (≤ 4 kHz) of an
    (n, M) block, towards the direction `unit`: 1 for one source there, ≈ 0 for incoherent sound."""
    n, m = x.shape
    nfft = 1 << math.ceil(math.log2(FRAME_S * fs))
    if m < 2 or n < nfft or not f0_hz > 0:
        return 0.0
    # Frames side by side, not overlapped: half the FFTs, and overlapping frames add little
    # independent evidence to an average of phases.
    frames = np.lib.stride_tricks.sliding_window_view(x, nfft, axis=0)[::nfft]  # (T, M, nfft)
    f = np.fft.rfftfreq(nfft, 1.0 / fs).astype(np.float64)
    harm = _harmonics(f0_hz, fs)
    if harm.size == 0:
        return 0.0
    full = np.fft.rfft(frames * np.hanning(nfft), axis=-1)  # (T, M, F)
    bins_a = _harmonic_bins((np.abs(full) ** 2).mean(axis=(0, 1)), f, harm)
    spec = full[:, :, bins_a]  # (T, M, K)
    tau = -(positions @ unit) / c  # arrival delay of each microphone
    spec = spec * np.exp(2j * math.pi * f[bins_a][None, None, :] * tau[None, :, None])  # aligned
    spec = spec / (np.abs(spec) + 1e-30)
    i, j = np.triu_indices(m, 1)
    cross = spec[:, i, :] * np.conj(spec[:, j, :])  # (T, pairs, K)
    return float(np.clip(np.real(cross.mean()), -1.0, 1.0))


def coherence_logit(gamma: float) -> float:
    """Logit adjustment for a harmonic coherence (see the module docstring)."""
    if gamma < COHERENT:
        return -MAX_PENALTY * (COHERENT - max(gamma, 0.0)) / COHERENT
    return MAX_BONUS * min(1.0, (gamma - COHERENT) / (1.0 - COHERENT) * 2.0)


def comb_coherence(x: FloatArray, fs: int, f0_hz: float) -> tuple[float, float, float]:
    """(measured, expected, chance) for the comb of f0 in an (n, M) block, no geometry needed.

    measured: the mean over channel pairs and prominent harmonics (those holding on average ≥ 2×
    their local floor) of the magnitude-squared coherence over the block's frames, debiased (0 on
    average for incoherent sound, whatever the number of frames T); expected: what one point
    source with those prominences over independent noise at each microphone would give, the mean
    of (1 − 1/p₁)(1 − 1/p₂) (each channel's own prominence: directional microphones hear a source
    at different levels, and the quieter channel bounds the coherence);
    chance: the standard deviation of `measured` for incoherent sound, ≈ 1/(T·√(harmonics·pairs)).
    (0, 0, 1) when there is nothing to test: one channel, under 4 frames, no prominent harmonic."""
    n, m = x.shape
    nfft = 1 << math.ceil(math.log2(FRAME_S * fs))
    frames_n = n // nfft
    harm = _harmonics(f0_hz, fs) if f0_hz > 0 else np.zeros(0)
    if m < 2 or frames_n < 4 or harm.size == 0:
        return 0.0, 0.0, 1.0
    frames = x[: frames_n * nfft].reshape(frames_n, nfft, m).transpose(0, 2, 1)  # (T, M, nfft)
    full = np.fft.rfft(frames * np.hanning(nfft), axis=-1)  # (T, M, F)
    auto = (np.abs(full) ** 2).mean(axis=0)  # (M, F)
    power = auto.mean(axis=0)
    f = np.fft.rfftfreq(nfft, 1.0 / fs).astype(np.float64)
    bins = _harmonic_bins(power, f, harm)
    half = max(2, int(0.5 * f0_hz / f[1]))  # the floor: the median across the gap to each side
    floor = np.array([np.median(auto[:, max(1, b - half) : b + half + 1], axis=1) for b in bins]).T  # (M, K)
    prominence = auto[:, bins] / np.maximum(floor, 1e-30)  # (M, K)
    keep = prominence.mean(axis=0) >= 2.0
    if not np.any(keep):
        return 0.0, 0.0, 1.0
    bins, share = bins[keep], np.clip(1.0 - 1.0 / prominence[:, keep], 0.0, 1.0)  # source share per channel
    i, j = np.triu_indices(m, 1)
    cross = (full[:, i][:, :, bins] * np.conj(full[:, j][:, :, bins])).mean(axis=0)  # (pairs, K)
    msc = np.abs(cross) ** 2 / np.maximum(auto[i][:, bins] * auto[j][:, bins], 1e-300)
    debiased = (frames_n * msc - 1.0) / (frames_n - 1.0)
    expected = float(np.mean(share[i] * share[j]))
    chance = 1.0 / (frames_n * math.sqrt(bins.size * i.size))
    return float(debiased.mean()), expected, chance


def incoherence_logit(measured: float, expected: float, chance: float) -> float:
    """Logit adjustment for `comb_coherence` (module docstring): 0 while the comb is as coherent
    as one source would be (to within SHORTFALL) or when the test cannot tell, down to
    −MAX_PENALTY when it is no more coherent than chance."""
    enough = SHORTFALL * expected
    if enough <= NULL_SIGMAS * chance or measured >= enough:
        return 0.0
    return -MAX_PENALTY * min(1.0, (enough - measured) / enough)
