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
from typing import Any

import numpy as np
import numpy.typing as npt

from cuas_node.drivers.acoustic.coherence import comb_f0_within
from cuas_node.drivers.acoustic.features_lines import (
    HELI_F0_HZ,
    bpf_modulation,
    heli_rotor_lines,
    line_concentration,
)

FloatArray = npt.NDArray[np.float64]

F0_MIN_HZ = 60.0
F0_MAX_HZ = 1500.0
COMB_MAX_HZ = 5000.0
ANALYSIS_MAX_HZ = 8000.0
ANALYSIS_RATE = 16000  # every input above this is resampled to it: one set of tables, one feature scale
BAND_EDGES_HZ = (50.0, 200.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0)
AM_BANDS_HZ = ((400.0, 1000.0), (1000.0, 2500.0), (2500.0, 6000.0))
AM_FAST_HZ = (4.0, 60.0)  # rotor beats and blade-rate sub-harmonics; syllables and steps are slower
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
    "comb_low_db",
    "comb_high_db",
    "line_concentration",
    "am_fast_db",
    "am_slow_db",
    "am_comodulation",
    "am_peak_db",
    "spectral_flux_db",
    "band_stationarity_db",
    "heli_rotor_db",  # a main rotor as lines (8–50 Hz comb) or as slap (envelope comb), the stronger
    "lf_share_db",
    "lf_gust_db",
)


