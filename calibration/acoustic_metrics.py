"""Scores of the acoustic detector: ROC area, detection rate at a false-alarm rate, and the partial
ROC area used to choose the model.

Shared by model selection (cross-validation) and the final held-out report so that both measure
with exactly the same definitions as the metrics stored in the weights file.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int_]
PAUC_MAX_FA = 0.05


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


def partial_auc(scores: FloatArray, labels: IntArray, max_fa: float = PAUC_MAX_FA) -> float:
    """Mean detection rate over false-alarm rates 0..max_fa (normalised partial ROC area): the
    low-false-alarm end of the curve, where the node operates, less noisy than one point on it."""
    fas = np.linspace(max_fa / 20, max_fa, 20)
    return float(np.mean([pd_at_fa(scores, labels, fa)[0] for fa in fas]))


def summary(scores: FloatArray, labels: IntArray) -> dict[str, float]:
    """The four numbers reported per candidate and per held-out set (rounded as stored)."""
    pd, thr = pd_at_fa(scores, labels)
    return {
        "auc": round(roc_auc(scores, labels), 4),
        "pd_at_1pct_fa": round(pd, 4),
        "threshold_1pct_fa": round(thr, 4),
        "pauc_5pct": round(partial_auc(scores, labels), 4),
    }
