"""The real training data of the acoustic detector: clips in ../shared/captures/acoustic split by
*recording* into train and held-out sets, their features, and seeded augmented copies.

Why split by recording and not by clip: segments cut from one recording share the room, the
microphone and often the very same seconds of sound; a clip-level split would score the model on
near-copies of its training data. The split's seed (SEED) must never move between runs, or the
held-out metrics in the weights file stop being comparable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cuas_node.calibration.acoustic_site_augment import site_augment
from cuas_node.drivers.acoustic.decode import read_wav
from cuas_node.drivers.acoustic.features import FEATURE_NAMES, extract

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


def session_id(name: str) -> str:
    """The recording *session* of a clip, coarser than `recording_id`: what leave-one-group-out
    holds out, because recordings of one session share the room, the microphone and the drone.
    `B_S2_D1_070-bebop_000_.wav` → `bebop_B_S2_D1`, `Membo_1_030-membo_004_.wav` → `membo_1`,
    `mixed_17-bebop_000_.wav` → `mixed_bebop`, `mixed_membo_9-…` → `mixed_membo`, ESC-50
    `3-142605-A-211.wav` → `esc50_fold3` (the dataset's own folds), `white_noise005` → `white_noise`."""
    stem = Path(name).stem
    m = re.match(r"^(\d+)-\d+-", stem)
    if m:
        return f"esc50_fold{m.group(1)}"
    for prefix, session in (
        ("B_S2_D1", "bebop_B_S2_D1"),
        ("mixed_membo", "mixed_membo"),
        ("mixed_", "mixed_bebop"),
    ):
        if stem.startswith(prefix):
            return session
    m = re.match(r"^Membo_(\d+)_", stem)
    if m:
        return f"membo_{m.group(1)}"
    return recording_id(name)


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


@dataclass
class RealSet:
    """Features of real clips: originals and augmented copies, each with its recording group and
    its session; an augmented copy mixed with another real clip also carries that clip's session
    (`session2`, −1 if none), so that a fold holding out either session drops the mixture."""

    x: FloatArray
    y: IntArray
    group: IntArray  # index into `groups`
    original: npt.NDArray[np.bool_]
    groups: list[str]
    session: IntArray  # index into `sessions`
    session2: IntArray
    sessions: list[str]


def real_features(items: Sequence[tuple[Path, int]], n_augment: int, seed: int) -> RealSet:
    """Features of every training clip and of `n_augment` site-augmented copies of it, right after
    it (one rng for all clips, so the order of `items` is part of the result). Half of the copies
    are mixed with a real not-drone clip of another recording as the ambient sound."""
    rng = np.random.default_rng(seed)
    groups = sorted({recording_id(p.name) for p, _ in items})
    sessions = sorted({session_id(p.name) for p, _ in items})
    gid = {g: i for i, g in enumerate(groups)}
    sid = {g: i for i, g in enumerate(sessions)}
    audio = [read_wav(path) for path, _ in items]
    ambients = [i for i, (_, lab) in enumerate(items) if lab == 0]
    xs, ys, gs, orig, ss, ss2 = [], [], [], [], [], []
    for (path, label), (x, rate) in zip(items, audio, strict=True):
        mono = x.mean(axis=1)
        for a in range(n_augment + 1):
            s2 = -1
            if a == 0:
                clip, fs = mono, rate
            else:
                amb = None
                if rng.random() < 0.5:
                    j = int(rng.choice(ambients))
                    if recording_id(items[j][0].name) != recording_id(path.name) and audio[j][1] == rate:
                        amb = audio[j][0].mean(axis=1)
                        s2 = sid[session_id(items[j][0].name)]
                clip, fs = site_augment(mono, rate, rng, amb)
            xs.append(extract(clip, fs).values)
            ys.append(label)
            gs.append(gid[recording_id(path.name)])
            orig.append(a == 0)
            ss.append(sid[session_id(path.name)])
            ss2.append(s2)
    return RealSet(
        np.array(xs).reshape(-1, len(FEATURE_NAMES)),
        np.array(ys, dtype=np.int_),
        np.array(gs, dtype=np.int_),
        np.array(orig, dtype=np.bool_),
        groups,
        np.array(ss, dtype=np.int_),
        np.array(ss2, dtype=np.int_),
        sessions,
    )
