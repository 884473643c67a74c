"""Fitting the acoustic detector's model (drivers/acoustic/detector.py): a logistic regression on
robustly standardised features and their squares, and gradient-boosted depth-limited trees fitted
on top of its logit, all in numpy.

Why hand-written rather than a library: the node's runtime must not depend on a machine-learning
package, and the fit must be seeded and bit-for-bit deterministic so that retraining reproduces
the shipped weights file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cuas_node.drivers.acoustic.detector import DetectorModel, Trees, expand

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int_]
L2 = 2.0


def robust_scaling(x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Median and IQR/1.349 per feature (the std for a normal distribution, but not pulled by the
    few wild clips: silence, clicks); the std where the IQR is degenerate."""
    center = np.median(x, axis=0)
    q75, q25 = np.percentile(x, [75, 25], axis=0)
    scale = (q75 - q25) / 1.349
    std = x.std(axis=0)
    scale = np.where(scale > 1e-6 * (std + 1e-12), scale, std)
    return center, np.where(scale > 0, scale, 1.0)


def fit_logistic(z: FloatArray, y: IntArray, w: FloatArray, l2: float) -> FloatArray:
    """L2-regularised weighted logistic regression by Newton's method → [bias, coef...]."""
    a = np.column_stack([np.ones(z.shape[0]), z])
    coef = np.zeros(a.shape[1])
    reg = np.full(coef.size, l2)
    reg[0] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ coef, -50, 50)))
        grad = a.T @ (w * (p - y)) + reg * coef
        hess = (a * (w * p * (1 - p))[:, None]).T @ a + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        coef -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return coef


@dataclass(frozen=True)
class TreeParams:
    """Hyper-parameters of the boosted trees (the candidates vary depth and n_trees only)."""

    depth: int = 2
    n_trees: int = 300
    learning_rate: float = 0.05
    l2: float = 1.0
    min_hessian: float = 2.0
    subsample: float = 0.8
    colsample: float = 0.8
    n_bins: int = 32


