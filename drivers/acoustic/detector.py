"""The drone detector: physics features → a small model → drone likelihood in [0, 1].

The model is the sum of two logits: a logistic regression on robustly standardised features and
their squares (smooth: it extrapolates gracefully to sounds unlike the training data), and a few
hundred depth-limited boosted decision trees fitted to what the linear part leaves over (they
capture interactions such as "a strong comb *and* steady needle-sharp lines = a motor, not a
multirotor"). Either part may be absent. Inference is a matrix product and a handful of gathers
per tree level, far below the cost of the features.

The weights are package data (`detector_weights.json`, written by `python -m
cuas_node.calibration.acoustic_train`): feature names, normalisation, coefficients, trees and the metrics of
the run that produced them. Loading checks the feature names so that a features.py change without
retraining fails loudly instead of silently scoring garbage.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cuas_node.drivers.acoustic.background import Background, weights_digest
from cuas_node.drivers.acoustic.features import FEATURE_NAMES, extract

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
DEFAULT_WEIGHTS_PATH = Path(__file__).with_name("detector_weights.json")
SILENCE_DBFS = -85.0  # below this there is nothing to classify: the int16 noise floor is near −100
Z_CLIP = 6.0  # standardised features are clipped here: one wild feature must not decide alone


def expand(z: FloatArray) -> FloatArray:
    """Standardised features and their (clipped) squares: lets a linear model say "near the
    typical value" (e.g. band balance) as well as "more is more drone-like"."""
    zc = np.clip(z, -Z_CLIP, Z_CLIP)
    return np.concatenate([zc, zc**2 / 4.0], axis=-1)


@dataclass(frozen=True, slots=True, eq=False)
class Trees:
    """Complete binary trees of one depth in heap order: node i splits on `feature[t, i]` at
    `threshold[t, i]` (go right when greater) into 2i+1 / 2i+2; `leaf[t, j]` is the logit
    increment of leaf j (left to right)."""

    feature: IntArray  # (n_trees, 2^depth − 1)
    threshold: FloatArray  # (n_trees, 2^depth − 1)
    leaf: FloatArray  # (n_trees, 2^depth)

    @property
    def depth(self) -> int:
        return round(math.log2(self.leaf.shape[1]))

    def logit(self, x: FloatArray) -> FloatArray:
        """Sum of the trees' leaf values for rows x (N, n_features) → (N,)."""
        n_trees = self.feature.shape[0]
        if n_trees == 0:
            return np.zeros(x.shape[0])
        t_idx = np.arange(n_trees)[None, :]
        rows = np.arange(x.shape[0])[:, None]
        node = np.zeros((x.shape[0], n_trees), dtype=np.intp)
        for _ in range(self.depth):
            f = self.feature[t_idx, node]
            go_right = x[rows, f] > self.threshold[t_idx, node]
            node = 2 * node + 1 + go_right
        leaf = node - (self.leaf.shape[1] - 1)
        return np.asarray(self.leaf[t_idx, leaf].sum(axis=1), dtype=np.float64)


@dataclass(frozen=True, slots=True, eq=False)
class DetectorModel:
    """logit = bias + expand((x − center) / scale) · coef + trees(x)."""

    center: FloatArray
    scale: FloatArray
    bias: float
    coef: FloatArray  # 2·n_features (features, squares); zeros when there is no linear part
    trees: Trees
    feature_names: tuple[str, ...] = FEATURE_NAMES
    metrics: dict[str, Any] | None = None
    params: dict[str, Any] | None = None

    def logit(self, x: npt.ArrayLike) -> FloatArray:
        rows = np.atleast_2d(np.asarray(x, dtype=np.float64))
        z = (rows - self.center) / self.scale
        out = expand(z) @ self.coef + self.bias + self.trees.logit(rows)
        return np.asarray(out, dtype=np.float64)

    def score(self, x: npt.ArrayLike) -> FloatArray:
        """Drone likelihood for feature rows (n_features,) → (1,) or (N, n_features) → (N,)."""
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(self.logit(x), -50, 50))), dtype=np.float64)

    def save(self, path: Path, metrics: dict[str, Any] | None = None) -> None:
        def r(a: FloatArray) -> list[Any]:
            out: list[Any] = np.round(np.asarray(a, dtype=np.float64), 6).tolist()
            return out

        doc = {
            "model": "logistic-quadratic + boosted-trees",
            "feature_names": list(self.feature_names),
            "center": r(self.center),
            "scale": r(self.scale),
            "bias": round(self.bias, 6),
            "coef": r(self.coef),
            "trees": {
                "feature": self.trees.feature.tolist(),
                "threshold": self.trees.threshold.tolist(),  # exact: a rounded split moves clips
                "leaf": r(self.trees.leaf),
            },
            "params": self.params or {},
            "metrics": metrics or {},
        }
        path.write_text(json.dumps(doc, separators=(",", ":")) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path = DEFAULT_WEIGHTS_PATH) -> DetectorModel:
        doc = json.loads(path.read_text(encoding="utf-8"))
        names = tuple(doc["feature_names"])
        if names != FEATURE_NAMES:
            raise ValueError(
                f"{path}: trained on other features; retrain (python -m cuas_node.calibration.acoustic_train)"
            )
        tr = doc["trees"]
        n_nodes = len(tr["feature"][0]) if tr["feature"] else 1
        trees = Trees(
            feature=np.array(tr["feature"], dtype=np.intp).reshape(-1, n_nodes),
            threshold=np.array(tr["threshold"], dtype=np.float64).reshape(-1, n_nodes),
            leaf=np.array(tr["leaf"], dtype=np.float64).reshape(-1, n_nodes + 1),
        )
        return cls(
            center=np.array(doc["center"], dtype=np.float64),
            scale=np.array(doc["scale"], dtype=np.float64),
            bias=float(doc["bias"]),
            coef=np.array(doc["coef"], dtype=np.float64),
            trees=trees,
            feature_names=names,
            metrics=doc.get("metrics"),
            params=doc.get("params"),
        )


