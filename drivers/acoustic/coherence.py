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
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ComplexArray = npt.NDArray[np.complex128]
IntArray = npt.NDArray[np.intp]
COHERENT = 0.10
MAX_PENALTY = 4.0
MAX_BONUS = 1.0
MAX_HZ = 4000.0
_F0_STEP = 0.0025  # `comb_f0_within`'s grid, relative
OTHER_COMB = 0.03  # how far (relative) another comb's harmonic spreads by its wander (`harmonic_bins`)


@dataclass(frozen=True, slots=True, eq=False)
class FrameSpectra:
    """An (n, M) block's spectra in 64 ms frames side by side (frames not overlapped: half the
    FFTs, and overlapping frames add little independent evidence to an average): computed once
    a block and shared by the array's evidence (`harmonic_coherence`, `nearfield`)."""

    full: ComplexArray  # (T, M, F)
    f: FloatArray  # (F,) Hz
    channel_power: FloatArray  # (M, F) mean over the frames
    power: FloatArray  # (F,) mean over frames and channels (each comb's bins are picked on it)

    @property
    def frames(self) -> int:
        return int(self.full.shape[0])


def frame_spectra(x: FloatArray, fs: int) -> FrameSpectra | None:
    """The block's `FrameSpectra`; None when it is shorter than a frame."""
    nfft = 1 << math.ceil(math.log2(0.064 * fs))
    if x.shape[0] < nfft:
        return None
    frames = np.lib.stride_tricks.sliding_window_view(x, nfft, axis=0)[::nfft]  # (T, M, nfft)
    full = np.fft.rfft(frames * np.hanning(nfft), axis=-1)
    power = (full.real**2 + full.imag**2).mean(axis=0)
    f = np.asarray(np.fft.rfftfreq(nfft, 1.0 / fs), dtype=np.float64)
    return FrameSpectra(full, f, power, np.asarray(power.mean(axis=0), dtype=np.float64))


def harmonic_bins(
    spectra: FrameSpectra, f0_hz: float, max_hz: float = MAX_HZ, away_from_hz: float | None = None
) -> IntArray | None:
    """The bins of the harmonics k·f0 ≤ max_hz (and ≤ 0.45 fs), each at its actual peak within ±2 %
    (+1 bin) of k·f0 of the refined f0 (`comb_f0_within`). None when no harmonic fits.
    `away_from_hz`: another comb's f0, whose harmonics (±`OTHER_COMB` + 1 bin) are left out: what
    lies there is that comb's, louder, not this one's (`driver.AcousticPipeline`)."""
    f = spectra.f
    top = min(max_hz, 0.9 * f[-1])
    if not 0 < f0_hz <= top:
        return None
    power = spectra.power
    f0_hz = comb_f0_within(np.log(power + 1e-30), f[1], f0_hz, top, 0.05)  # (±2 % per harmonic)
    bins = []
    for h in np.arange(1, int(top // f0_hz) + 1) * f0_hz:
        lo = max(1, int(h * 0.98 / f[1]) - 1)
        hi = min(f.size - 1, math.ceil(h * 1.02 / f[1]) + 1)
        bins.append(lo + int(np.argmax(power[lo : hi + 1])))
    found = clear_of_comb(np.unique(np.asarray(bins, dtype=np.intp)), f[1], away_from_hz)
    return found if found.size else None


def clear_of_comb(bins: IntArray, df: float, away_from_hz: float | None) -> IntArray:
    """`bins` (of width `df`) but those on a harmonic of another comb's f0 `away_from_hz` (within
    ±`OTHER_COMB` + 1 bin): what lies there is that comb's, louder (None: all of them)."""
    if away_from_hz is None or not bins.size:
        return bins
    at = bins * df / away_from_hz
    return bins[np.abs(at - np.round(at)) * away_from_hz > OTHER_COMB * bins * df + df]


def comb_f0_within(level: FloatArray, df: float, f0_hz: float, top_hz: float, span: float) -> float:
    """The f0 within ±`span` of `f0_hz` (a 0.25 % grid) whose harmonics up to `top_hz` stand
    highest in `level` (per bin `df` wide, any logarithmic scale): a comb search's f0 is a few %
    off at times, and the k-th harmonic of an f0 3 % off misses its line from the second or
    third harmonic on. The same harmonics for every candidate (all below `top_hz`): a sum over
    more harmonics for some candidates would favour them or not by the sound's level."""
    cand = f0_hz * np.linspace(1.0 - span, 1.0 + span, round(2.0 * span / _F0_STEP) + 1)
    k = np.arange(1, max(1, int(top_hz // ((1.0 + span) * f0_hz))) + 1)
    at = np.interp(cand[:, None] * k[None, :] / df, np.arange(level.size), level)
    return float(cand[int(np.argmax(at.sum(axis=1)))])


def harmonic_coherence(
    spectra: FrameSpectra,
    positions: FloatArray,
    unit: FloatArray,
    f0_hz: float,
    c: float = 343.0,
    away_from_hz: float | None = None,
) -> float:
    """Mean steered PHAT coherence of all microphone pairs at the harmonics k·f0 (≤ 4 kHz) of a
    block, towards the direction `unit`: 1 for one source there, ≈ 0 for incoherent sound
    (`away_from_hz`: see `harmonic_bins`)."""
    m = spectra.full.shape[1]
    bins = harmonic_bins(spectra, f0_hz, away_from_hz=away_from_hz) if m >= 2 else None
    if bins is None:
        return 0.0
    spec = spectra.full[:, :, bins]  # (T, M, K)
    tau = -(positions @ unit) / c  # arrival delay of each microphone
    spec = spec * np.exp(2j * math.pi * spectra.f[bins][None, None, :] * tau[None, :, None])  # aligned
    spec = spec / (np.abs(spec) + 1e-30)
    i, j = np.triu_indices(m, 1)
    cross = spec[:, i, :] * np.conj(spec[:, j, :])  # (T, pairs, K)
    return float(np.clip(np.real(cross.mean()), -1.0, 1.0))


def coherence_logit(gamma: float) -> float:
    """Logit adjustment for a harmonic coherence (see the module docstring)."""
    if gamma < COHERENT:
        return -MAX_PENALTY * (COHERENT - max(gamma, 0.0)) / COHERENT
    return MAX_BONUS * min(1.0, (gamma - COHERENT) / (1.0 - COHERENT) * 2.0)