class Booster:
    """Histogram gradient boosting of complete depth-d trees on the logistic loss, in numpy.
    Thresholds are training quantiles of each feature; a node that cannot split sends everything
    left (threshold +1e30) and its two children get the same leaf value."""

    def __init__(self, x: FloatArray, params: TreeParams) -> None:
        self.p = params
        qs = np.linspace(0.0, 1.0, params.n_bins + 1)[1:-1]
        self.edges = [np.unique(np.quantile(x[:, f], qs)) for f in range(x.shape[1])]
        self.n_codes = max(e.size for e in self.edges) + 1
        self.codes = np.column_stack(
            [np.searchsorted(e, x[:, f], side="left") for f, e in enumerate(self.edges)]
        )
        self.valid = np.zeros((x.shape[1], self.n_codes - 1), dtype=np.bool_)
        for f, e in enumerate(self.edges):
            self.valid[f, : e.size] = True

    def _split(
        self, idx: IntArray, g: FloatArray, h: FloatArray, cols: npt.NDArray[np.bool_]
    ) -> tuple[int, int]:
        n_f = self.codes.shape[1]
        flat = (self.codes[idx] + np.arange(n_f)[None, :] * self.n_codes).ravel()
        size = n_f * self.n_codes
        gs = np.bincount(flat, np.repeat(g[idx], n_f), size).reshape(n_f, self.n_codes)
        hs = np.bincount(flat, np.repeat(h[idx], n_f), size).reshape(n_f, self.n_codes)
        gl, hl = np.cumsum(gs, axis=1)[:, :-1], np.cumsum(hs, axis=1)[:, :-1]
        gt, ht = gs.sum(axis=1, keepdims=True), hs.sum(axis=1, keepdims=True)
        gr, hr = gt - gl, ht - hl
        lam = self.p.l2
        gain = gl**2 / (hl + lam) + gr**2 / (hr + lam) - gt**2 / (ht + lam)
        ok = self.valid & cols[:, None] & (hl >= self.p.min_hessian) & (hr >= self.p.min_hessian)
        gain = np.where(ok, gain, -np.inf)
        best = int(np.argmax(gain))
        if not np.isfinite(gain.flat[best]) or gain.flat[best] <= 1e-12:
            return -1, -1
        return divmod(best, self.n_codes - 1)

    def fit(
        self, y: IntArray, w: FloatArray, base: FloatArray, rng: np.random.Generator, stages: Sequence[int]
    ) -> tuple[Trees, list[FloatArray]]:
        """Boost from the logit `base`; returns the trees and the training logits at `stages`."""
        p = self.p
        n, n_f = self.codes.shape
        n_int, n_leaf = 2**p.depth - 1, 2**p.depth
        feat = np.zeros((p.n_trees, n_int), dtype=np.intp)
        thr = np.full((p.n_trees, n_int), 1e30)
        leaf = np.zeros((p.n_trees, n_leaf))
        logit = base.copy()
        staged = []
        for t in range(p.n_trees):
            prob = 1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50)))
            g, h = w * (prob - y), w * prob * (1 - prob)
            rows = np.asarray(rng.random(n) < p.subsample, dtype=np.bool_)
            cols = np.asarray(rng.random(n_f) < p.colsample, dtype=np.bool_)
            if not cols.any():
                cols[rng.integers(n_f)] = True
            node = np.zeros(n, dtype=np.intp)
            for i in range(n_int):
                idx = np.flatnonzero((node == i) & rows)
                f, c = self._split(idx, g, h, cols) if idx.size else (-1, -1)
                if f >= 0:
                    feat[t, i], thr[t, i] = f, self.edges[f][c]
                mine = node == i
                right = mine & (self.codes[:, max(f, 0)] > c) if f >= 0 else np.zeros(n, dtype=np.bool_)
                node = np.where(mine, 2 * i + 1 + right, node)
            node -= n_int
            in_rows = rows.astype(np.float64)
            gsum = np.bincount(node, g * in_rows, n_leaf)
            hsum = np.bincount(node, h * in_rows, n_leaf)
            leaf[t] = -p.learning_rate * gsum / (hsum + p.l2)
            logit += leaf[t][node]
            if t + 1 in stages:
                staged.append(logit.copy())
        return Trees(feat, thr, leaf), staged


@dataclass(frozen=True)
class Config:
    """One candidate model: the logistic part on or off, and trees on top or none."""

    linear: bool
    trees: TreeParams | None

    @property
    def name(self) -> str:
        parts = ["logistic"] if self.linear else []
        if self.trees is not None:
            parts.append(f"trees(depth={self.trees.depth}, n={self.trees.n_trees})")
        return " + ".join(parts)


def fit_model(
    x: FloatArray, y: IntArray, w: FloatArray, cfg: Config, seed: int, stages: Sequence[int] = ()
) -> tuple[DetectorModel, list[DetectorModel]]:
    """Fit one configuration; also returns the models truncated after `stages` trees (for CV)."""
    center, scale = robust_scaling(x)
    w = w / w.mean()
    n_exp = 2 * x.shape[1]
    if cfg.linear:
        coef = fit_logistic(expand((x - center) / scale), y, w, L2)
    else:
        prior = float(np.sum(w * y) / np.sum(w))
        coef = np.concatenate([[math.log(prior / (1 - prior))], np.zeros(n_exp)])
    empty = Trees(np.zeros((0, 1), np.intp), np.zeros((0, 1)), np.zeros((0, 2)))
    linear = DetectorModel(center, scale, float(coef[0]), coef[1:], empty)
    if cfg.trees is None:
        return linear, [linear for _ in stages]
    booster = Booster(x, cfg.trees)
    trees, _ = booster.fit(y, w, linear.logit(x), np.random.default_rng(seed), stages)

    def cut(m: int) -> DetectorModel:
        t = Trees(trees.feature[:m], trees.threshold[:m], trees.leaf[:m])
        return DetectorModel(center, scale, linear.bias, linear.coef, t)

    return cut(trees.feature.shape[0]), [cut(m) for m in stages]