@dataclass(frozen=True, slots=True)
class Detection:
    drone_likelihood: float
    f0_hz: float | None
    level_dbfs: float
    detected: bool = False  # drone_likelihood ≥ the detector's threshold: the node's decision
    white_db: FloatArray | None = field(default=None, repr=False, compare=False)  # for backgrounds
    # The array placed the comb at one of its capsules (`nearfield`, the distance evidence): an
    # insect at the array, not the site's far sound (a site background sets such windows aside).
    near: bool = field(default=False, compare=False)


DEFAULT_THRESHOLD = 0.5  # when the weights file names none
DEFAULT_FALSE_ALARMS_PER_HOUR = 1.0


def shipped_threshold(model: DetectorModel) -> float:
    """The weights file's own threshold: the likelihood that 5 % of real not-drone clips exceeded
    when their whole recording session was left out of the fit (docs/acoustic.md)."""
    return float((model.params or {}).get("threshold", DEFAULT_THRESHOLD))


class DroneDetector:
    """Mono signal (±1 full scale) → `Detection`, including the decision.

    The one decision path of the node, `cuas-node acoustic score` and `decode acoustic`: the
    threshold is an explicit one (config `detection_threshold`), else the site background's for
    the target false-alarm rate, else the weights file's shipped one. With a background, its
    standing lines are subtracted before the comb search (drivers/acoustic/background.py)."""

    def __init__(
        self,
        model: DetectorModel | None = None,
        *,
        threshold: float | None = None,
        background: Background | None = None,
        false_alarms_per_hour: float = DEFAULT_FALSE_ALARMS_PER_HOUR,
    ) -> None:
        self.model = model or load_default()
        self.background = background
        if threshold is not None:
            self.threshold = float(threshold)
        elif background is not None:
            self.threshold = background.threshold(false_alarms_per_hour)
        else:
            self.threshold = shipped_threshold(self.model)

    def decide(self, likelihood: float) -> bool:
        """The decision: every path (node, decode, score) goes through here."""
        return likelihood >= self.threshold

    def detect(
        self, x: npt.ArrayLike, sample_rate: int, also_suppress_db: FloatArray | None = None
    ) -> Detection:
        """`also_suppress_db`: lines to take off besides the site's (`features.comb_lines_db`: a
        comb the array placed at one of its capsules, to hear what else the beam holds)."""
        suppress = None if self.background is None else self.background.suppress_db
        if also_suppress_db is not None:
            if suppress is not None and suppress.size == also_suppress_db.size:  # (else see `extract`)
                # Both measured from the same floor: a site line under the comb's is taken off once.
                suppress = np.maximum(suppress, also_suppress_db)
            else:
                suppress = also_suppress_db
        feats = extract(x, sample_rate, suppress)
        if not math.isfinite(feats.level_dbfs) or feats.level_dbfs < SILENCE_DBFS:
            return Detection(0.0, None, feats.level_dbfs, False, feats.white_db)
        p = float(self.model.score(feats.values)[0])
        return Detection(p, feats.f0_hz, feats.level_dbfs, self.decide(p), feats.white_db)

    def with_evidence(self, d: Detection, logit_delta: float) -> Detection:
        """`d` with its logit moved by other evidence (the array's coherence), decided again by
        the same threshold. Silence stays silence."""
        if d.drone_likelihood <= 0.0 or logit_delta == 0.0:
            return d
        p = min(max(d.drone_likelihood, 1e-22), 1.0 - 1e-16)
        q = 1.0 / (1.0 + math.exp(-float(np.clip(math.log(p / (1.0 - p)) + logit_delta, -50, 50))))
        return Detection(q, d.f0_hz, d.level_dbfs, self.decide(q), d.white_db)

    def logit(self, x: npt.ArrayLike, sample_rate: int) -> float:
        """The model's logit of one window, scored as `detect` does (−50 for silence)."""
        p = self.detect(x, sample_rate).drone_likelihood
        p = min(max(p, 1e-22), 1.0 - 1e-16)
        return math.log(p / (1.0 - p))


def configured_detector(
    background_file: str | Path | None = None,
    threshold: float | None = None,
    false_alarms_per_hour: float = DEFAULT_FALSE_ALARMS_PER_HOUR,
    model: DetectorModel | None = None,
) -> DroneDetector:
    """The detector as the config describes it (driver factory, `acoustic score`, `decode`): the
    shipped weights, the site background if any (it must have been learnt with these weights)."""
    background = None
    if background_file is not None:
        digest = None if model is not None else weights_digest(DEFAULT_WEIGHTS_PATH)
        background = Background.load(Path(background_file), digest)
    return DroneDetector(
        model, threshold=threshold, background=background, false_alarms_per_hour=false_alarms_per_hour
    )


_DEFAULT: DetectorModel | None = None


def load_default() -> DetectorModel:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = DetectorModel.load(DEFAULT_WEIGHTS_PATH)
    return _DEFAULT