@dataclass(frozen=True, slots=True)
class Features:
    values: FloatArray  # in FEATURE_NAMES order
    f0_hz: float | None  # the comb's fundamental, when there is a comb worth naming
    level_dbfs: float  # band level 100 Hz–4 kHz, dB re full scale (int16 full scale = 1.0)
    white_db: FloatArray | None = None  # whitened mean spectrum (before suppression): site lines


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
        # Flattened (f0, harmonic) pairs in row order, for `_comb`: (lower bin, fraction) per offset.
        rows, cols = np.nonzero(self.harm_valid)
        self._row_starts = np.searchsorted(rows, np.arange(self.f0_grid.size))
        if np.any(self.n_harm == 0):
            raise ValueError(f"sample rate {sample_rate} Hz too low for the comb search")
        self.n_harm = self.n_harm.astype(np.float64)

        # scipy is imported here, not at the top: see drivers/radar/cluster.py.
        from scipy.sparse import csr_matrix

        # One (4·pairs × bins) matrix reads a spectrum linearly at each pair's fractional bins half
        # a bin below the harmonic, on it, half a bin above, and between harmonics (anti-comb).
        hb = self.harm_bins[rows, cols]
        bins = np.concatenate([hb - 0.5, hb, hb + 0.5, self.anti_bins[rows, cols]])
        lo = np.clip(np.floor(bins).astype(np.intp), 0, self.n_bins - 2)
        frac = bins - lo
        self._pairs = hb.size
        self._reader: Any = csr_matrix(
            (
                np.stack([1.0 - frac, frac], axis=1).ravel(),
                (np.repeat(np.arange(bins.size), 2), np.stack([lo, lo + 1], axis=1).ravel()),
            ),
            (bins.size, self.n_bins),
        )
        self.band = (self.freqs >= 100.0) & (self.freqs <= 4000.0)
        # Third-octave-like bands 125 Hz..8 kHz (or Nyquist) for the spectral flux and stationarity.
        edges = np.geomspace(125.0, min(ANALYSIS_MAX_HZ, 0.5 * sample_rate), 19)
        idx = np.clip(np.searchsorted(self.freqs, edges), 0, self.n_bins)
        self.third_bands = np.zeros((edges.size - 1, self.n_bins))
        for i in range(edges.size - 1):
            lo_i, hi_i = int(idx[i]), max(int(idx[i + 1]), int(idx[i]) + 1)
            self.third_bands[i, lo_i:hi_i] = 1.0 / (hi_i - lo_i)
        # Short frames (16 ms, 8 ms hop) for the envelope modulation up to 60 Hz.
        self.am_len = round(0.016 * sample_rate)
        self.am_hop = self.am_len // 2
        self.am_window = np.hanning(self.am_len + 1)[:-1]
        am_freqs = np.fft.rfftfreq(self.am_len, 1.0 / sample_rate)
        self.am_bands = [
            (am_freqs >= lo) & (am_freqs < min(hi, 0.45 * sample_rate))
            for lo, hi in AM_BANDS_HZ
            if lo < 0.45 * sample_rate
        ]
        self.tonal_band = (self.freqs >= 100.0) & (self.freqs <= f_hi)
        self.lf_band = (self.freqs >= 20.0) & (self.freqs < 150.0)
        self.hf_band = (self.freqs >= 1000.0) & (self.freqs <= min(4000.0, 0.45 * sample_rate))

    def spectrogram(self, x: FloatArray) -> FloatArray:
        """Power (T, F) on the fixed axis; a clip shorter than one frame is zero-padded."""
        if x.size < self.nfft:
            x = np.concatenate([x, np.zeros(self.nfft - x.size)])
        frames = np.lib.stride_tricks.sliding_window_view(x, self.nfft)[:: self.hop]
        spec = np.fft.rfft((frames - frames.mean(axis=1, keepdims=True)) * self.window, axis=-1)
        return np.asarray(np.abs(spec[:, : self.n_bins]) ** 2, dtype=np.float64)

    def _whiten(self, log_spec: FloatArray) -> FloatArray:
        """Log spectrum minus its running median over ~250 Hz: peaks stand out, the envelope goes.
        Every frame at once as one 1-D signal, each padded with its edges (the filter's "nearest"):
        scipy's 1-D median filter is several times faster than its N-D one, and equal to it."""
        from scipy.ndimage import median_filter  # not at the top: see drivers/radar/cluster.py

        half = self.envelope_bins // 2  # (odd, at least 3)
        rows = np.pad(np.atleast_2d(log_spec), ((0, 0), (half, half)), mode="edge")
        median = median_filter(rows.ravel(), size=self.envelope_bins, mode="nearest").reshape(rows.shape)
        return np.asarray(log_spec - median[:, half:-half].reshape(log_spec.shape), dtype=np.float64)

    def _comb(self, white: FloatArray) -> FloatArray:
        """Comb contrast (n_f0,) of a spectrum, (T, n_f0) of T: mean whitened level on the
        harmonics minus between them.

        Reading the spectra at the valid (f0, harmonic) pairs' fractional bins is one sparse
        matrix product, precomputed once (`_reader`), then one segmented sum: this is the
        detector's hot loop (3-8 times faster than gathering columns of the spectra and mixing
        them, which made a dozen temporaries the size of the product).
        """
        read = self._reader @ np.ascontiguousarray(white.T)  # (4·pairs,) or (4·pairs, T)
        below, on, above, anti = (read[k * self._pairs : (k + 1) * self._pairs] for k in range(4))
        # A harmonic may sit up to half a bin off the comb (bin quantisation, FM): take the best of
        # the bin and its neighbours, and likewise for the anti-comb so that the test stays fair.
        np.maximum(on, below, out=on)
        np.maximum(on, above, out=on)
        np.clip(on, -10.0, 25.0, out=on)
        on -= np.clip(anti, -10.0, 25.0, out=anti)
        sums = np.add.reduceat(on, self._row_starts, axis=0)
        return np.asarray((sums.T if white.ndim == 2 else sums) / self.n_harm, dtype=np.float64)

    def _modulation(self, sig: FloatArray) -> tuple[float, float, float, float, float]:
        """Envelope modulation of three bands of rotor noise (400 Hz–6 kHz) on 8 ms steps:
        (fast RMS dB in 4–60 Hz, slow RMS dB below 4 Hz, mean correlation of the fast parts
        across bands, peakedness of the fast modulation spectrum in dB). Rotors a few Hz apart
        beat, and blades chop the broadband noise, in all bands at once (co-modulation); a steady
        motor or noise fluctuates little and independently per band; transients are slow or lumpy."""
        if sig.size < 4 * self.am_len or not self.am_bands:
            return 0.0, 0.0, 0.0, 0.0, 0.0
        frames = np.lib.stride_tricks.sliding_window_view(sig, self.am_len)[:: self.am_hop]
        power = np.abs(np.fft.rfft(frames * self.am_window, axis=-1)) ** 2
        env = np.stack([power[:, sel].sum(axis=1) for sel in self.am_bands])  # (B, T)
        env = 10.0 * np.log10(env + env.max() * 1e-10 + _EPS)
        env = env - env.mean(axis=1, keepdims=True)
        spec = np.fft.rfft(env, axis=1)
        fm = np.fft.rfftfreq(env.shape[1], self.am_hop / self.fs)
        fast_sel = (fm >= AM_FAST_HZ[0]) & (fm <= AM_FAST_HZ[1])
        fast = np.fft.irfft(np.where(fast_sel, spec, 0.0), n=env.shape[1], axis=1)
        slow = np.fft.irfft(np.where(fm < AM_FAST_HZ[0], spec, 0.0), n=env.shape[1], axis=1)
        am_fast = float(np.mean(fast.std(axis=1)))
        am_slow = float(np.mean(slow.std(axis=1)))
        if len(self.am_bands) > 1:
            with np.errstate(invalid="ignore", divide="ignore"):  # a constant envelope: silence
                c = np.atleast_2d(np.corrcoef(fast))
            comod = float(np.mean(c[np.triu_indices(len(self.am_bands), 1)]))
            comod = comod if math.isfinite(comod) else 0.0
        else:
            comod = 0.0
        p = np.abs(spec[:, fast_sel]) ** 2 + _EPS
        peak = float(np.mean(10.0 * np.log10(p.max(axis=1) / np.median(p, axis=1))))
        # A helicopter's main rotor slaps the air 8–30 times a second: a harmonic comb in the
        # envelope's modulation spectrum (summed over bands), in dB on the harmonics over between.
        mod = 10.0 * np.log10((np.abs(spec) ** 2).sum(axis=0) + _EPS)
        heli = -10.0
        for f0 in np.geomspace(HELI_F0_HZ[0], 30.0, 32):
            k = np.arange(1, int(min(60.0, fm[-1]) // f0) + 1)
            if k.size:
                on, off = np.interp(k * f0, fm, mod), np.interp((k - 0.5) * f0, fm, mod)
                heli = max(heli, float(np.mean(np.clip(on - off, -10.0, 25.0))))
        return am_fast, am_slow, comod, peak, heli

    def extract(self, x: npt.ArrayLike, suppress_db: FloatArray | None = None) -> Features:
        """`suppress_db` (per bin, ≥ 0, on this extractor's axis) is subtracted from the whitened
        spectra before the comb search: a site's own standing lines (a transformer's hum, a pump)
        then form no comb, while a drone's lines, which are not in the site's background, do."""
        sig = np.asarray(x, dtype=np.float64).ravel()
        power = self.spectrogram(sig)  # (T, F)
        n_frames = power.shape[0]
        mean_spec = power.mean(axis=0) + _EPS
        band_power = power[:, self.band].sum(axis=1)  # per-frame band energy
        scale = 2.0 / (self.window**2).sum()  # a full-scale sine → 0 dBFS
        level_dbfs = 10.0 * math.log10(float(mean_spec[self.band].sum()) * scale + _EPS)
        floor = mean_spec.max() * 1e-12 + 1e-14  # keeps silence finite without tuning a level

        log_mean = 10.0 * np.log10(mean_spec + floor)
        white_raw = self._whiten(log_mean)
        white = white_raw if suppress_db is None else white_raw - suppress_db
        comb = self._comb(white)
        # Prefer the lowest f0 that is nearly as good: a comb at f0 also scores at 2·f0.
        best = int(np.argmax(comb))
        good = np.flatnonzero(comb >= comb[best] - 1.0)
        best = int(good[0]) if good.size else best
        f0 = float(self.f0_grid[best])
        contrast = float(comb[best])

        log_frames = 10.0 * np.log10(power + floor)
        white_frames = self._whiten(log_frames)
        if suppress_db is not None:
            white_frames = white_frames - suppress_db
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
        # The comb's strength below and above 1 kHz: blade harmonics reach far up, a motor hum does not.
        hk = self.harm_bins[best][self.harm_valid[best]] * self.df
        anti = np.interp(self.anti_bins[best][self.harm_valid[best]], np.arange(white.size), white)
        diff_k = np.clip(harm_vals, -10.0, 25.0) - np.clip(anti, -10.0, 25.0)
        comb_low = float(diff_k[hk < 1000.0].mean()) if np.any(hk < 1000.0) else 0.0
        comb_high = float(diff_k[hk >= 1000.0].mean()) if np.any(hk >= 1000.0) else 0.0
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

        bpf_mod = bpf_modulation(sig, self.fs, self.nfft, f0)
        am_fast, am_slow, comod, am_peak, heli_env = self._modulation(sig)
        long_spec = np.abs(np.fft.rfft((sig - sig.mean()) * np.hanning(sig.size))) ** 2
        long_df = self.fs / sig.size
        line_conc = line_concentration(long_spec, long_df, self.fs, f0)
        heli = max(heli_rotor_lines(long_spec, long_df, self.fs), heli_env)
        # Wind and rumble: the share of 20–150 Hz in the 20 Hz–4 kHz energy, and how much more the
        # low band's level wanders from frame to frame than the 1–4 kHz band's (gusts buffet the
        # microphone at low frequencies only; a rotor's hum is as steady low as high).
        lf = power[:, self.lf_band].sum(axis=1) + floor
        hf = power[:, self.hf_band].sum(axis=1) + floor
        lf_share = float(10.0 * math.log10(lf.mean() / (lf.mean() + float(band_power.mean()) + floor)))
        lf_gust = float(np.std(10.0 * np.log10(lf)) - np.std(10.0 * np.log10(hf))) if n_frames > 1 else 0.0
        # Third-octave band levels per frame: spectral flux (frame-to-frame change) and how much
        # each band's level wanders over the block (a hovering drone is steady, events are not).
        log_bands = 10.0 * np.log10(power @ self.third_bands.T + floor)  # (T, 18)
        flux = float(np.median(np.mean(np.abs(np.diff(log_bands, axis=0)), axis=1))) if n_frames > 1 else 0.0
        stationarity = float(np.mean(log_bands.std(axis=0)))

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
                comb_low,
                comb_high,
                line_conc,
                am_fast,
                am_slow,
                comod,
                am_peak,
                flux,
                stationarity,
                heli,
                lf_share,
                lf_gust,
            ],
            dtype=np.float64,
        )
        # Digital silence or a stuck input can make a ratio 0/0: such a block is gated by its level
        # anyway, but the features must stay finite for the model and for training.
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        return Features(values, f0 if contrast > 1.0 else None, level_dbfs, white_raw)


