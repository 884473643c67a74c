"""Train the acoustic drone detector: `python -m calibration.acoustic_train [--captures DIR]`.

Data: the real one-second clips in ../shared/captures/acoustic/{drone,not_drone} (Parrot Bebop and
Mambo indoors; ESC-50 sounds, white noise, silence), split by *recording* (segments of one
recording share a name prefix, see `recording_id`) into train and held-out test sets with a fixed
seed. The training clips are used as they are and as seeded augmented copies (gain with clipping,
added ambience or coloured noise at 0–20 dB SNR, band-limiting as by another microphone or
distance, a time shift), so that the model learns the sound and not one room's microphone chain.
Plus simulated clips from the simulator's own voices: drones of every size with random harmonic
roll-off, rotor count and broadband share at a random distance and SNR over wind, traffic, birds
and ambient noise; and negatives: speech-like harmonic sounds with wandering f0, mains hum, road
engines, birds, aircraft, wind, rain, coloured noises, and the hard ones, machines whose sound is
also a harmonic comb but with non-multirotor statistics (one steady motor with needle-sharp lines:
vacuum cleaner, fan, power tool; a revving two-stroke engine: chainsaw, moped; a siren's sweep; a
helicopter's slow main-rotor slap). The simulated clips are there so that the model learns the
physics and not the two drones and the one room of the real set.

Model (drivers/acoustic/detector.py): a logistic regression on robustly standardised features and
their squares, L2-regularised, fitted by Newton's method, plus gradient-boosted depth-limited
decision trees fitted on top of its logit (Newton leaf values, histogram splits, row and column
subsampling), all in numpy, seeded and deterministic. Which of {logistic alone, trees alone,
logistic + trees} and the trees' depth and number are chosen by 5-fold cross-validation *inside the
training split*, grouped by recording (the augmented copies of a recording stay in its fold), on
the partial ROC area up to 5 % false alarms of the pooled out-of-fold real clips. The held-out
recordings are scored once, after the choice, and never feed back into it.

Metrics (written into the weights file, and docs/acoustic.md): ROC AUC and the detection rate at a
1 % false-alarm rate (threshold = the score exceeded by at most 1 % of the negatives), on the
held-out real recordings and in the cross-validation.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from drivers.acoustic.decode import read_wav
from drivers.acoustic.detector import DEFAULT_WEIGHTS_PATH, DetectorModel, Trees, expand
from drivers.acoustic.features import FEATURE_NAMES, extract
from drivers.sim.acoustic import (
    AircraftVoice,
    BirdVoice,
    DroneVoice,
    absorption_db_per_m,
    bandpass_noise,
    colored_noise,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int_]
DEFAULT_CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "captures" / "acoustic"
SEED = 20240605  # also fixes the held-out split, which must not move between runs
TEST_FRACTION = 0.3
SIM_RATE = 16000
SIM_SECONDS = 1.024
N_SIM_PER_CLASS = 500
N_AUGMENT = 2  # augmented copies per real training clip
REAL_WEIGHT = 0.7  # share of the fit's weight on real clips (originals and their augmented copies)
L2 = 2.0
N_FOLDS = 5
PAUC_MAX_FA = 0.05


def recording_id(name: str) -> str:
    """The recording a clip was cut from: `B_S2_D1_070-bebop_000_.wav` → `B_S2_D1_070`,
    ESC-50 `1-19872-B-360.wav` → `1-19872` (fold-clip; takes A/B/... are parts of one clip),
    `white_noise005.wav` → `white_noise`."""
    stem = Path(name).stem
    m = re.match(r"^(\d+-\d+)-", stem)
    if m:
        return m.group(1)
    if "-" in stem:
        return stem.split("-", 1)[0]
    return stem.rstrip("0123456789_")


def real_split(captures: Path, seed: int = SEED) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """(train, test) lists of (wav, label), split by recording within each class."""
    rng = np.random.default_rng(seed)
    train: list[tuple[Path, int]] = []
    test: list[tuple[Path, int]] = []
    for label, folder in ((1, "drone"), (0, "not_drone")):
        files = sorted((captures / folder).glob("*.wav"))
        groups = sorted({recording_id(f.name) for f in files})
        order = rng.permutation(len(groups))
        n_test = max(1, round(TEST_FRACTION * len(groups)))
        test_groups = {groups[i] for i in order[:n_test]}
        for f in files:
            (test if recording_id(f.name) in test_groups else train).append((f, label))
    return train, test


def features_of_files(items: Sequence[tuple[Path, int]]) -> tuple[FloatArray, IntArray]:
    feats = []
    for path, _ in items:
        x, rate = read_wav(path)
        feats.append(extract(x.mean(axis=1), rate).values)
    return np.array(feats).reshape(-1, len(FEATURE_NAMES)), np.array([lab for _, lab in items], dtype=np.int_)


def roc_auc(scores: FloatArray, labels: IntArray) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (pos.size * neg.size))


def pd_at_fa(scores: FloatArray, labels: IntArray, fa: float = 0.01) -> tuple[float, float]:
    """Detection rate at a false-alarm rate: the threshold lets at most floor(fa·N_neg) negatives
    through (strictly above it); returns (detection rate, threshold)."""
    neg = np.sort(scores[labels == 0])[::-1]
    allowed = math.floor(fa * neg.size)
    threshold = float(neg[allowed]) if allowed < neg.size else -math.inf
    return float(np.mean(scores[labels == 1] > threshold)), threshold


# --- simulated clips ---------------------------------------------------------------------------


def _absorb(x: FloatArray, fs: int, range_m: float) -> FloatArray:
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(x.size, 1.0 / fs)
    return np.asarray(np.fft.irfft(spec * 10 ** (-absorption_db_per_m(f) * range_m / 20), n=x.size))


def _unit(x: FloatArray) -> FloatArray:
    return np.asarray(x / (np.sqrt(np.mean(x**2)) + 1e-20))


def _background(n: int, fs: int, rng: np.random.Generator) -> FloatArray:
    """Outdoor ambience: some mix of pink/brown noise, wind, traffic rumble and birds."""
    parts = [colored_noise(n, rng, rng.uniform(0.0, 2.0), fs)]
    if rng.random() < 0.5:
        parts.append(bandpass_noise(n, fs, 5.0, rng.uniform(80, 300), rng) * rng.uniform(0.5, 3))
    if rng.random() < 0.3:
        parts.append(_unit(BirdVoice(fs, rng).render(n)) * rng.uniform(0.2, 1.5))
    if rng.random() < 0.3:
        parts.append(bandpass_noise(n, fs, 30.0, rng.uniform(300, 1500), rng) * rng.uniform(0.5, 2))
    return _unit(np.sum(parts, axis=0))


def _speech_like(n: int, fs: int, rng: np.random.Generator) -> FloatArray:
    """Voiced syllables: a harmonic source whose f0 glides ±20 % around 90–300 Hz, in 4 Hz bursts."""
    t = np.arange(n) / fs
    f0 = rng.uniform(90, 300) * (1 + 0.15 * np.sin(2 * math.pi * rng.uniform(1, 4) * t + rng.uniform(0, 6)))
    ph = 2 * math.pi * np.cumsum(f0) / fs
    k = np.arange(1, 25)
    formant = np.exp(-(((k * 200 - rng.uniform(400, 1200)) / 600.0) ** 2)) + 0.3 / k
    x = (formant[:, None] * np.sin(k[:, None] * ph[None, :])).sum(axis=0)
    syll = np.clip(np.sin(2 * math.pi * rng.uniform(3, 6) * t + rng.uniform(0, 6)), 0, None) ** 2
    return _unit(x * syll)


def _hum(n: int, fs: int, rng: np.random.Generator) -> FloatArray:
    t = np.arange(n) / fs
    f0 = float(rng.choice([50.0, 60.0, 100.0, 120.0]))
    k = np.arange(1, int(1000 // f0) + 1)
    amp = k ** -rng.uniform(1.0, 2.5)
    return _unit(
        (amp[:, None] * np.sin(2 * math.pi * f0 * k[:, None] * t + rng.uniform(0, 6, (k.size, 1)))).sum(0)
    )


def _engine(n: int, fs: int, rng: np.random.Generator) -> FloatArray:
    """A road vehicle: broadband tyre noise plus low firing-frequency harmonics (20–80 Hz)."""
    t = np.arange(n) / fs
    f0 = rng.uniform(20, 80) * (1 + 0.05 * t)
    ph = 2 * math.pi * np.cumsum(f0) / fs
    k = np.arange(1, 8)
    tone = _unit((k[:, None] ** -1.0 * np.sin(k[:, None] * ph[None, :])).sum(0))
    return _unit(tone * rng.uniform(0.2, 1) + bandpass_noise(n, fs, 50.0, rng.uniform(500, 2000), rng))


def _rain(n: int, fs: int, rng: np.random.Generator) -> FloatArray:
    x = np.zeros(n)
    idx = rng.integers(0, n, int(rng.uniform(50, 800) * n / fs))
    x[idx] = rng.standard_normal(idx.size)
    x = np.convolve(x, np.exp(-np.arange(64) / rng.uniform(2, 12)), mode="same")
    return _unit(x + 0.1 * colored_noise(n, rng, 1.0, fs))


def _appliance(n: int, fs: int, rng: np.random.Generator) -> FloatArray:
    """One electric motor (vacuum cleaner, fan, blender, drill, pump): a single steady f0 with
    needle-sharp harmonic lines, and airflow noise that is not chopped at the blade rate."""
    t = np.arange(n) / fs
    f0 = float(np.exp(rng.uniform(math.log(80.0), math.log(1500.0))))
    inst = f0 * (1.0 + rng.uniform(0.0, 0.004) * np.sin(2 * math.pi * rng.uniform(0.1, 1.0) * t))
    k = np.arange(1, max(2, min(40, int(min(6000.0, 0.45 * fs) // f0))) + 1, dtype=np.float64)
    amp = k ** -rng.uniform(0.5, 2.0) * 10 ** (rng.normal(0.0, 6.0, k.size) / 20)
    ph = 2 * math.pi * np.cumsum(inst) / fs
    tone = (amp[:, None] * np.sin(k[:, None] * ph[None, :] + rng.uniform(0, 6, (k.size, 1)))).sum(0)
    air = bandpass_noise(n, fs, rng.uniform(150.0, 800.0), rng.uniform(1500.0, 7000.0), rng)
    return _unit(_unit(tone) * rng.uniform(0.3, 1.0) + air * rng.uniform(0.1, 1.5))


def _two_stroke(n: int, fs: int, rng: np.random.Generator) -> FloatArray:
    """A small combustion engine (chainsaw, moped, lawn mower, outboard): a rich comb at the
    firing rate (50–250 Hz) whose rpm swings by 2–25 % as the throttle moves, with exhaust noise
    pulsed at the firing rate."""
    t = np.arange(n) / fs
    base = rng.uniform(50.0, 250.0)
    swing = rng.uniform(0.02, 0.25) * np.sin(2 * math.pi * rng.uniform(0.3, 3.0) * t + rng.uniform(0, 6))
    inst = base * (1.0 + swing + rng.uniform(-0.2, 0.2) * t)
    cyc = np.cumsum(inst) / fs
    k = np.arange(1, max(2, int(min(5000.0, 0.45 * fs) // (base * 1.3))) + 1, dtype=np.float64)
    amp = k ** -rng.uniform(0.3, 1.3) * 10 ** (rng.normal(0.0, 4.0, k.size) / 20)
    tone = (
        amp[:, None] * np.sin(2 * math.pi * k[:, None] * cyc[None, :] + rng.uniform(0, 6, (k.size, 1)))
    ).sum(0)
    pulse = 1.0 + rng.uniform(0.0, 0.8) * np.sin(2 * math.pi * cyc)
    exhaust = bandpass_noise(n, fs, 200.0, rng.uniform(2000.0, 6000.0), rng) * pulse
    return _unit(_unit(tone) + exhaust * rng.uniform(0.2, 1.5))


def _siren(n: int, fs: int, rng: np.random.Generator) -> FloatArray:
    """An emergency siren or alarm: a few harmonics sweeping over 500–1800 Hz, wail or yelp."""
    t = np.arange(n) / fs
    lo, hi = rng.uniform(500.0, 900.0), rng.uniform(1100.0, 1800.0)
    rate = rng.uniform(0.2, 4.0)
    inst = lo + (hi - lo) * 0.5 * (1 + np.sin(2 * math.pi * rate * t + rng.uniform(0, 6)))
    ph = 2 * math.pi * np.cumsum(inst) / fs
    k = np.arange(1, 5, dtype=np.float64)
    tone = ((k[:, None] ** -1.5) * np.sin(k[:, None] * ph[None, :])).sum(0)
    return _unit(tone)


def _helicopter(n: int, fs: int, rng: np.random.Generator) -> FloatArray:
    """A helicopter: broadband rotor noise slapped at the main rotor's blade rate (10–30 Hz) and a
    tail-rotor comb 4–6 times higher, mostly below 1 kHz."""
    t = np.arange(n) / fs
    main = rng.uniform(10.0, 30.0)
    slap = 1.0 + rng.uniform(0.3, 1.0) * np.maximum(np.sin(2 * math.pi * main * t), 0.0) ** rng.uniform(2, 8)
    wash = colored_noise(n, rng, rng.uniform(1.0, 2.0), fs) * slap
    tail = main * rng.uniform(4.0, 6.0)
    k = np.arange(1, 8, dtype=np.float64)
    comb = ((k[:, None] ** -1.0) * np.sin(2 * math.pi * tail * k[:, None] * t[None, :])).sum(0)
    return _unit(wash + _unit(comb) * rng.uniform(0.1, 0.7))


NEGATIVES: dict[str, Callable[[int, int, np.random.Generator], FloatArray]] = {
    "noise": lambda n, fs, rng: colored_noise(n, rng, rng.uniform(0.0, 2.0), fs),
    "ambience": _background,
    "speech": _speech_like,
    "hum": _hum,
    "engine": _engine,
    "rain": _rain,
    "birds": lambda n, fs, rng: _unit(BirdVoice(fs, rng).render(n)),
    "aircraft": lambda n, fs, rng: _unit(AircraftVoice(fs, rng).render(n)),
    "appliance": _appliance,
    "two_stroke": _two_stroke,
    "siren": _siren,
    "helicopter": _helicopter,
}


def simulated_clip(label: int, rng: np.random.Generator, fs: int = SIM_RATE) -> FloatArray:
    n = int(SIM_SECONDS * fs)
    if label == 1:
        voice = DroneVoice(fs, rng)
        source = _unit(_absorb(voice.render(n, float(rng.uniform(0, 15))), fs, float(rng.uniform(5, 300))))
        snr_db = rng.uniform(-3.0, 25.0)
        x = source * 10 ** (snr_db / 20) + _background(n, fs, rng)
    else:
        kind = str(rng.choice(sorted(NEGATIVES)))
        x = NEGATIVES[kind](n, fs, rng)
        if kind not in ("noise", "ambience") and rng.random() < 0.7:
            x = x * 10 ** (rng.uniform(-5, 20) / 20) + _background(n, fs, rng)
    return np.asarray(_unit(x) * 10 ** (rng.uniform(-45, -10) / 20))


def simulated_set(n_per_class: int, seed: int) -> tuple[FloatArray, IntArray]:
    rng = np.random.default_rng(seed)
    labels = np.array([1, 0] * n_per_class, dtype=np.int_)
    feats = np.array([extract(simulated_clip(int(lab), rng), SIM_RATE).values for lab in labels])
    return feats, labels


def augment(x: FloatArray, fs: int, rng: np.random.Generator) -> FloatArray:
    """Another take of a real clip as a different microphone chain and place would give it: a time
    shift of up to 32 ms, ambience or coloured noise at 0–20 dB SNR, band-limiting (low-pass at
    2.5–7 kHz: distance, cheap MEMS; high-pass at 80–300 Hz: wind filters), gain with clipping."""
    y = x[int(rng.integers(0, int(0.032 * fs))) :].copy()
    n = y.size
    rms = math.sqrt(float(np.mean(y**2))) + 1e-12
    if rng.random() < 0.8:
        noise = (
            _background(n, fs, rng) if rng.random() < 0.6 else colored_noise(n, rng, rng.uniform(0, 2), fs)
        )
        y = y + noise * rms * 10 ** (-rng.uniform(0.0, 20.0) / 20)
    f = np.fft.rfftfreq(n, 1.0 / fs)
    gain = np.ones(f.size)
    if rng.random() < 0.5:
        gain /= np.sqrt(1.0 + (f / rng.uniform(2500.0, 7000.0)) ** 8)
    if rng.random() < 0.3:
        gain /= np.sqrt(1.0 + (rng.uniform(80.0, 300.0) / np.maximum(f, 1.0)) ** 4)
    y = np.fft.irfft(np.fft.rfft(y) * gain, n=n)
    peak = float(np.max(np.abs(y))) + 1e-12
    return np.asarray(np.clip(y / peak * 10 ** (rng.uniform(-30.0, 3.0) / 20), -1.0, 1.0))


@dataclass
class RealSet:
    """Features of real clips: originals and augmented copies, each with its recording group."""

    x: FloatArray
    y: IntArray
    group: IntArray  # index into `groups`
    original: npt.NDArray[np.bool_]
    groups: list[str]


def real_features(items: Sequence[tuple[Path, int]], n_augment: int, seed: int) -> RealSet:
    rng = np.random.default_rng(seed)
    groups = sorted({recording_id(p.name) for p, _ in items})
    gid = {g: i for i, g in enumerate(groups)}
    xs, ys, gs, orig = [], [], [], []
    for path, label in items:
        x, rate = read_wav(path)
        mono = x.mean(axis=1)
        for a in range(n_augment + 1):
            clip = mono if a == 0 else augment(mono, rate, rng)
            xs.append(extract(clip, rate).values)
            ys.append(label)
            gs.append(gid[recording_id(path.name)])
            orig.append(a == 0)
    return RealSet(
        np.array(xs).reshape(-1, len(FEATURE_NAMES)),
        np.array(ys, dtype=np.int_),
        np.array(gs, dtype=np.int_),
        np.array(orig, dtype=np.bool_),
        groups,
    )


# --- models --------------------------------------------------------------------------------------


def robust_scaling(x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Median and IQR/1.349 per feature (the std for a normal distribution, but not pulled by the
    few wild clips: silence, clicks); the std where the IQR is degenerate."""
    center = np.median(x, axis=0)
    q75, q25 = np.percentile(x, [75, 25], axis=0)
    scale = (q75 - q25) / 1.349
    std = x.std(axis=0)
    scale = np.where(scale > 1e-6 * (std + 1e-12), scale, std)
    return center, np.where(scale > 0, scale, 1.0)


