"""Before/after plots for the technician, as PNG files.

Why two back ends: matplotlib draws proper labelled plots but is heavy for a Raspberry Pi node whose
runtime never needs it, so it is an optional extra (`pip install 'cuas-node[calibration]'`) imported
only here, only by the calibrate commands. Without it a small built-in rasteriser writes the same
panels (points, lines, axes and a zero line, no text) with zlib + struct, so a calibration never
fails for want of a plotting library; the numbers are in the TOML beside the PNG either way.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "green": (44, 160, 44),
    "blue": (31, 119, 180),
    "orange": (255, 127, 14),
    "grey": (127, 127, 127),
    "black": (0, 0, 0),
    "purple": (148, 103, 189),
}


@dataclass(frozen=True)
class Series:
    x: npt.ArrayLike
    y: npt.ArrayLike
    label: str = ""
    colour: str = "blue"
    style: Literal["points", "line"] = "points"


@dataclass(frozen=True)
class Panel:
    title: str
    xlabel: str = ""
    ylabel: str = ""
    series: Sequence[Series] = field(default_factory=list)
    equal_aspect: bool = False
    image: FloatArray | None = None  # a 2-D map (rows = y) drawn instead of series
    extent: tuple[float, float, float, float] | None = None  # x0, x1, y0, y1 of `image`


def save_plot(path: Path, title: str, panels: Sequence[Panel], *, builtin: bool = False) -> str:
    """Write the panels side by side to `path`; returns the back end used (`matplotlib`/`builtin`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not builtin:
        try:
            _matplotlib(path, title, panels)
            return "matplotlib"
        except ImportError:
            pass
    _builtin(path, panels)
    return "builtin"


def _matplotlib(path: Path, title: str, panels: Sequence[Panel]) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.6), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        if panel.image is not None:
            im = ax.imshow(panel.image, origin="lower", aspect="auto", extent=panel.extent, cmap="viridis")
            fig.colorbar(im, ax=ax)
        for s in panel.series:
            colour = np.array(COLOURS.get(s.colour, COLOURS["blue"])) / 255.0
            if s.style == "line":
                ax.plot(s.x, s.y, "-", color=colour, label=s.label, linewidth=1.2)
            else:
                ax.plot(s.x, s.y, ".", color=colour, label=s.label, markersize=3)
        ax.set_title(panel.title)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(True, alpha=0.3)
        if panel.equal_aspect:
            ax.set_aspect("equal", adjustable="datalim")
        if any(s.label for s in panel.series):
            ax.legend(loc="best", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# The built-in rasteriser

_W, _H, _MARGIN = 440, 360, 24


def _finite(x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    xa = np.asarray(x, dtype=np.float64).ravel()
    ya = np.asarray(y, dtype=np.float64).ravel()
    ok = np.isfinite(xa) & np.isfinite(ya)
    return xa[ok], ya[ok]


def _limits(values: list[FloatArray]) -> tuple[float, float]:
    joined = np.concatenate(values) if values else np.zeros(0)
    if joined.size == 0:
        return -1.0, 1.0
    lo, hi = float(joined.min()), float(joined.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    pad = 0.05 * (hi - lo)
    return lo - pad, hi + pad


def _panel_raster(panel: Panel) -> npt.NDArray[np.uint8]:
    img = np.full((_H, _W, 3), 255, dtype=np.uint8)
    x0, y0, x1, y1 = _MARGIN, _MARGIN, _W - _MARGIN, _H - _MARGIN  # plot box in pixels
    if panel.image is not None:
        data = np.asarray(panel.image, dtype=np.float64)
        rows = np.linspace(0, data.shape[0] - 1, y1 - y0).astype(np.intp)[::-1]
        cols = np.linspace(0, data.shape[1] - 1, x1 - x0).astype(np.intp)
        sub = data[np.ix_(rows, cols)]
        span = float(np.nanmax(sub) - np.nanmin(sub)) or 1.0
        level = np.nan_to_num((sub - np.nanmin(sub)) / span)
        img[y0:y1, x0:x1] = (np.stack([level * 250, level * 200 + 30, (1 - level) * 120 + 40], -1)).astype(
            np.uint8
        )
    pts = [_finite(s.x, s.y) for s in panel.series]
    xl = _limits([p[0] for p in pts])
    yl = _limits([p[1] for p in pts])
    if panel.equal_aspect:
        cx, cy = sum(xl) / 2, sum(yl) / 2
        half = max(xl[1] - xl[0], (yl[1] - yl[0]) * (x1 - x0) / (y1 - y0)) / 2
        xl = (cx - half, cx + half)
        half_y = half * (y1 - y0) / (x1 - x0)
        yl = (cy - half_y, cy + half_y)

    def to_px(x: FloatArray, y: FloatArray) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        px = x0 + (x - xl[0]) / (xl[1] - xl[0]) * (x1 - x0)
        py = y1 - (y - yl[0]) / (yl[1] - yl[0]) * (y1 - y0)
        return np.round(px).astype(np.intp), np.round(py).astype(np.intp)

    if yl[0] < 0 < yl[1] and panel.image is None:  # the zero line: where a good residual sits
        _, zy = to_px(np.zeros(1), np.zeros(1))
        img[int(zy[0]), x0:x1] = (200, 200, 200)
    for s, (x, y) in zip(panel.series, pts, strict=True):
        colour = COLOURS.get(s.colour, COLOURS["blue"])
        if s.style == "line" and x.size >= 2:
            # Dense resampling along the polyline instead of a line-drawing algorithm.
            seg = np.hypot(np.diff(x), np.diff(y))
            dist = np.r_[0.0, np.cumsum(seg)]
            n = int(min(20000, max(2, 4 * (_W + _H))))
            s_at = np.linspace(0.0, float(dist[-1]) or 1.0, n)
            x, y = np.interp(s_at, dist, x), np.interp(s_at, dist, y)
            px, py = to_px(x, y)
            ok = (px >= x0) & (px < x1) & (py >= y0) & (py < y1)
            img[py[ok], px[ok]] = colour
        else:
            px, py = to_px(x, y)
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    qx, qy = px + dx, py + dy
                    ok = (qx >= x0) & (qx < x1) & (qy >= y0) & (qy < y1)
                    img[qy[ok], qx[ok]] = colour
    img[y0, x0:x1] = img[y1 - 1, x0:x1] = 0  # the frame
    img[y0:y1, x0] = img[y0:y1, x1 - 1] = 0
    return img


def _builtin(path: Path, panels: Sequence[Panel]) -> None:
    image = np.concatenate([_panel_raster(p) for p in panels], axis=1)
    path.write_bytes(encode_png(image))


def encode_png(rgb: npt.NDArray[np.uint8]) -> bytes:
    """An 8-bit RGB PNG of an (H, W, 3) array: signature, IHDR, one zlib IDAT, IEND."""
    h, w, _ = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), dtype=np.uint8), rgb.reshape(h, w * 3)], axis=1).tobytes()

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
