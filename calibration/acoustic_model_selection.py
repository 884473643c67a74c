"""Choosing the acoustic detector's model: which of {logistic alone, trees alone, logistic + trees},
at which depth and number of trees, by leave-one-session-out cross-validation *inside the training
split* (`acoustic_dataset.session_id`: each drone recording session, each ESC-50 fold), on the
partial ROC area of the pooled out-of-fold real clips.

Why whole sessions: a session shares the room, the microphone and the drone; a model scored on
another recording of a session it trained on is scored on the site it learnt, which is exactly what
does not carry to a mast elsewhere. The augmented copies of a clip stay with its session, and a
copy mixed with a clip of another session is left out of that session's fold too.
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


def session_folds(real: RealSet) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    """(fold of every real row = its session, rows × folds mask of rows to leave out of training)."""
    n_folds = len(real.sessions)
    out = np.zeros((real.y.size, n_folds), dtype=np.bool_)
    out[np.arange(real.y.size), real.session] = True
    mixed = real.session2 >= 0
    out[np.flatnonzero(mixed), real.session2[mixed]] = True
    return real.session, out


def sample_weights(n_real: int, n_sim: int) -> FloatArray:
    """Real clips (originals and augmented copies) carry REAL_WEIGHT of the fit, simulated ones the
    rest: the real thing dominates, the simulation teaches the physics beyond two drones in a room."""
    return np.concatenate([np.full(n_real, REAL_WEIGHT / n_real), np.full(n_sim, (1 - REAL_WEIGHT) / n_sim)])


CANDIDATE_STAGES = (100, 200, 400)


def candidates() -> list[Config]:
    """Logistic alone (the smoothest), boosted trees alone at depth 2 and 3, and trees on top of
    the logistic logit (depth 2), each at CANDIDATE_STAGES trees. Shallow and few on purpose: with
    a dozen sessions, a model that can memorise a room will."""
    n = max(CANDIDATE_STAGES)
    return [
        Config(True, None),
        Config(False, TreeParams(depth=2, n_trees=n)),
        Config(False, TreeParams(depth=3, n_trees=n)),
        Config(True, TreeParams(depth=2, n_trees=n)),
    ]


def cross_validate(real: RealSet, x_sim: FloatArray, y_sim: IntArray, seed: int) -> list[dict[str, object]]:
    """Pooled out-of-fold scores of the original real training clips for every candidate (and
    number of trees), leaving one session out at a time; the simulated clips are in every fold's
    training set."""
    folds, leave_out = session_folds(real)
    results: list[dict[str, object]] = []
    for cfg in candidates():
        stages = CANDIDATE_STAGES if cfg.trees is not None else (0,)
        oof = {m: np.zeros(real.y.size) for m in stages}
        for k in range(len(real.sessions)):
            tr = ~leave_out[:, k]
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
            row["_oof"] = s
            results.append(row)
            print(json.dumps({k: v for k, v in row.items() if not k.startswith("_")}), file=sys.stderr)
    return results
