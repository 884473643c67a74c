"""Radar calibration: range bias from a corner reflector, and the site's static clutter map.

Both need the radar's raw point cloud, not detections: a corner reflector and the site's walls and
trees do not move, so the Doppler band drops them before clustering. The input is therefore a
capture of the radar's data UART (the TI frames, as `calibrate capture --raw-dir` writes them or as
`cuas-node decode ti-mmwave` reads them), decoded with the node's own frame parser.

Range bias: a corner reflector on a pole at a range measured with a tape or a survey GNSS (the
radar's cable delays and the chirp's processing leave a bias of some tens of centimetres). Each
frame's strongest static point near the known range (and bearing) is the reflector; the bias is
the robust mean of their range error. Refused when the reflector is seen in too few frames or its
ranges scatter more than a range cell.

Clutter map: `cuas_node.drivers.radar.static_map.StaticClutterMap` learnt offline over the whole
recording of the empty site (no target may fly or hover during it). The report says how many
cells are static and how many slow points the map removes on the same recording, and warns when
moving points were frequent (someone walked through).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import least_squares

from cuas_node.drivers.radar.static_map import StaticClutterMap, StaticMapGrid
from cuas_node.drivers.radar.ti_frames import TiFrame, TiFrameParser

FloatArray = npt.NDArray[np.float64]


def read_ti_capture(path: Path) -> list[TiFrame]:
    """Every frame of a raw data-UART capture."""
    parser = TiFrameParser()
    data = path.read_bytes()
    frames: list[TiFrame] = []
    for k in range(0, len(data), 1 << 16):
        frames.extend(parser.feed(data[k : k + (1 << 16)]))
    if not frames:
        raise ValueError(f"{path}: no TI mmWave frames found (is it a capture of the data UART?)")
    return frames


@dataclass(frozen=True, slots=True)
class RangeBiasOptions:
    gate_m: float = 2.0
    az_gate_deg: float = 8.0
    max_doppler_mps: float = 0.3
    min_frames: int = 20
    min_fraction: float = 0.5
    max_spread_m: float = 0.5


@dataclass
class RangeBiasResult:
    true_range_m: float
    bias_m: float
    sigma_m: float
    spread_m: float
    n_frames: int
    n_seen: int
    refusals: list[str]
    plot: dict[str, FloatArray] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return not self.refusals

    def report(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "refusals": list(self.refusals),
            "result": {"range_bias_m": round(self.bias_m, 4), "true_range_m": self.true_range_m},
            "sigma": {"range_bias_m": round(self.sigma_m, 5)},
            "residuals": {
                "spread_m": round(self.spread_m, 4),
                "n_frames": self.n_frames,
                "n_seen": self.n_seen,
            },
        }


def range_bias(
    frames: Sequence[TiFrame],
    true_range_m: float,
    az_deg: float | None = None,
    options: RangeBiasOptions | None = None,
) -> RangeBiasResult:
    """Measured minus true range of a static reflector (the radar reports range_true + bias)."""
    opt = options or RangeBiasOptions()
    ranges: list[float] = []
    for frame in frames:
        pts = np.asarray(frame.points, dtype=np.float64)
        if pts.shape[0] == 0:
            continue
        r = np.linalg.norm(pts[:, :3], axis=1)
        ok = (np.abs(r - true_range_m) < opt.gate_m) & (np.abs(pts[:, 3]) < opt.max_doppler_mps)
        if az_deg is not None:
            az = np.degrees(np.arctan2(pts[:, 0], pts[:, 1]))
            ok &= np.abs((az - az_deg + 180.0) % 360.0 - 180.0) < opt.az_gate_deg
        if not ok.any():
            continue
        snr = frame.snr_db if frame.snr_db is not None else np.zeros(pts.shape[0])
        idx = np.flatnonzero(ok)
        ranges.append(float(r[idx[int(np.argmax(np.asarray(snr)[idx]))]]))
    err = np.array(ranges) - true_range_m
    refusals: list[str] = []
    n = int(err.size)
    if n < max(opt.min_frames, opt.min_fraction * len(frames)):
        refusals.append(
            f"the reflector was seen in {n} of {len(frames)} frames: check its range and bearing "
            "(--az-deg), that it faces the radar, and that nothing else static is as close"
        )
    if n == 0:
        return RangeBiasResult(true_range_m, math.nan, math.inf, math.nan, len(frames), 0, refusals)
    start = float(np.median(err))
    sol = least_squares(lambda b: err - b[0], [start], loss="soft_l1", f_scale=0.1)
    bias = float(sol.x[0])
    spread = 1.4826 * float(np.median(np.abs(err - bias)))
    sigma = spread / math.sqrt(n)
    if spread > opt.max_spread_m:
        refusals.append(
            f"the reflector's ranges scatter by {spread:.2f} m (limit {opt.max_spread_m}): another object "
            "is near it, or it moves in the wind"
        )
    return RangeBiasResult(
        true_range_m,
        bias,
        sigma,
        spread,
        len(frames),
        n,
        refusals,
        {"error_m": err, "index": np.arange(n, dtype=np.float64)},
    )


@dataclass
class ClutterResult:
    static_cells: int
    grid_cells: int
    frames: int
    slow_points: int
    slow_points_dropped: int
    moving_points_per_frame: float
    warnings: list[str]
    static_map: StaticClutterMap

    def report(self) -> dict[str, Any]:
        g = self.static_map.grid
        return {
            "accepted": True,
            "warnings": list(self.warnings),
            "result": {
                "static_cells": self.static_cells,
                "grid_cells": self.grid_cells,
                "frames": self.frames,
                "grid": {
                    "range_bin_m": g.range_bin_m,
                    "az_bin_deg": g.az_bin_deg,
                    "max_range_m": g.max_range_m,
                },
            },
            "residuals": {
                "slow_points": self.slow_points,
                "slow_points_dropped": self.slow_points_dropped,
                "slow_points_kept_fraction": round(
                    1.0 - self.slow_points_dropped / max(self.slow_points, 1), 4
                ),
                "moving_points_per_frame": round(self.moving_points_per_frame, 3),
            },
        }


def learn_clutter(
    frames: Sequence[TiFrame],
    grid: StaticMapGrid | None = None,
    min_occupancy: float = 0.3,
    moving_doppler_mps: float = 0.5,
) -> ClutterResult:
    """Learn the map over every frame of an empty-site recording and measure what it removes."""
    if not frames:
        raise ValueError("no frames to learn a clutter map from")
    cmap = StaticClutterMap(grid, learn_frames=len(frames), min_occupancy=min_occupancy, learn_online=False)
    for frame in frames:
        cmap.observe(frame.points)
    if not cmap.learned:
        cmap.finish()
    slow = dropped = moving = 0
    for frame in frames:
        pts = np.asarray(frame.points, dtype=np.float32).reshape(-1, 4)
        is_slow = np.abs(pts[:, 3]) < cmap.drop_doppler_mps
        slow += int(is_slow.sum())
        dropped += int((~cmap.keep(pts, None) & is_slow).sum())
        moving += int((np.abs(pts[:, 3]) >= moving_doppler_mps).sum())
    per_frame = moving / len(frames)
    warnings: list[str] = []
    if per_frame > 3.0:
        warnings.append(
            f"{per_frame:.1f} moving points per frame: was something moving in view? A target present "
            "while learning hides nothing, but a hovering one would be learned as clutter"
        )
    if len(frames) < 100:
        warnings.append(f"only {len(frames)} frames: record at least 2 minutes (2400 frames at 20 Hz)")
    return ClutterResult(
        static_cells=cmap.static_cells,
        grid_cells=int(np.prod(cmap.grid.shape)),
        frames=len(frames),
        slow_points=slow,
        slow_points_dropped=dropped,
        moving_points_per_frame=per_frame,
        warnings=warnings,
        static_map=cmap,
    )
