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


def harmonic_coherence(
    x: FloatArray, fs: int, positions: FloatArray, unit: FloatArray, f0_hz: float, c: float = 343.0
) -> float:
    """Mean steered PHAT coherence of all microphone pairs at the harmonics k·f0 (≤ 4 kHz) of an
    (n, M) block, towards the direction `unit`: 1 for one source there, ≈ 0 for incoherent sound."""
    n, m = x.shape
    nfft = 1 << math.ceil(math.log2(0.064 * fs))
    if m < 2 or n < nfft or not f0_hz > 0:
        return 0.0
    # Frames side by side, not overlapped: half the FFTs, and overlapping frames add little
    # independent evidence to an average of phases.
    frames = np.lib.stride_tricks.sliding_window_view(x, nfft, axis=0)[::nfft]  # (T, M, nfft)
    f = np.fft.rfftfreq(nfft, 1.0 / fs)
    harm = np.arange(1, int(min(MAX_HZ, 0.45 * fs) // f0_hz) + 1) * f0_hz
    if harm.size == 0:
        return 0.0
    full = np.fft.rfft(frames * np.hanning(nfft), axis=-1)  # (T, M, F)
    # Each harmonic at its actual peak within ±2 % (+1 bin) of k·f0: f0 is known to ~1 %, which
    # at the 20th harmonic is more than a bin.
    power = (np.abs(full) ** 2).mean(axis=(0, 1))
    bins = []
    for h in harm:
        lo = max(1, int(h * 0.98 / f[1]) - 1)
        hi = min(f.size - 1, math.ceil(h * 1.02 / f[1]) + 1)
        bins.append(lo + int(np.argmax(power[lo : hi + 1])))
    bins_a = np.unique(np.asarray(bins, dtype=np.intp))
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
