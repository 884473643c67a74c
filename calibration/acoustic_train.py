"""Train the acoustic drone detector: `python -m cuas_node.calibration.acoustic_train [--captures DIR]`.

Data: the real one-second clips in ../shared/captures/acoustic/{drone,not_drone} (Parrot Bebop and
Mambo indoors; ESC-50 sounds, white noise, silence), split by *recording* (segments of one
recording share a name prefix, see `recording_id`) into train and held-out test sets with a fixed
seed. The training clips are used as they are and as seeded site-augmented copies
(`acoustic_site_augment`: distance and air absorption, ground reflection and reverberation, gusty
wind, real or simulated ambience at 0–25 dB SNR, a random microphone response, the recorder's
sample rate 16–48 kHz, gain with clipping), so that the model learns the source and not one room's
microphone chain. Plus simulated clips from the simulator's own voices: drones of every size
with random harmonic roll-off, rotor count and broadband share at a random distance and SNR over
wind, traffic, birds and ambient noise; and negatives: speech-like harmonic sounds with wandering
f0, mains hum, road engines, birds, aircraft, gusty wind, rain, coloured noises, and the hard ones,
machines whose sound is
also a harmonic comb but with non-multirotor statistics (one steady motor with needle-sharp lines:
vacuum cleaner, fan, power tool; a revving two-stroke engine: chainsaw, moped; a siren's sweep; a
helicopter's slow main-rotor slap). The simulated clips are there so that the model learns the
physics and not the two drones and the one room of the real set.

Model (drivers/acoustic/detector.py): a logistic regression on robustly standardised features and
their squares, L2-regularised, fitted by Newton's method, plus gradient-boosted depth-limited
decision trees fitted on top of its logit (Newton leaf values, histogram splits, row and column
subsampling), all in numpy, seeded and deterministic. Which of {logistic alone, trees alone,
logistic + trees} and the trees' depth and number are chosen by leave-one-session-out
cross-validation *inside the training split* (`acoustic_dataset.session_id`: a drone recording
session or an ESC-50 fold is held out whole, with every augmented copy that contains one of its
clips), on the partial ROC area up to 5 % false alarms of the pooled out-of-fold real clips. The
held-out recordings are scored once, after the choice, and never feed back into it. The shipped
decision threshold is the out-of-fold likelihood that SHIPPED_FA of the real negatives exceed.

Metrics (written into the weights file, and docs/acoustic.md): ROC AUC and the detection rate at a
1 % false-alarm rate (threshold = the score exceeded by at most 1 % of the negatives), on the
held-out real recordings and leave-one-session-out, and each session's share called drone at the
shipped threshold.

Layout: `cuas_node.calibration.acoustic_dataset` (real clips, split, augmentation),
`cuas_node.calibration.acoustic_simulated_clips` (simulated drones and hard negatives),
`cuas_node.calibration.acoustic_model_fit` (logistic + boosted trees),
`cuas_node.calibration.acoustic_model_selection` (grouped cross-validation over the candidates),
`cuas_node.calibration.acoustic_metrics` (ROC numbers); this
module runs them in a fixed order (the seeds derive from `--seed`) and writes the weights file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from cuas_node.calibration.acoustic_dataset import (
    DEFAULT_CAPTURES,
    SEED,
    TEST_FRACTION,
    FloatArray,
    IntArray,
    RealSet,
    features_of_files,
    real_features,
    real_split,
    recording_id,
    session_id,
)
from cuas_node.calibration.acoustic_metrics import PAUC_MAX_FA, partial_auc, pd_at_fa, roc_auc, summary
from cuas_node.calibration.acoustic_model_fit import (
    L2,
    Booster,
    Config,
    TreeParams,
    fit_logistic,
    fit_model,
    robust_scaling,
)
from cuas_node.calibration.acoustic_model_selection import (
    CANDIDATE_STAGES,
    REAL_WEIGHT,
    candidates,
    cross_validate,
    sample_weights,
    session_folds,
)
from cuas_node.calibration.acoustic_simulated_clips import (
    NEGATIVES,
    SIM_RATE,
    SIM_SECONDS,
    simulated_clip,
    simulated_set,
)
from cuas_node.drivers.acoustic.detector import DEFAULT_WEIGHTS_PATH, DetectorModel

__all__ = [
    "CANDIDATE_STAGES",
    "DEFAULT_CAPTURES",
    "L2",
    "NEGATIVES",
    "N_AUGMENT",
    "N_SIM_PER_CLASS",
    "PAUC_MAX_FA",
    "REAL_WEIGHT",
    "SEED",
    "SIM_RATE",
    "SIM_SECONDS",
    "TEST_FRACTION",
    "Booster",
    "Config",
    "FloatArray",
    "IntArray",
    "RealSet",
    "TreeParams",
    "candidates",
    "cross_validate",
    "features_of_files",
    "fit_logistic",
    "fit_model",
    "main",
    "partial_auc",
    "pd_at_fa",
    "real_features",
    "real_split",
    "recording_id",
    "robust_scaling",
    "roc_auc",
    "sample_weights",
    "session_folds",
    "session_id",
    "simulated_clip",
    "simulated_set",
    "summary",
]

N_SIM_PER_CLASS = 500
N_AUGMENT = 4  # site-augmented copies per real training clip
SHIPPED_FA = 0.05  # the shipped threshold: exceeded by this share of held-out-session negatives


def shipped_threshold(oof_logit: FloatArray, y: IntArray) -> float:
    """The default decision threshold (a likelihood): the out-of-fold score that at most
    SHIPPED_FA of the real negatives exceed when their whole session was left out of the fit, i.e.
    the false-alarm rate to expect at a site the model has not heard; bounded to [0.3, 0.9]."""
    neg = np.sort(oof_logit[y == 0])
    k = min(neg.size - 1, int(np.ceil((1.0 - SHIPPED_FA) * neg.size)))
    return float(np.clip(1.0 / (1.0 + np.exp(-neg[k])), 0.3, 0.9))


def per_session(real: RealSet, oof_logit: FloatArray, threshold: float) -> dict[str, dict[str, object]]:
    """Out-of-fold share of each session's original clips called drones at `threshold`."""
    out: dict[str, dict[str, object]] = {}
    orig = real.original
    called = 1.0 / (1.0 + np.exp(-oof_logit)) >= threshold
    for k, name in enumerate(real.sessions):
        sel = real.session[orig] == k
        lab = int(real.y[orig][sel][0])
        out[name] = {
            "label": lab,
            "clips": int(sel.sum()),
            "called_drone": round(float(called[sel].mean()), 3),
        }
    return out


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
    oof = best["_oof"]
    assert isinstance(oof, np.ndarray)
    y_orig = real.y[real.original]
    thr = round(shipped_threshold(oof, y_orig), 4)
    params["threshold"] = thr
    model = DetectorModel(model.center, model.scale, model.bias, model.coef, model.trees, params=params)
    model.save(args.out)
    model = DetectorModel.load(args.out)  # the metrics are those of the file as shipped (rounding)
    # Scored once, after the choice above.
    x_test, y_test = features_of_files(test_items)
    x_sim_test, y_sim_test = simulated_set(args.sim_per_class // 4, args.seed + 2)
    s_test = model.score(x_test)
    held = summary(s_test, y_test)
    held_pd = round(float(np.mean(s_test[y_test == 1] >= thr)), 4)
    held_fa = round(float(np.mean(s_test[y_test == 0] >= thr)), 4)
    sim = summary(model.score(x_sim_test), y_sim_test)
    metrics = {
        "heldout_real_auc": held["auc"],
        "heldout_real_pd_at_1pct_fa": held["pd_at_1pct_fa"],
        "heldout_real_threshold_1pct_fa": held["threshold_1pct_fa"],
        "heldout_real_pd_at_shipped": held_pd,
        "heldout_real_fa_at_shipped": held_fa,
        "heldout_real_positives": int(y_test.sum()),
        "heldout_real_negatives": int((y_test == 0).sum()),
        "heldout_sim_auc": sim["auc"],
        "heldout_sim_pd_at_1pct_fa": sim["pd_at_1pct_fa"],
        "logo_sessions": len(real.sessions),
        "logo_model": best["model"],
        "logo_real_auc": best["auc"],
        "logo_real_pd_at_1pct_fa": best["pd_at_1pct_fa"],
        "logo_real_pauc_5pct": best["pauc_5pct"],
        "logo_per_session_at_shipped": per_session(real, oof, thr),
        "shipped_threshold": thr,
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