def fit_logistic(z: FloatArray, y: IntArray, w: FloatArray, l2: float) -> FloatArray:
    """L2-regularised weighted logistic regression by Newton's method → [bias, coef...]."""
    a = np.column_stack([np.ones(z.shape[0]), z])
    coef = np.zeros(a.shape[1])
    reg = np.full(coef.size, l2)
    reg[0] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ coef, -50, 50)))
        grad = a.T @ (w * (p - y)) + reg * coef
        hess = (a * (w * p * (1 - p))[:, None]).T @ a + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        coef -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return coef


@dataclass(frozen=True)
class TreeParams:
    depth: int = 2
    n_trees: int = 300
    learning_rate: float = 0.05
    l2: float = 1.0
    min_hessian: float = 2.0
    subsample: float = 0.8
    colsample: float = 0.8
    n_bins: int = 32


class Booster:
    """Histogram gradient boosting of complete depth-d trees on the logistic loss, in numpy.
    Thresholds are training quantiles of each feature; a node that cannot split sends everything
    left (threshold +1e30) and its two children get the same leaf value."""

    def __init__(self, x: FloatArray, params: TreeParams) -> None:
        self.p = params
        qs = np.linspace(0.0, 1.0, params.n_bins + 1)[1:-1]
        self.edges = [np.unique(np.quantile(x[:, f], qs)) for f in range(x.shape[1])]
        self.n_codes = max(e.size for e in self.edges) + 1
        self.codes = np.column_stack(
            [np.searchsorted(e, x[:, f], side="left") for f, e in enumerate(self.edges)]
        )
        self.valid = np.zeros((x.shape[1], self.n_codes - 1), dtype=np.bool_)
        for f, e in enumerate(self.edges):
            self.valid[f, : e.size] = True

    def _split(
        self, idx: IntArray, g: FloatArray, h: FloatArray, cols: npt.NDArray[np.bool_]
    ) -> tuple[int, int]:
        n_f = self.codes.shape[1]
        flat = (self.codes[idx] + np.arange(n_f)[None, :] * self.n_codes).ravel()
        size = n_f * self.n_codes
        gs = np.bincount(flat, np.repeat(g[idx], n_f), size).reshape(n_f, self.n_codes)
        hs = np.bincount(flat, np.repeat(h[idx], n_f), size).reshape(n_f, self.n_codes)
        gl, hl = np.cumsum(gs, axis=1)[:, :-1], np.cumsum(hs, axis=1)[:, :-1]
        gt, ht = gs.sum(axis=1, keepdims=True), hs.sum(axis=1, keepdims=True)
        gr, hr = gt - gl, ht - hl
        lam = self.p.l2
        gain = gl**2 / (hl + lam) + gr**2 / (hr + lam) - gt**2 / (ht + lam)
        ok = self.valid & cols[:, None] & (hl >= self.p.min_hessian) & (hr >= self.p.min_hessian)
        gain = np.where(ok, gain, -np.inf)
        best = int(np.argmax(gain))
        if not np.isfinite(gain.flat[best]) or gain.flat[best] <= 1e-12:
            return -1, -1
        return divmod(best, self.n_codes - 1)

    def fit(
        self, y: IntArray, w: FloatArray, base: FloatArray, rng: np.random.Generator, stages: Sequence[int]
    ) -> tuple[Trees, list[FloatArray]]:
        """Boost from the logit `base`; returns the trees and the training logits at `stages`."""
        p = self.p
        n, n_f = self.codes.shape
        n_int, n_leaf = 2**p.depth - 1, 2**p.depth
        feat = np.zeros((p.n_trees, n_int), dtype=np.intp)
        thr = np.full((p.n_trees, n_int), 1e30)
        leaf = np.zeros((p.n_trees, n_leaf))
        logit = base.copy()
        staged = []
        for t in range(p.n_trees):
            prob = 1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50)))
            g, h = w * (prob - y), w * prob * (1 - prob)
            rows = np.asarray(rng.random(n) < p.subsample, dtype=np.bool_)
            cols = np.asarray(rng.random(n_f) < p.colsample, dtype=np.bool_)
            if not cols.any():
                cols[rng.integers(n_f)] = True
            node = np.zeros(n, dtype=np.intp)
            for i in range(n_int):
                idx = np.flatnonzero((node == i) & rows)
                f, c = self._split(idx, g, h, cols) if idx.size else (-1, -1)
                if f >= 0:
                    feat[t, i], thr[t, i] = f, self.edges[f][c]
                mine = node == i
                right = mine & (self.codes[:, max(f, 0)] > c) if f >= 0 else np.zeros(n, dtype=np.bool_)
                node = np.where(mine, 2 * i + 1 + right, node)
            node -= n_int
            in_rows = rows.astype(np.float64)
            gsum = np.bincount(node, g * in_rows, n_leaf)
            hsum = np.bincount(node, h * in_rows, n_leaf)
            leaf[t] = -p.learning_rate * gsum / (hsum + p.l2)
            logit += leaf[t][node]
            if t + 1 in stages:
                staged.append(logit.copy())
        return Trees(feat, thr, leaf), staged


