"""A site's fixed reflectors, learnt once with nothing flying: where one radar's plots recur.

A mast, a roof edge or a tree in the wind gives a plot in some scans and not in others, at one
place. To the track score such a spot is a target of low detection probability: its hits beat the
uniform clutter density by the whole likelihood of a point, and its tracks confirm (the
benchmark's `--reflectors`: 20-60 false confirmed tracks in 30 s). Nothing a track does on its own
tells a reflector from a drone hovering there, so the evidence comes from the site itself, recorded
at installation (`cuas-node calibrate radar-reflectors`, docs/calibration.md): each recurring spot
becomes a Gaussian of the plots it gave, with their rate per scan. Fusion then prices a plot
against the clutter density λ(z) = λ_uniform + Σ_k rate_k · N(z; μ_k, Σ_k) instead of the uniform
one alone: a plot on a reflector is as well explained by the reflector as by any track sitting
there, so it adds nothing to that track's score, while a plot several of the radar's sigmas away
is priced almost as before. A drone inside a reflector's own scatter, where no rule could tell the
two apart, waits until it leaves it (or for another sensor); near it, by the reflector's tails
(docs/calibration.md has the delays).

Only the map's use lives here (`SiteReflectors`: the density, and its plain-dict form); it is
learnt by `cuas_node.calibration.reflector_learning` and read from the file the calibration
writes by the composition root (`fusion_setup.read_reflectors`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from cuas_node.fusion.models import radar_innovation

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]

FORMAT = "cuas-node radar-reflectors 1"
_REACH_SIGMAS = 8.0  # in range: a reflector further from a plot adds nothing to its density


class SiteReflectors:
    """The fixed reflectors one radar sees, in its own measurement space (range m, azimuth rad,
    elevation rad[, range-rate m/s]). `mean` (K, D), `cov` (K, D, D), `rate` (K,) plots per scan.
    A scan of fewer rows than the map (a 3-D detection against a 4-D map) uses the marginal."""

    def __init__(
        self, mean: FloatArray, cov: FloatArray, rate: FloatArray, sensor_id: str | None = None
    ) -> None:
        self.sensor_id = sensor_id  # the radar it was learnt for, when the file says
        self.mean = np.asarray(mean, dtype=np.float64)
        self.cov = np.asarray(cov, dtype=np.float64)
        self.rate = np.asarray(rate, dtype=np.float64)
        k = self.rate.size
        if self.mean.ndim != 2 or self.mean.shape[0] != k or self.dim not in (3, 4):
            raise ValueError("every reflector's 'mean' has 3 or 4 rows, the same for all")
        if self.cov.shape != (k, self.dim, self.dim):
            raise ValueError("every reflector's 'cov' is D × D, D the rows of its 'mean'")
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.cov))):
            raise ValueError("a reflector's 'mean' and 'cov' are finite numbers")
        if not np.all(np.isfinite(self.rate) & (self.rate >= 0.0)):
            raise ValueError("a reflector's 'rate_per_scan' is a finite number >= 0")
        self._by_dim: dict[int, tuple[FloatArray, FloatArray]] = {}
        for d in (3, self.dim):
            c = self.cov[:, :d, :d]
            sign, logdet = np.linalg.slogdet(2.0 * math.pi * c)
            if np.any(sign <= 0):
                raise ValueError("a reflector's covariance is not positive definite")
            inv = np.asarray(np.linalg.inv(c), dtype=np.float64)
            self._by_dim[d] = (inv, np.log(np.maximum(self.rate, 1e-300)) - 0.5 * logdet)
        self._order = np.argsort(self.mean[:, 0], kind="stable")
        self._ranges = self.mean[self._order, 0]
        self._reach = _REACH_SIGMAS * float(np.sqrt(self.cov[:, 0, 0].max())) if k else 0.0

    @property
    def dim(self) -> int:
        return int(self.mean.shape[1])

    def __len__(self) -> int:
        return int(self.rate.size)

    def density(self, z: FloatArray) -> FloatArray:
        """The reflectors' plot density at each measurement (M, D): what they add to λ there.
        Only the pairs within `_REACH_SIGMAS` in range are evaluated (found by bisection on the
        reflectors sorted by range): a scan of 100 plots against 200 reflectors took 1.2 ms as a
        full (M, K) product, and a reflector further off adds under e^-32 of its peak."""
        m = z.shape[0]
        if not len(self) or m == 0:
            return np.zeros(m)
        lo = np.searchsorted(self._ranges, z[:, 0] - self._reach, "left")
        counts = np.searchsorted(self._ranges, z[:, 0] + self._reach, "right") - lo
        if not counts.any():
            return np.zeros(m)
        plot = np.repeat(np.arange(m), counts)
        first = np.repeat(lo - np.cumsum(counts) + counts, counts)  # pair p → sorted position p + first
        k = self._order[np.arange(plot.size) + first]
        d = min(z.shape[1], self.dim)
        inv, log_scale = self._by_dim[d]
        nu = radar_innovation(z[plot, :d], self.mean[k, :d])
        d2 = np.einsum("pi,pij,pj->p", nu, inv[k], nu)
        return np.bincount(plot, weights=np.exp(log_scale[k] - 0.5 * d2), minlength=m).astype(np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "dim": self.dim,
            **({} if self.sensor_id is None else {"sensor_id": self.sensor_id}),
            "reflectors": [
                {"mean": m.tolist(), "cov": c.tolist(), "rate_per_scan": float(r)}
                for m, c, r in zip(self.mean, self.cov, self.rate, strict=True)
            ],
        }

    @classmethod
    def from_dict(cls, data: Any) -> SiteReflectors:
        """From `to_dict`'s form; ValueError naming what is wrong."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a reflector map (its 'format' must be {FORMAT!r})")
        spots = data.get("reflectors")
        if not isinstance(spots, list):
            raise ValueError("'reflectors' must be a list")
        try:
            mean = np.array([s["mean"] for s in spots], dtype=np.float64)
            cov = np.array([s["cov"] for s in spots], dtype=np.float64)
            rate = np.array([s["rate_per_scan"] for s in spots], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a reflector needs 'mean', 'cov' and 'rate_per_scan': {exc}") from None
        dim = data.get("dim", mean.shape[1] if mean.ndim == 2 and spots else 3)
        if (
            not isinstance(dim, int)
            or isinstance(dim, bool)
            or (spots and (mean.ndim != 2 or mean.shape[1] != dim))
        ):
            raise ValueError(f"'dim' must be 3 or 4, the rows of every reflector's 'mean' (got {dim!r})")
        if np.any(rate > 1.0):
            raise ValueError("a reflector's 'rate_per_scan' is a share of scans: at most 1")
        sensor_id = data.get("sensor_id")
        if sensor_id is not None and not isinstance(sensor_id, str):
            raise ValueError("'sensor_id' must be a string")
        if not spots:
            return cls(np.zeros((0, dim)), np.zeros((0, dim, dim)), np.zeros(0), sensor_id)
        return cls(mean, cov, rate, sensor_id)