_EXTRACTORS: dict[int, FeatureExtractor] = {}
_LINE_DB = 3.0  # a bin this far above the whitened floor is part of a line (as `harmonic_fraction` counts)
SUB_COMB_MAX = 25  # `sub_combs`: bounded by the lowest f0 alone (1500 Hz / 60 Hz)


def to_analysis_rate(x: npt.ArrayLike, sample_rate: int) -> tuple[FloatArray, int]:
    """A signal above ANALYSIS_RATE resampled to it (polyphase, anti-aliased): nothing above
    8 kHz is analysed, and one rate means the same frame lengths and frequency bins — hence the
    same feature values — for a 16 kHz MEMS array, a 44.1 kHz recorder and a 48 kHz USB array."""
    sig = np.asarray(x, dtype=np.float64).ravel()
    if sample_rate <= ANALYSIS_RATE:
        return sig, sample_rate
    from scipy.signal import resample_poly  # not at the top: see drivers/radar/cluster.py

    g = math.gcd(ANALYSIS_RATE, sample_rate)
    return np.asarray(resample_poly(sig, ANALYSIS_RATE // g, sample_rate // g)), ANALYSIS_RATE


def _extractor(analysis_rate: int) -> FeatureExtractor:
    ext = _EXTRACTORS.get(analysis_rate)
    if ext is None:
        ext = _EXTRACTORS[analysis_rate] = FeatureExtractor(analysis_rate)
    return ext


def extract(x: npt.ArrayLike, sample_rate: int, suppress_db: FloatArray | None = None) -> Features:
    """Features of a mono signal scaled to ±1 full scale (cached extractor per analysis rate)."""
    x, sample_rate = to_analysis_rate(x, sample_rate)
    ext = _extractor(sample_rate)
    if suppress_db is not None and suppress_db.size != ext.n_bins:
        suppress_db = None  # a background learnt at another analysis rate (inputs below 16 kHz)
    return ext.extract(x, suppress_db)


def sub_combs(
    white_db: FloatArray, f0_hz: float, sample_rate: int, lowest_hz: float = F0_MIN_HZ
) -> list[int]:
    """The k ≥ 2 for which the comb found at `f0_hz` is the k-th harmonic of a comb of its own,
    largest first: f0/k not below `lowest_hz` (the lowest f0 a drone's comb has) nor k above
    `SUB_COMB_MAX`, where the lines of f0/k that are not also f0's stand as lines (median
    `_LINE_DB` above the floor of `white_db`, a whitened spectrum (`Features.white_db`), up to
    1 kHz, where a comb's lines are strongest). The comb search may read an insect's 180 Hz
    wingbeat as its fifth harmonic (900 Hz), whose own harmonics are then too few to judge; a
    drone's comb has no lines between its own, so none of its f0/k is taken for it."""
    ext = _extractor(min(sample_rate, ANALYSIS_RATE))
    out = []
    for k in range(min(SUB_COMB_MAX, int(f0_hz // lowest_hz)), 1, -1):
        base = f0_hz / k
        j = np.arange(1, int(min(1000.0, float(ext.freqs[-1])) // base) + 1)
        own = j[j % k != 0]
        if own.size and np.median(np.interp(own * base, ext.freqs, white_db)) > _LINE_DB:
            out.append(k)
    return out


def comb_fundamental_hz(white_db: FloatArray, f0_hz: float, sample_rate: int) -> float:
    """The fundamental of the comb the comb search found at `f0_hz`: the lowest f0/k whose own
    lines stand (`sub_combs`), else f0; refined to the comb's own lines within ±3 %, the wander
    the comb search allows (`coherence.comb_f0_within`; not wider: another comb's harmonic may
    lie a little further)."""
    ext = _extractor(min(sample_rate, ANALYSIS_RATE))
    top = min(COMB_MAX_HZ, float(ext.freqs[-1]))
    f0_hz = comb_f0_within(white_db, ext.df, f0_hz, top, 0.03)
    ks = sub_combs(white_db, f0_hz, sample_rate)
    return comb_f0_within(white_db, ext.df, f0_hz / ks[0], top, 0.03) if ks else f0_hz


def comb_lines_db(white_db: FloatArray, f0_hz: float, sample_rate: int) -> FloatArray:
    """How far one comb's lines stand above the floor, per analysis bin of a signal at
    `sample_rate` (`white_db` that signal's whitened spectrum, `Features.white_db`), 0 elsewhere:
    each harmonic k·f0 as wide as it actually stands (the run of bins `_LINE_DB` above the floor
    through its peak within ±1 % + 1.5 bins, at most ±3 %: the wander the comb search allows).
    Subtracted as a `suppress_db`, it leaves the comb search the rest of the sound: a second comb
    that the first, louder one hid, whose own harmonics between the first's lines are kept."""
    ext = _extractor(min(sample_rate, ANALYSIS_RATE))
    if white_db.size != ext.n_bins:
        raise ValueError(
            f"{white_db.size} bins, not the {ext.n_bins} of a {sample_rate} Hz signal's analysis"
        )
    top = min(COMB_MAX_HZ, float(ext.freqs[-1]))
    harmonics = np.arange(f0_hz, top + f0_hz / 2, f0_hz)
    off = np.abs(ext.freqs[:, None] - harmonics[None, :])
    core = (off <= np.maximum(1.5 * ext.df, 0.01 * harmonics)[None, :]).any(axis=1)
    reach = (off <= np.maximum(1.5 * ext.df, 0.03 * harmonics)[None, :]).any(axis=1)
    above = white_db > _LINE_DB
    run = np.cumsum(~above)  # bins of one run above the floor share a number
    lines = above & reach & np.isin(run, run[above & core])
    return np.asarray(np.where(lines, white_db, 0.0), dtype=np.float64)