@dataclass(frozen=True)
class Config:
    linear: bool
    trees: TreeParams | None

    @property
    def name(self) -> str:
        parts = ["logistic"] if self.linear else []
        if self.trees is not None:
            parts.append(f"trees(depth={self.trees.depth}, n={self.trees.n_trees})")
        return " + ".join(parts)


def fit_model(
    x: FloatArray, y: IntArray, w: FloatArray, cfg: Config, seed: int, stages: Sequence[int] = ()
) -> tuple[DetectorModel, list[DetectorModel]]:
    """Fit one configuration; also returns the models truncated after `stages` trees (for CV)."""
    center, scale = robust_scaling(x)
    w = w / w.mean()
    n_exp = 2 * x.shape[1]
    if cfg.linear:
        coef = fit_logistic(expand((x - center) / scale), y, w, L2)
    else:
        prior = float(np.sum(w * y) / np.sum(w))
        coef = np.concatenate([[math.log(prior / (1 - prior))], np.zeros(n_exp)])
    empty = Trees(np.zeros((0, 1), np.intp), np.zeros((0, 1)), np.zeros((0, 2)))
    linear = DetectorModel(center, scale, float(coef[0]), coef[1:], empty)
    if cfg.trees is None:
        return linear, [linear for _ in stages]
    booster = Booster(x, cfg.trees)
    trees, _ = booster.fit(y, w, linear.logit(x), np.random.default_rng(seed), stages)

    def cut(m: int) -> DetectorModel:
        t = Trees(trees.feature[:m], trees.threshold[:m], trees.leaf[:m])
        return DetectorModel(center, scale, linear.bias, linear.coef, t)

    return cut(trees.feature.shape[0]), [cut(m) for m in stages]


