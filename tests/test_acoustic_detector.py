"""The shipped detector on the held-out real recordings, and on the physics it should know."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cuas_node.calibration.acoustic_train import (
    NEGATIVES,
    features_of_files,
    pd_at_fa,
    real_split,
    recording_id,
    roc_auc,
    session_id,
    simulated_clip,
)
from cuas_node.drivers.acoustic.decode import score_wav_files
from cuas_node.drivers.acoustic.detector import DEFAULT_WEIGHTS_PATH, DetectorModel, DroneDetector, Trees
from cuas_node.drivers.acoustic.features import FEATURE_NAMES, extract

CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "captures" / "acoustic"
needs_captures = pytest.mark.skipif(not (CAPTURES / "drone").is_dir(), reason="../shared/captures absent")

# The floors of issue 5 (docs/acoustic.md), on the held-out split by recording; the shipped
# weights reach more (see `metrics` in the weights file and the docs).
AUC_FLOOR = 0.95
PD_AT_1PCT_FA_FLOOR = 0.60
# Issue 16: leave-one-session-out inside the training split (docs/acoustic.md, "Validation").
LOGO_AUC_FLOOR = 0.95
LOGO_PD_AT_1PCT_FA_FLOOR = 0.60


def test_recording_ids_group_segments() -> None:
    assert recording_id("B_S2_D1_070-bebop_000_.wav") == recording_id("B_S2_D1_070-bebop_004_.wav")
    assert recording_id("mixed_membo_9-membo_002_.wav") == "mixed_membo_9"
    assert recording_id("1-19872-A-361.wav") == recording_id("1-19872-B-360.wav") == "1-19872"
    assert recording_id("white_noise005.wav") == "white_noise"


@needs_captures
def test_split_is_by_recording() -> None:
    train, test = real_split(CAPTURES)
    train_ids = {recording_id(p.name) for p, _ in train}
    assert not train_ids & {recording_id(p.name) for p, _ in test}
    assert {lab for _, lab in test} == {0, 1}
    assert (len(train), len(test)) == (422, 178)  # the held-out split must not move between runs


@needs_captures
def test_heldout_metrics_above_floor() -> None:
    _, test = real_split(CAPTURES)
    x, y = features_of_files(test)
    scores = DetectorModel.load().score(x)
    auc = roc_auc(scores, y)
    pd, _ = pd_at_fa(scores, y, 0.01)
    assert auc >= AUC_FLOOR, auc
    assert pd >= PD_AT_1PCT_FA_FLOOR, pd
    shipped = json.loads(DEFAULT_WEIGHTS_PATH.read_text())["metrics"]
    assert auc == pytest.approx(shipped["heldout_real_auc"], abs=1e-3)  # the weights file tells the truth
    assert pd == pytest.approx(shipped["heldout_real_pd_at_1pct_fa"], abs=1e-3)


@needs_captures
def test_heldout_recordings_as_another_site_would_hear_them() -> None:
    """The held-out recordings, each once through the site chain (distance, room, wind, ambience,
    microphone, recorder rate; seeded): the shipped detector at its shipped threshold. Figures in
    docs/acoustic.md ("as another site"): AUC 0.920, 70 % detected, 4.1 % of the others called drone."""
    from cuas_node.calibration.acoustic_site_augment import site_augment
    from cuas_node.drivers.acoustic.decode import read_wav

    _, test = real_split(CAPTURES)
    det = DroneDetector()
    rng = np.random.default_rng(123)
    scores, labels = [], []
    for path, label in test:
        x, fs = read_wav(path)
        clip, rate = site_augment(x.mean(axis=1), fs, rng)
        scores.append(det.detect(clip, rate).drone_likelihood)
        labels.append(label)
    s, y = np.array(scores), np.array(labels)
    assert roc_auc(s, y) >= 0.90
    assert np.mean(s[y == 1] >= det.threshold) >= 0.65
    assert np.mean(s[y == 0] >= det.threshold) <= 0.06


def test_session_ids() -> None:
    assert session_id("B_S2_D1_070-bebop_000_.wav") == session_id("B_S2_D1_122-bebop_004_.wav")
    assert session_id("Membo_1_030-membo_004_.wav") == "membo_1" != session_id("Membo_2_027-membo_000_.wav")
    assert session_id("mixed_17-bebop_000_.wav") == "mixed_bebop"
    assert session_id("mixed_membo_9-membo_002_.wav") == "mixed_membo"
    assert session_id("3-142605-A-211.wav") == session_id("3-1-B-2.wav") == "esc50_fold3"


def test_leave_one_session_out_figures_meet_the_floors_and_the_docs_quote_them() -> None:
    """The weights file's leave-one-session-out figures (computed by the training run on the
    training split, one session held out at a time) meet the floors, and docs/acoustic.md quotes
    exactly those numbers."""
    m = json.loads(DEFAULT_WEIGHTS_PATH.read_text())["metrics"]
    assert m["logo_sessions"] == 12
    assert m["logo_real_auc"] >= LOGO_AUC_FLOOR
    assert m["logo_real_pd_at_1pct_fa"] >= LOGO_PD_AT_1PCT_FA_FLOOR
    docs = (Path(__file__).resolve().parents[1] / "docs" / "acoustic.md").read_text()
    assert f"ROC AUC {m['logo_real_auc']:.3f}" in docs
    assert f"{m['logo_real_pd_at_1pct_fa']:.2f} at 1 % false alarms" in docs


def test_the_same_sound_at_any_sample_rate_gives_the_same_decision() -> None:
    """16 kHz MEMS array, 44.1 kHz recorder, 48 kHz USB array: one analysis rate, one verdict."""
    from scipy.signal import resample_poly

    rng = np.random.default_rng(3)
    det = DroneDetector()
    for label in (1, 0, 1, 0):
        x = simulated_clip(label, rng)
        base = det.detect(x, 16000)
        for fs, (up, down) in ((44100, (441, 160)), (48000, (3, 1))):
            y = resample_poly(x, up, down)
            d = det.detect(y, fs)
            assert abs(d.drone_likelihood - base.drone_likelihood) < 0.1, (fs, label)
            assert d.detected == base.detected or abs(base.drone_likelihood - det.threshold) < 0.1


def test_weights_file_is_small_and_matches_the_features() -> None:
    assert DEFAULT_WEIGHTS_PATH.stat().st_size < 300_000
    model = DetectorModel.load()
    assert model.feature_names == FEATURE_NAMES
    assert np.all(model.scale > 0)


def test_metric_helpers() -> None:
    y = np.array([1, 1, 0, 0])
    assert roc_auc(np.array([0.9, 0.8, 0.1, 0.2]), y) == 1.0
    assert roc_auc(np.array([0.1, 0.2, 0.9, 0.8]), y) == 0.0
    pd, thr = pd_at_fa(np.array([0.9, 0.3, 0.5, 0.2]), y, 0.01)
    assert thr == 0.5 and pd == 0.5


def test_tree_inference_follows_the_heap_layout() -> None:
    # One depth-2 tree: root on feature 0 at 1.0; left child on feature 1 at 0.0, right on 1 at 5.0.
    trees = Trees(
        feature=np.array([[0, 1, 1]], dtype=np.intp),
        threshold=np.array([[1.0, 0.0, 5.0]]),
        leaf=np.array([[-2.0, -1.0, 1.0, 2.0]]),
    )
    x = np.array([[0.5, -1.0], [0.5, 1.0], [2.0, 4.0], [2.0, 6.0]])
    assert trees.logit(x).tolist() == [-2.0, -1.0, 1.0, 2.0]


def test_features_are_finite_and_level_free() -> None:
    rng = np.random.default_rng(5)
    x = simulated_clip(1, rng)
    a, b = extract(x, 16000).values, extract(x * 0.01, 16000).values
    assert np.all(np.isfinite(a)) and np.allclose(a, b, atol=1e-6)
    assert np.all(np.isfinite(extract(np.zeros(16384), 16000).values))


def test_simulated_drones_and_negatives_are_told_apart() -> None:
    rng = np.random.default_rng(99)
    det = DroneDetector()
    drones = [det.detect(simulated_clip(1, rng), 16000).drone_likelihood for _ in range(12)]
    others = [det.detect(simulated_clip(0, rng), 16000).drone_likelihood for _ in range(12)]
    assert np.median(drones) > 0.5 > np.median(others)


@pytest.mark.parametrize("kind", ["appliance", "two_stroke", "helicopter", "wind"])
def test_motors_with_combs_are_not_drones(kind: str) -> None:
    """The hard negatives: a steady motor's needle-sharp comb, a revving engine's comb, a
    helicopter's main-rotor slap with its tail-rotor comb, gusty wind."""
    rng = np.random.default_rng(7)
    det = DroneDetector()
    scores = [det.detect(NEGATIVES[kind](16384, 16000, rng) * 0.05, 16000).drone_likelihood for _ in range(8)]
    assert np.median(scores) < 0.5


def test_silence_and_f0() -> None:
    det = DroneDetector()
    assert det.detect(np.zeros(16384), 16000).drone_likelihood == 0.0
    t = np.arange(16384) / 16000
    comb = sum(np.sin(2 * np.pi * 230 * k * t) / k for k in range(1, 15)) * 0.05
    comb = comb + 0.005 * np.random.default_rng(0).standard_normal(t.size)
    d = det.detect(comb, 16000)
    assert d.f0_hz is not None and abs(d.f0_hz - 230) < 8


@needs_captures
def test_score_wav_files_prints_one_object_per_file() -> None:
    files = [
        sorted((CAPTURES / "drone").glob("*.wav"))[0],
        sorted((CAPTURES / "not_drone").glob("white*.wav"))[0],
    ]
    rows = list(score_wav_files(files))
    assert [Path(r["file"]).name for r in rows] == [f.name for f in files]
    assert set(rows[0]) == {"file", "drone_likelihood", "detected", "f0_hz"}
    assert 0.0 <= rows[1]["drone_likelihood"] <= 1.0
