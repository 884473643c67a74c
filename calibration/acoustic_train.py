"""Train the acoustic drone detector: `python -m calibration.acoustic_train [--captures DIR]`.

Data: the real one-second clips in ../shared/captures/acoustic/{drone,not_drone} (Parrot Bebop and
Mambo indoors; ESC-50 sounds, white noise, silence), split by *recording* (segments of one
recording share a name prefix, see `recording_id`) into train and held-out test sets with a fixed
seed, plus simulated clips from the simulator's own voices (drones of every size with random
harmonic roll-off, rotor count and broadband share, at a random distance and SNR over wind,
traffic, birds and ambient noise; and hard negatives: speech-like harmonic sounds with wandering f0,
mains hum, engines, birds, aircraft, wind, rain, coloured noises). The simulated clips are there so
that the model learns the physics (a persistent comb at a common f0) and not the two drones and the
one room of the real set.

Model: logistic regression on standardised features (drivers/acoustic/features.py) plus their
squares, L2-regularised, fitted by Newton's method in numpy; seeded and deterministic. The weights
go to drivers/acoustic/detector_weights.json with the held-out metrics. A logistic model of
physically meaningful features is the small, smooth model that generalises beyond this data.

Metrics on the held-out real recordings (written into the weights file and docs/acoustic.md):
ROC AUC and the detection rate at a 1 % false-alarm rate (threshold = the score exceeded by at most
1 % of the held-out negatives). Reached at the last training run: see `metrics` in the weights file.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from drivers.acoustic.decode import read_wav
from drivers.acoustic.detector import DEFAULT_WEIGHTS_PATH, LogisticDetector
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
DEFAULT_CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "captures" / "acoustic"
SEED = 20240605
TEST_FRACTION = 0.3
SIM_RATE = 16000
SIM_SECONDS = 1.024
N_SIM_PER_CLASS = 400
REAL_WEIGHT = 0.8
L2 = 2.0


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


def features_of_files(items: Sequence[tuple[Path, int]]) -> tuple[FloatArray, npt.NDArray[np.int_]]:
    feats = []
    for path, _ in items:
        x, rate = read_wav(path)
        feats.append(extract(x.mean(axis=1), rate).values)
    return np.array(feats).reshape(-1, len(FEATURE_NAMES)), np.array([lab for _, lab in items], dtype=np.int_)


def roc_auc(scores: FloatArray, labels: npt.NDArray[np.int_]) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (pos.size * neg.size))


def pd_at_fa(scores: FloatArray, labels: npt.NDArray[np.int_], fa: float = 0.01) -> tuple[float, float]:
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


NEGATIVES: dict[str, Callable[[int, int, np.random.Generator], FloatArray]] = {
    "noise": lambda n, fs, rng: colored_noise(n, rng, rng.uniform(0.0, 2.0), fs),
    "ambience": _background,
    "speech": _speech_like,
    "hum": _hum,
    "engine": _engine,
    "rain": _rain,
    "birds": lambda n, fs, rng: _unit(BirdVoice(fs, rng).render(n)),
    "aircraft": lambda n, fs, rng: _unit(AircraftVoice(fs, rng).render(n)),
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


def simulated_set(n_per_class: int, seed: int) -> tuple[FloatArray, npt.NDArray[np.int_]]:
    rng = np.random.default_rng(seed)
    labels = np.array([1, 0] * n_per_class, dtype=np.int_)
    feats = np.array([extract(simulated_clip(int(lab), rng), SIM_RATE).values for lab in labels])
    return feats, labels


# --- training ----------------------------------------------------------------------------------


def train(
    x: FloatArray, y: npt.NDArray[np.int_], weights: FloatArray | None = None, l2: float = 1.0
) -> LogisticDetector:
    """L2-regularised logistic regression on standardised features and their squares (Newton)."""
    mean = x.mean(axis=0)
    std = x.std(axis=0) + 1e-9
    z = LogisticDetector.expand((x - mean) / std)
    w_sample = np.ones(y.size) if weights is None else weights
    w_sample = w_sample / w_sample.mean()
    coef = np.zeros(z.shape[1] + 1)
    a = np.column_stack([np.ones(z.shape[0]), z])
    reg = np.full(coef.size, l2)
    reg[0] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(a @ coef)))
        grad = a.T @ (w_sample * (p - y)) + reg * coef
        hess = (a * (w_sample * p * (1 - p))[:, None]).T @ a + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        coef -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return LogisticDetector(mean=mean, std=std, bias=float(coef[0]), coef=coef[1:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captures", type=Path, default=DEFAULT_CAPTURES)
    ap.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS_PATH)
    ap.add_argument("--sim-per-class", type=int, default=N_SIM_PER_CLASS)
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)
    if not (args.captures / "drone").is_dir():
        print(f"no captures at {args.captures}", file=sys.stderr)
        return 2
    train_items, test_items = real_split(args.captures, args.seed)
    x_real, y_real = features_of_files(train_items)
    x_test, y_test = features_of_files(test_items)
    x_sim, y_sim = simulated_set(args.sim_per_class, args.seed + 1)
    x_sim_test, y_sim_test = simulated_set(args.sim_per_class // 4, args.seed + 2)
    x = np.vstack([x_real, x_sim])
    y = np.concatenate([y_real, y_sim])
    # Real clips carry 80 % of the weight (they are the real thing), simulated ones 20 % (they teach
    # the physics beyond two drones in one room without drowning the real data).
    w = np.concatenate(
        [np.full(y_real.size, REAL_WEIGHT / y_real.size), np.full(y_sim.size, (1 - REAL_WEIGHT) / y_sim.size)]
    )
    model = train(x, y, w, l2=L2)
    s_test = model.score(x_test)
    auc = roc_auc(s_test, y_test)
    pd, thr = pd_at_fa(s_test, y_test)
    s_sim = model.score(x_sim_test)
    sim_auc = roc_auc(s_sim, y_sim_test)
    sim_pd, _ = pd_at_fa(s_sim, y_sim_test)
    metrics = {
        "heldout_real_auc": round(auc, 4),
        "heldout_real_pd_at_1pct_fa": round(pd, 4),
        "heldout_real_threshold_1pct_fa": round(thr, 4),
        "heldout_real_positives": int(y_test.sum()),
        "heldout_real_negatives": int((y_test == 0).sum()),
        "heldout_sim_auc": round(sim_auc, 4),
        "heldout_sim_pd_at_1pct_fa": round(sim_pd, 4),
        "train_real_clips": int(y_real.size),
        "train_sim_clips": int(y_sim.size),
        "seed": args.seed,
    }
    model.save(args.out, metrics)
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