# --- metrics ---------------------------------------------------------------------------------------


def partial_auc(scores: FloatArray, labels: IntArray, max_fa: float = PAUC_MAX_FA) -> float:
    """Mean detection rate over false-alarm rates 0..max_fa (normalised partial ROC area): the
    low-false-alarm end of the curve, where the node operates, less noisy than one point on it."""
    fas = np.linspace(max_fa / 20, max_fa, 20)
    return float(np.mean([pd_at_fa(scores, labels, fa)[0] for fa in fas]))


def summary(scores: FloatArray, labels: IntArray) -> dict[str, float]:
    pd, thr = pd_at_fa(scores, labels)
    return {
        "auc": round(roc_auc(scores, labels), 4),
        "pd_at_1pct_fa": round(pd, 4),
        "threshold_1pct_fa": round(thr, 4),
        "pauc_5pct": round(partial_auc(scores, labels), 4),
    }


# --- cross-validation and training ---------------------------------------------------------------


def group_folds(real: RealSet, n_folds: int, seed: int) -> IntArray:
    """Fold of every real clip: recordings of each class dealt round-robin in a seeded order."""
    rng = np.random.default_rng(seed)
    fold_of_group = np.zeros(len(real.groups), dtype=np.int_)
    for label in (0, 1):
        gids = np.unique(real.group[real.y == label])
        order = rng.permutation(gids)
        fold_of_group[order] = np.arange(order.size) % n_folds
    return fold_of_group[real.group]


