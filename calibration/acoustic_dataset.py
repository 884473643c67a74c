"""The real training data of the acoustic detector: clips in ../shared/captures/acoustic split by
*recording* into train and held-out sets, their features, and seeded augmented copies.

Why split by recording and not by clip: segments cut from one recording share the room, the
microphone and often the very same seconds of sound; a clip-level split would score the model on
near-copies of its training data. The split's seed (SEED) must never move between runs, or the
held-out metrics in the weights file stop being comparable.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cuas_node.calibration.acoustic_simulated_clips import outdoor_ambience
from cuas_node.drivers.acoustic.decode import read_wav
from cuas_node.drivers.acoustic.features import FEATURE_NAMES, extract
from cuas_node.drivers.sim.acoustic import colored_noise

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int_]
DEFAULT_CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "captures" / "acoustic"
SEED = 20240605  # also fixes the held-out split, which must not move between runs
TEST_FRACTION = 0.3


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
    """Features of each (wav, label), channels averaged to mono as the detector hears a beam."""
    feats = []
    for path, _ in items:
        x, rate = read_wav(path)
        feats.append(extract(x.mean(axis=1), rate).values)
    return np.array(feats).reshape(-1, len(FEATURE_NAMES)), np.array([lab for _, lab in items], dtype=np.int_)


def augment(x: FloatArray, fs: int, rng: np.random.Generator) -> FloatArray:
    """Another take of a real clip as a different microphone chain and place would give it: a time
    shift of up to 32 ms, ambience or coloured noise at 0–20 dB SNR, band-limiting (low-pass at
    2.5–7 kHz: distance, cheap MEMS; high-pass at 80–300 Hz: wind filters), gain with clipping."""
    y = x[int(rng.integers(0, int(0.032 * fs))) :].copy()
    n = y.size
    rms = math.sqrt(float(np.mean(y**2))) + 1e-12
    if rng.random() < 0.8:
        noise = (
            outdoor_ambience(n, fs, rng)
            if rng.random() < 0.6
            else colored_noise(n, rng, rng.uniform(0, 2), fs)
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
    """Features of every training clip and of `n_augment` augmented copies of it, right after it
    (one rng for all clips, so the order of `items` is part of the result)."""
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
