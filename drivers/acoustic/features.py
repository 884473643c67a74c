"""Physics features of a mono sound for the drone detector: what makes a multirotor a multirotor.

A multirotor's sound is a comb of blade-passing harmonics k·f0 (f0 = blades × rpm / 60, 60–1500 Hz)
that persists for seconds with slow frequency modulation (thrust control), on top of broadband
rotor turbulence that is itself modulated at f0. Wind, traffic and aircraft are broadband and
low-frequency; birds are short chirps above 2 kHz; speech has a comb too, but its f0 wanders and it
comes in 4 Hz syllables. So the features measure: how strong and how persistent a common-f0 comb
is (comb contrast of the whitened spectrum, harmonic count, frame-to-frame persistence), how
noise-like the sound is (spectral flatness), how it is modulated over time (envelope variation,
transients, f0 stability), and where its energy is (relative band energies, centroid, roll-off).

Every feature is a ratio, so none depends on the absolute level: a drone far away is quieter, not
different. The spectra are computed on a fixed frequency axis (bins in Hz, at most 8 kHz), so the
same features come out of 16 kHz mono clips and 48 kHz array channels.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.ndimage import median_filter

FloatArray = npt.NDArray[np.float64]

F0_MIN_HZ = 60.0
F0_MAX_HZ = 1500.0
COMB_MAX_HZ = 5000.0
ANALYSIS_MAX_HZ = 8000.0
BAND_EDGES_HZ = (50.0, 200.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0)
_EPS = 1e-20

FEATURE_NAMES: tuple[str, ...] = (
    "comb_contrast_db",
    "comb_persistence_db",
    "comb_frame_fraction",
    "harmonic_fraction",
    "log_f0",
    "f0_stability",
    "tonal_bin_fraction",
    "peak_prominence_db",
    "log_flatness",
    "frame_flatness",
    "envelope_cv",
    "envelope_crest_db",
    "bpf_modulation_db",
    "log_centroid",
    "log_rolloff",
    *(f"band_{int(lo)}_{int(hi)}_db" for lo, hi in itertools.pairwise(BAND_EDGES_HZ)),
)


@dataclass(frozen=True, slots=True)
class Features:
    values: FloatArray  # in FEATURE_NAMES order
    f0_hz: float | None  # the comb's fundamental, when there is a comb worth naming
    level_dbfs: float  # band level 100 Hz–4 kHz, dB re full scale (int16 full scale = 1.0)


class FeatureExtractor:
    """Features for one sample rate; the frequency tables are built once."""

    def __init__(self, sample_rate: int) -> None:
        self.fs = sample_rate
        self.nfft = 1 << math.ceil(math.log2(0.064 * sample_rate))  # ~16 Hz bins or finer
        self.hop = self.nfft // 2
        freqs = np.fft.rfftfreq(self.nfft, 1.0 / sample_rate)
        self.n_bins = int(np.searchsorted(freqs, min(ANALYSIS_MAX_HZ, 0.5 * sample_rate), side="right"))
        self.freqs = freqs[: self.n_bins]
        self.df = float(freqs[1])
        self.window = np.hanning(self.nfft + 1)[:-1]
        self.envelope_bins = max(3, round(250.0 / self.df) | 1)
        # Comb tables: candidate f0s (log-spaced, 1 % apart) × harmonics, as fractional bin indices.
        f_hi = min(COMB_MAX_HZ, 0.45 * sample_rate)
        self.f0_grid = np.exp(np.arange(math.log(F0_MIN_HZ), math.log(F0_MAX_HZ), 0.01))
        k = np.arange(1, int(f_hi // F0_MIN_HZ) + 1, dtype=np.float64)
        harm = self.f0_grid[:, None] * k[None, :]
        self.harm_valid = (harm <= f_hi) & (harm >= 2 * self.df)
        self.n_harm = self.harm_valid.sum(axis=1)
        self.harm_bins = np.where(self.harm_valid, harm / self.df, 0.0)
        self.anti_bins = np.where(self.harm_valid, (harm - 0.5 * self.f0_grid[:, None]) / self.df, 0.0)
        self.band = (self.freqs >= 100.0) & (self.freqs <= 4000.0)
        self.tonal_band = (self.freqs >= 100.0) & (self.freqs <= f_hi)

    def spectrogram(self, x: FloatArray) -> FloatArray:
        """Power (T, F) on the fixed axis; a clip shorter than one frame is zero-padded."""
        if x.size < self.nfft:
            x = np.concatenate([x, np.zeros(self.nfft - x.size)])
        frames = np.lib.stride_tricks.sliding_window_view(x, self.nfft)[:: self.hop]
        spec = np.fft.rfft((frames - frames.mean(axis=1, keepdims=True)) * self.window, axis=-1)
        return np.asarray(np.abs(spec[:, : self.n_bins]) ** 2, dtype=np.float64)

    def _whiten(self, log_spec: FloatArray) -> FloatArray:
        """Log spectrum minus its running median over ~250 Hz: peaks stand out, the envelope goes."""
        size = (1,) * (log_spec.ndim - 1) + (self.envelope_bins,)
        return np.asarray(log_spec - median_filter(log_spec, size=size, mode="nearest"), dtype=np.float64)

    def _comb(self, white: FloatArray) -> FloatArray:
        """Comb contrast (..., n_f0): mean whitened level on the harmonics minus between them."""
        idx = np.arange(white.shape[-1], dtype=np.float64)

        def at(bins: FloatArray) -> FloatArray:
            flat = bins.ravel()
            if white.ndim == 1:
                vals = np.interp(flat, idx, white)
            else:
                lo = np.clip(np.floor(flat).astype(np.intp), 0, white.shape[-1] - 2)
                frac = flat - lo
                vals = white[..., lo] * (1 - frac) + white[..., lo + 1] * frac
            return np.asarray(vals.reshape((*white.shape[:-1], *bins.shape)), dtype=np.float64)

        # A harmonic may sit up to half a bin off the comb (bin quantisation, FM): take the best of
        # the bin and its neighbours, and likewise for the anti-comb so that the test stays fair.
        on = np.maximum(np.maximum(at(self.harm_bins), at(self.harm_bins - 0.5)), at(self.harm_bins + 0.5))
        off = at(self.anti_bins)
        diff = np.clip(on, -10.0, 25.0) - np.clip(off, -10.0, 25.0)
        return np.asarray(np.where(self.harm_valid, diff, 0.0).sum(axis=-1) / np.maximum(self.n_harm, 1))

    def _bpf_modulation(self, sig: FloatArray, f0: float) -> float:
        """How strongly the 1–6 kHz rotor noise is amplitude-modulated at f0, in dB over the
        envelope spectrum's median nearby: blades chop their own turbulence at the blade rate, an
        appliance's airflow or wind is not chopped at its tone's frequency."""
        n = sig.size
        if n < self.nfft:
            return 0.0
        spec = np.fft.rfft(sig - sig.mean())
        f = np.fft.rfftfreq(n, 1.0 / self.fs)
        spec[(f < 1000.0) | (f > min(6000.0, 0.45 * self.fs))] = 0.0
        env = np.fft.irfft(spec, n=n) ** 2
        e_spec = np.abs(np.fft.rfft(env - env.mean())) ** 2
        near = (f >= f0 * 0.97) & (f <= f0 * 1.03)
        around = (f >= f0 * 0.5) & (f <= f0 * 1.5)
        if not near.any() or not around.any():
            return 0.0
        ratio = float(e_spec[near].max()) / (float(np.median(e_spec[around])) + 1e-30)
        return float(np.clip(10.0 * math.log10(ratio + 1e-12), -10.0, 40.0))

    def extract(self, x: npt.ArrayLike) -> Features:
        sig = np.asarray(x, dtype=np.float64).ravel()
        power = self.spectrogram(sig)  # (T, F)
        n_frames = power.shape[0]
        mean_spec = power.mean(axis=0) + _EPS
        band_power = power[:, self.band].sum(axis=1)  # per-frame band energy
        scale = 2.0 / (self.window**2).sum()  # a full-scale sine → 0 dBFS
        level_dbfs = 10.0 * math.log10(float(mean_spec[self.band].sum()) * scale + _EPS)
        floor = mean_spec.max() * 1e-12 + 1e-14  # keeps silence finite without tuning a level

        log_mean = 10.0 * np.log10(mean_spec + floor)
        white = self._whiten(log_mean)
        comb = self._comb(white)
        # Prefer the lowest f0 that is nearly as good: a comb at f0 also scores at 2·f0.
        best = int(np.argmax(comb))
        good = np.flatnonzero(comb >= comb[best] - 1.0)
        best = int(good[0]) if good.size else best
        f0 = float(self.f0_grid[best])
        contrast = float(comb[best])

        log_frames = 10.0 * np.log10(power + floor)
        white_frames = self._whiten(log_frames)
        frame_comb = self._comb(white_frames)  # (T, n_f0)
        near = slice(max(0, best - 3), best + 4)  # ±3 % around f0: allows slow FM
        frame_best = frame_comb[:, near].max(axis=1)
        persistence = float(np.median(frame_best))
        frame_fraction = float(np.mean(frame_best > 3.0))
        # f0 stability: the per-frame best f0 over the whole grid, spread in octaves (speech wanders).
        frame_f0 = np.log2(self.f0_grid[np.argmax(frame_comb, axis=1)])
        f0_stability = float(np.median(np.abs(frame_f0 - np.median(frame_f0)))) if n_frames > 1 else 0.0

        hb = self.harm_bins[best][self.harm_valid[best]]
        harm_vals = np.interp(hb, np.arange(white.size), white)
        harmonic_fraction = float(np.mean(harm_vals > 3.0)) if harm_vals.size else 0.0
        tonal = white[self.tonal_band]
        tonal_fraction = float(np.mean(tonal > 6.0))
        prominence = float(np.percentile(tonal, 99)) if tonal.size else 0.0

        band_spec = mean_spec[self.band]
        log_flatness = float(np.mean(np.log(band_spec)) - math.log(float(band_spec.mean())))
        frame_band = power[:, self.band] + floor
        frame_flat = float(np.mean(np.exp(np.mean(np.log(frame_band), axis=1)) / np.mean(frame_band, axis=1)))
        env = band_power + floor
        envelope_cv = float(env.std() / env.mean())
        envelope_crest = float(10.0 * math.log10(env.max() / np.median(env)))

        bpf_mod = self._bpf_modulation(sig, f0)

        total = float(mean_spec.sum())
        centroid = float((self.freqs * mean_spec).sum() / total)
        cum = np.cumsum(mean_spec) / total
        rolloff = float(self.freqs[min(int(np.searchsorted(cum, 0.85)), self.n_bins - 1)])
        bands = []
        for lo, hi in itertools.pairwise(BAND_EDGES_HZ):
            sel = (self.freqs >= lo) & (self.freqs < hi)
            e = float(mean_spec[sel].sum()) if sel.any() else 0.0
            bands.append(10.0 * math.log10(e / total + 1e-6))

        values = np.array(
            [
                contrast,
                persistence,
                frame_fraction,
                harmonic_fraction,
                math.log(f0),
                f0_stability,
                tonal_fraction,
                prominence,
                log_flatness,
                frame_flat,
                envelope_cv,
                envelope_crest,
                bpf_mod,
                math.log(max(centroid, 1.0)),
                math.log(max(rolloff, 1.0)),
                *bands,
            ],
            dtype=np.float64,
        )
        return Features(values, f0 if contrast > 1.0 else None, level_dbfs)


_EXTRACTORS: dict[int, FeatureExtractor] = {}


def extract(x: npt.ArrayLike, sample_rate: int) -> Features:
    """Features of a mono signal scaled to ±1 full scale (cached extractor per sample rate)."""
    ext = _EXTRACTORS.get(sample_rate)
    if ext is None:
        ext = _EXTRACTORS[sample_rate] = FeatureExtractor(sample_rate)
    return ext.extract(x)