def sample_weights(n_real: int, n_sim: int) -> FloatArray:
    """Real clips (originals and augmented copies) carry REAL_WEIGHT of the fit, simulated ones the
    rest: the real thing dominates, the simulation teaches the physics beyond two drones in a room."""
    return np.concatenate([np.full(n_real, REAL_WEIGHT / n_real), np.full(n_sim, (1 - REAL_WEIGHT) / n_sim)])


CANDIDATE_STAGES = (100, 200, 400, 800)


def candidates() -> list[Config]:
    """Logistic alone (the smoothest), boosted trees alone at depth 2 and 3, and trees on top of
    the logistic logit (depth 3), each at CANDIDATE_STAGES trees."""
    n = max(CANDIDATE_STAGES)
    return [
        Config(True, None),
        Config(False, TreeParams(depth=2, n_trees=n)),
        Config(False, TreeParams(depth=3, n_trees=n)),
        Config(True, TreeParams(depth=3, n_trees=n)),
    ]


def cross_validate(real: RealSet, x_sim: FloatArray, y_sim: IntArray, seed: int) -> list[dict[str, object]]:
    """Pooled out-of-fold scores of the original real training clips for every candidate (and
    number of trees); the simulated clips are in every fold's training set."""
    folds = group_folds(real, N_FOLDS, seed)
    results: list[dict[str, object]] = []
    for cfg in candidates():
        stages = CANDIDATE_STAGES if cfg.trees is not None else (0,)
        oof = {m: np.zeros(real.y.size) for m in stages}
        for k in range(N_FOLDS):
            tr = folds != k
            va = (folds == k) & real.original
            x = np.vstack([real.x[tr], x_sim])
            y = np.concatenate([real.y[tr], y_sim])
            w = sample_weights(int(tr.sum()), y_sim.size)
            _, staged = fit_model(x, y, w, cfg, seed + k, stages if cfg.trees is not None else ())
            models = staged if cfg.trees is not None else [fit_model(x, y, w, cfg, seed + k)[0]]
            for m, model in zip(stages, models, strict=True):
                oof[m][va] = model.logit(real.x[va])
        for m in stages:
            s = oof[m][real.original]
            n_trees = m if cfg.trees is not None else 0
            c = Config(
                cfg.linear, None if cfg.trees is None else TreeParams(depth=cfg.trees.depth, n_trees=m)
            )
            row: dict[str, object] = {
                "model": c.name,
                "n_trees": n_trees,
                **summary(s, real.y[real.original]),
            }
            row["_config"] = c
            results.append(row)
            print(json.dumps({k: v for k, v in row.items() if not k.startswith("_")}), file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--captures", type=Path, default=DEFAULT_CAPTURES)
    ap.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS_PATH)
    ap.add_argument("--sim-per-class", type=int, default=N_SIM_PER_CLASS)
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)
    if not (args.captures / "drone").is_dir():
        print(f"no captures at {args.captures}", file=sys.stderr)
        return 2
    t0 = time.process_time()
    train_items, test_items = real_split(args.captures)  # fixed split: SEED, not --seed
    real = real_features(train_items, N_AUGMENT, args.seed + 3)
    x_sim, y_sim = simulated_set(args.sim_per_class, args.seed + 1)
    cv = cross_validate(real, x_sim, y_sim, args.seed + 4)
    best = max(cv, key=lambda r: (float(r["pauc_5pct"]), float(r["auc"])))  # type: ignore[arg-type]
    cfg = best["_config"]
    assert isinstance(cfg, Config)
    x = np.vstack([real.x, x_sim])
    y = np.concatenate([real.y, y_sim])
    model, _ = fit_model(x, y, sample_weights(real.y.size, y_sim.size), cfg, args.seed + 5)
    params = {"model": cfg.name, "real_weight": REAL_WEIGHT, "n_augment": N_AUGMENT, "l2": L2}
    if cfg.trees is not None:
        params.update({f"trees_{k}": v for k, v in vars(cfg.trees).items()})
    model = DetectorModel(model.center, model.scale, model.bias, model.coef, model.trees, params=params)
    model.save(args.out)
    model = DetectorModel.load(args.out)  # the metrics are those of the file as shipped (rounding)
    # Scored once, after the choice above.
    x_test, y_test = features_of_files(test_items)
    x_sim_test, y_sim_test = simulated_set(args.sim_per_class // 4, args.seed + 2)
    held = summary(model.score(x_test), y_test)
    sim = summary(model.score(x_sim_test), y_sim_test)
    metrics = {
        "heldout_real_auc": held["auc"],
        "heldout_real_pd_at_1pct_fa": held["pd_at_1pct_fa"],
        "heldout_real_threshold_1pct_fa": held["threshold_1pct_fa"],
        "heldout_real_positives": int(y_test.sum()),
        "heldout_real_negatives": int((y_test == 0).sum()),
        "heldout_sim_auc": sim["auc"],
        "heldout_sim_pd_at_1pct_fa": sim["pd_at_1pct_fa"],
        "cv_model": best["model"],
        "cv_real_auc": best["auc"],
        "cv_real_pd_at_1pct_fa": best["pd_at_1pct_fa"],
        "cv_real_pauc_5pct": best["pauc_5pct"],
        "cv_candidates": [{k: v for k, v in r.items() if not k.startswith("_")} for r in cv],
        "train_real_clips": int(real.original.sum()),
        "train_real_augmented": int((~real.original).sum()),
        "train_sim_clips": int(y_sim.size),
        "seed": args.seed,
        "train_cpu_s": round(time.process_time() - t0, 1),
    }
    model.save(args.out, metrics)
    print(json.dumps({k: v for k, v in metrics.items() if k != "cv_candidates"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
