"""The drone detector: physics features → a small logistic model → drone likelihood in [0, 1].

The weights are package data (`detector_weights.json`, written by `python -m
calibration.acoustic_train`): feature names, standardisation, coefficients and the held-out metrics
of the run that produced them. Loading checks the feature names so that a features.py change
without retraining fails loudly instead of silently scoring garbage.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from drivers.acoustic.features import FEATURE_NAMES, extract

FloatArray = npt.NDArray[np.float64]
DEFAULT_WEIGHTS_PATH = Path(__file__).with_name("detector_weights.json")
SILENCE_DBFS = -85.0  # below this there is nothing to classify: the int16 noise floor is near −100


@dataclass(frozen=True, slots=True, eq=False)
class LogisticDetector:
    mean: FloatArray
    std: FloatArray
    bias: float
    coef: FloatArray
    feature_names: tuple[str, ...] = FEATURE_NAMES
    metrics: dict[str, Any] | None = None

    @staticmethod
    def expand(z: FloatArray) -> FloatArray:
        """Standardised features and their (clipped) squares: lets a linear model say "near
        the typical value" (e.g. band balance) as well as "more is more drone-like"."""
        zc = np.clip(z, -6.0, 6.0)
        return np.concatenate([zc, zc**2 / 4.0], axis=-1)

    def logit(self, x: npt.ArrayLike) -> FloatArray:
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.std
        return np.asarray(self.expand(z) @ self.coef + self.bias, dtype=np.float64)

    def score(self, x: npt.ArrayLike) -> FloatArray:
        """Drone likelihood for feature rows (..., n_features)."""
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(self.logit(x), -50, 50))), dtype=np.float64)

    def save(self, path: Path, metrics: dict[str, Any] | None = None) -> None:
        doc = {
            "model": "logistic-quadratic",
            "feature_names": list(self.feature_names),
            "mean": [round(float(v), 6) for v in self.mean],
            "std": [round(float(v), 6) for v in self.std],
            "bias": round(self.bias, 6),
            "coef": [round(float(v), 6) for v in self.coef],
            "metrics": metrics or {},
        }
        path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path = DEFAULT_WEIGHTS_PATH) -> LogisticDetector:
        doc = json.loads(path.read_text(encoding="utf-8"))
        names = tuple(doc["feature_names"])
        if names != FEATURE_NAMES:
            raise ValueError(
                f"{path}: trained on other features; retrain (python -m calibration.acoustic_train)"
            )
        return cls(
            mean=np.array(doc["mean"], dtype=np.float64),
            std=np.array(doc["std"], dtype=np.float64),
            bias=float(doc["bias"]),
            coef=np.array(doc["coef"], dtype=np.float64),
            feature_names=names,
            metrics=doc.get("metrics"),
        )


@dataclass(frozen=True, slots=True)
class Detection:
    drone_likelihood: float
    f0_hz: float | None
    level_dbfs: float


class DroneDetector:
    """Mono signal (±1 full scale) → `Detection`."""

    def __init__(self, model: LogisticDetector | None = None) -> None:
        self.model = model or load_default()

    def detect(self, x: npt.ArrayLike, sample_rate: int) -> Detection:
        feats = extract(x, sample_rate)
        if not math.isfinite(feats.level_dbfs) or feats.level_dbfs < SILENCE_DBFS:
            return Detection(0.0, None, feats.level_dbfs)
        p = float(self.model.score(feats.values))
        return Detection(p, feats.f0_hz, feats.level_dbfs)


_DEFAULT: LogisticDetector | None = None


def load_default() -> LogisticDetector:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = LogisticDetector.load(DEFAULT_WEIGHTS_PATH)
    return _DEFAULT
