"""A learned static clutter map: range x azimuth cells where near-zero-Doppler points persist.

The Doppler band alone drops everything that does not move, but a real scene also has clutter that
moves a little (trees and bushes in the wind, flags, fans, rotating signs: Doppler of a few tenths
of a m/s) in fixed places, and it cannot keep a hovering drone. The map learns, over a window of
frames, the cells that hold a slow point in a large share of the frames. After that, points in
those cells are dropped when their Doppler is low; a drone flying through the same cells at speed
still passes, and outside the learned cells the Doppler band can be narrowed or switched off.

The map is calibration data: `save`/`load` a small .npz (the radar calibration of issue 7 writes it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cuas_node.drivers.radar.cluster import FloatArray

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class StaticMapGrid:
    """Cells of `range_bin_m` by `az_bin_deg` over 0..max_range_m and -90..90 degrees of azimuth.

    Defaults: about one range-resolution cell of the shipped profiles (0.45 m) and a few degrees,
    a fraction of the 14-degree beamwidth (angle estimates of a strong static point are far finer
    than the beam, and a coarse cell would blank a wide arc around every pole).
    """

    range_bin_m: float = 0.5
    az_bin_deg: float = 3.0
    max_range_m: float = 120.0

    @property
    def shape(self) -> tuple[int, int]:
        return math.ceil(self.max_range_m / self.range_bin_m), math.ceil(180.0 / self.az_bin_deg)

    def cells(
        self, points: NDArray[np.float32]
    ) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.bool_]]:
        """Range and azimuth indices of each point (x, y, z, ...) and whether it falls on the grid."""
        xyz = points[:, :3].astype(np.float64)
        rng = np.sqrt(np.einsum("ij,ij->i", xyz, xyz))
        az = np.degrees(np.arctan2(xyz[:, 0], xyz[:, 1]))
        ri = np.floor(rng / self.range_bin_m).astype(np.intp)
        ai = np.floor((az + 90.0) / self.az_bin_deg).astype(np.intp)
        n_r, n_a = self.shape
        inside = (ri >= 0) & (ri < n_r) & (ai >= 0) & (ai < n_a)
        return np.where(inside, ri, 0), np.where(inside, ai, 0), inside


class StaticClutterMap:
    """Learns persistent slow points, then drops slow points in their cells (a `ClutterFilter`).

    Learning: each frame, every cell that holds a point with |Doppler| < `learn_doppler_mps` gets
    one hit (however many points it holds). After `learn_frames` frames, a cell with hits in at
    least `min_occupancy` of them is static, and so are its neighbours within `dilate_cells`
    (a wall's points jitter across cell borders). A mover crossing a cell during learning occupies
    it for a few frames only, and its points are not slow, so it is not learned.

    Filtering: `keep()` drops points in static cells whose |Doppler| < `drop_doppler_mps`. While
    the map is learning (`learn_online`), `keep()` feeds each frame to it and keeps everything.
    """

    def __init__(
        self,
        grid: StaticMapGrid | None = None,
        *,
        learn_frames: int = 200,
        learn_doppler_mps: float = 0.3,
        drop_doppler_mps: float = 0.5,
        min_occupancy: float = 0.3,
        dilate_cells: int = 1,
        learn_online: bool = True,
    ) -> None:
        if learn_frames < 1:
            raise ValueError("learn_frames must be at least 1")
        if not 0.0 < min_occupancy <= 1.0:
            raise ValueError("min_occupancy must be in (0, 1]")
        self.grid = grid or StaticMapGrid()
        self.learn_frames = learn_frames
        self.learn_doppler_mps = learn_doppler_mps
        self.drop_doppler_mps = drop_doppler_mps
        self.min_occupancy = min_occupancy
        self.dilate_cells = dilate_cells
        self.learn_online = learn_online
        self.hits = np.zeros(self.grid.shape, dtype=np.uint32)
        self.frames = 0
        self.static = np.zeros(self.grid.shape, dtype=np.bool_)
        self.learned = False

    @property
    def static_cells(self) -> int:
        return int(self.static.sum())

    def observe(self, points: NDArray[np.float32]) -> None:
        """Count one frame's slow points; freeze the map when the learning window is full."""
        if self.learned:
            return
        pts = np.asarray(points, dtype=np.float32).reshape(-1, 4)
        slow = pts[np.abs(pts[:, 3]) < self.learn_doppler_mps]
        ri, ai, inside = self.grid.cells(slow)
        flat = np.unique(ri[inside] * self.hits.shape[1] + ai[inside])
        self.hits.reshape(-1)[flat] += 1
        self.frames += 1
        if self.frames >= self.learn_frames:
            self.finish()

    def finish(self) -> None:
        """Turn the hit counts into the static mask (also for a window cut short by the caller)."""
        core = self.hits >= max(1.0, self.min_occupancy * max(self.frames, 1))
        self.static = _dilate(core, self.dilate_cells)
        self.learned = True

    def keep(self, points: NDArray[np.float32], snr_db: FloatArray | None) -> NDArray[np.bool_]:
        if not self.learned:
            if self.learn_online:
                self.observe(points)
            return np.ones(points.shape[0], dtype=np.bool_)
        ri, ai, inside = self.grid.cells(points)
        in_static = inside & self.static[ri, ai]
        return ~(in_static & (np.abs(points[:, 3]) < self.drop_doppler_mps))

    def save(self, path: str | Path) -> None:
        """A small .npz (compressed mask and counts): calibration data for this radar and mount."""
        g = self.grid
        np.savez_compressed(
            Path(path),
            format_version=np.int32(FORMAT_VERSION),
            grid=np.array([g.range_bin_m, g.az_bin_deg, g.max_range_m]),
            thresholds=np.array([self.learn_doppler_mps, self.drop_doppler_mps, self.min_occupancy]),
            learning=np.array([self.learn_frames, self.frames, self.dilate_cells, int(self.learned)]),
            hits=self.hits,
            static=self.static,
        )

    @classmethod
    def load(cls, path: str | Path) -> StaticClutterMap:
        """Read a map written by `save`; a wrong or damaged file is a `ValueError` naming it."""
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                version = int(data["format_version"])
                if version != FORMAT_VERSION:
                    raise ValueError(f"format version {version}, this node reads {FORMAT_VERSION}")
                range_bin, az_bin, max_range = (float(v) for v in data["grid"])
                learn_dop, drop_dop, occupancy = (float(v) for v in data["thresholds"])
                learn_frames, frames, dilate, learned = (int(v) for v in data["learning"])
                grid = StaticMapGrid(range_bin, az_bin, max_range)
                out = cls(
                    grid,
                    learn_frames=learn_frames,
                    learn_doppler_mps=learn_dop,
                    drop_doppler_mps=drop_dop,
                    min_occupancy=occupancy,
                    dilate_cells=dilate,
                )
                hits, static = data["hits"], data["static"]
                if hits.shape != grid.shape or static.shape != grid.shape:
                    raise ValueError(f"map arrays {hits.shape} do not match the grid {grid.shape}")
                out.hits = hits.astype(np.uint32)
                out.static = static.astype(np.bool_)
                out.frames = frames
                out.learned = bool(learned)
                return out
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"static clutter map {path}: {exc}") from exc


def _dilate(mask: NDArray[np.bool_], cells: int) -> NDArray[np.bool_]:
    """Grow `mask` by `cells` in range and azimuth (a square structuring element)."""
    if cells <= 0:
        return mask.copy()
    out = mask.copy()
    n_r, n_a = mask.shape
    for dr in range(-cells, cells + 1):
        for da in range(-cells, cells + 1):
            src = mask[max(0, -dr) : n_r - max(0, dr), max(0, -da) : n_a - max(0, da)]
            out[max(0, dr) : n_r - max(0, -dr), max(0, da) : n_a - max(0, -da)] |= src
    return out
