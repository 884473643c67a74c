"""Choosing the acoustic detector's model: which of {logistic alone, trees alone, logistic + trees},
at which depth and number of trees, by 5-fold cross-validation *inside the training split*, grouped
by recording, on the partial ROC area of the pooled out-of-fold real clips.

Why grouped folds: the augmented copies of a recording must stay in its fold, or the validation
scores a model on noisy copies of its own training clips and rewards memorising rooms.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import numpy.typing as npt

from cuas_node.calibration.acoustic_dataset import RealSet
from cuas_node.calibration.acoustic_metrics import summary
from cuas_node.calibration.acoustic_model_fit import Config, TreeParams, fit_model

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int_]
REAL_WEIGHT = 0.7  # share of the fit's weight on real clips (originals and their augmented copies)
N_FOLDS = 5


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
