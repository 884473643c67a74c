"""Microphone array geometries: the presets of the Pi arrays we support, or explicit coordinates.

Positions are in the array's own frame, which is the sensor frame of the measurement contract:
x right, y forward (azimuth 0, boresight), z up, metres, origin at the array centre. The presets
are the ODAS configuration files' coordinates (protocols.md section 3.3); mount the board so that
its +y edge faces the mount pose's yaw. `channel_map` says which wire channels carry which
microphone, because some front ends send extra channels (the ReSpeaker 6-mic's ALSA device has 8,
two of them playback loopback; the UMA-8 has 8 with 7 microphones).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, eq=False)
class ArrayGeometry:
    name: str
    positions: FloatArray  # (M, 3) metres in the sensor frame
    channel_map: tuple[int, ...]  # wire channel of each microphone
    min_channels: int  # a frame with fewer channels cannot carry this array

    @property
    def identity(self) -> str:
        """What a site background records of the array it was learnt through (`Background.mismatch`):
        a preset's name; for microphones given by their positions, "custom-" and a digest of them
        to 0.1 mm, so that two different arrays given so are told apart."""
        if self.name != "custom":
            return self.name
        mm = np.round(self.positions, 4) + 0.0  # (+ 0.0: -0.0 is 0.0)
        return "custom-" + hashlib.sha256(mm.tobytes()).hexdigest()[:8]

    @property
    def n_mics(self) -> int:
        return int(self.positions.shape[0])

    @property
    def aperture_m(self) -> float:
        d = self.positions[:, None, :] - self.positions[None, :, :]
        return float(np.sqrt((d**2).sum(-1)).max())

    @property
    def planar(self) -> bool:
        """All microphones in one plane: the array cannot tell a direction from its mirror image."""
        centred = self.positions - self.positions.mean(axis=0)
        return bool(np.linalg.svd(centred, compute_uv=False)[-1] < 1e-4)

    @property
    def normal(self) -> FloatArray:
        """Unit normal of the best-fit plane (pointing to +z when possible)."""
        centred = self.positions - self.positions.mean(axis=0)
        n = np.linalg.svd(centred)[2][-1]
        return np.asarray(n if n[2] >= 0 else -n, dtype=np.float64)

    def pairs(self) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        i, j = np.triu_indices(self.n_mics, k=1)
        return i.astype(np.intp), j.astype(np.intp)


MIN_SPACING_M = 0.001
"""Microphones closer than this are taken for one listed twice (`explicit`): the smallest arrays
on a Pi space them 2-5 cm apart, and 1 mm is a 3 µs delay, under a sample at 48 kHz."""


def _ring(radius: float, n: int, first_deg: float = 0.0) -> list[tuple[float, float, float]]:
    angles = np.radians(first_deg + 360.0 * np.arange(n) / n)
    return [(float(radius * np.sin(a)), float(radius * np.cos(a)), 0.0) for a in angles]


PRESETS: dict[str, tuple[list[tuple[float, float, float]], tuple[int, ...], int]] = {
    # ReSpeaker 4-Mic Array for Pi (AC108): square, side 57.3 mm, diagonal 81 mm.
    "respeaker-4": (
        [(-0.0405, 0.0, 0.0), (0.0, 0.0405, 0.0), (0.0405, 0.0, 0.0), (0.0, -0.0405, 0.0)],
        (0, 1, 2, 3),
        4,
    ),
    # ReSpeaker 6-Mic Circular Array for Pi: r = 46.3 mm; ALSA gives 8 channels, 7 and 8 are loopback.
    "respeaker-6": (
        [
            (-0.0232, 0.0401, 0.0),
            (-0.0463, 0.0, 0.0),
            (-0.0232, -0.0401, 0.0),
            (0.0232, -0.0401, 0.0),
            (0.0463, 0.0, 0.0),
            (0.0232, 0.0401, 0.0),
        ],
        (0, 1, 2, 3, 4, 5),
        6,
    ),
    # miniDSP UMA-8: a centre microphone plus six on r = 43 mm; 8 USB channels, 7 microphones.
    "minidsp-uma8": (
        [
            (0.0, 0.0, 0.0),
            (0.0, 0.043, 0.0),
            (0.037, 0.021, 0.0),
            (0.037, -0.021, 0.0),
            (0.0, -0.043, 0.0),
            (-0.037, -0.021, 0.0),
            (-0.037, 0.021, 0.0),
        ],
        (0, 1, 2, 3, 4, 5, 6),
        7,
    ),
}
ALIASES = {"respeaker-4mic": "respeaker-4", "respeaker-6mic": "respeaker-6", "uma-8": "minidsp-uma8"}


def preset(name: str) -> ArrayGeometry:
    key = ALIASES.get(name, name)
    if key not in PRESETS:
        raise ValueError(f"unknown array geometry {name!r} (presets: {', '.join(sorted(PRESETS))})")
    positions, channel_map, min_channels = PRESETS[key]
    return ArrayGeometry(key, np.array(positions, dtype=np.float64), channel_map, min_channels)


def explicit(
    positions: Sequence[Sequence[float]], channel_map: Sequence[int] | None = None, name: str = "custom"
) -> ArrayGeometry:
    """An array given by its microphone coordinates (metres, sensor frame; z may be omitted)."""
    pos = np.array([(*p, 0.0)[:3] if len(p) == 2 else tuple(p) for p in positions], dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3 or pos.shape[0] < 2:
        raise ValueError("an array needs at least two microphones with (x, y[, z]) coordinates")
    if not np.isfinite(pos).all():
        raise ValueError("microphone positions must be finite numbers (metres)")
    # Two microphones in one place give no delay between them: every direction fits them alike,
    # and the array's evidence would weigh a pair that says nothing (a copied line in the list).
    d = np.sqrt(((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1)) + np.eye(pos.shape[0])
    if (d < MIN_SPACING_M).any():
        i, j = (int(k) for k in np.argwhere(d < MIN_SPACING_M)[0])
        raise ValueError(
            f"microphones {i + 1} and {j + 1} are at the same place ({d[i, j] * 1000:.1f} mm apart;"
            f" at least {MIN_SPACING_M * 1000:g} mm): a copied position?"
        )
    cmap = tuple(int(c) for c in channel_map) if channel_map is not None else tuple(range(pos.shape[0]))
    if len(cmap) != pos.shape[0] or min(cmap) < 0:
        raise ValueError("channel_map must give one non-negative wire channel per microphone")
    if len(set(cmap)) != len(cmap):
        raise ValueError("channel_map gives one wire channel to two microphones")
    return ArrayGeometry(name, pos, cmap, max(cmap) + 1)


def resolve(
    geometry: str | Sequence[Sequence[float]], channel_map: Sequence[int] | None = None
) -> ArrayGeometry:
    """The config's `geometry`: a preset name, or a list of [x, y, z] microphone positions."""
    if isinstance(geometry, str):
        geo = preset(geometry)
        if channel_map is not None:
            return explicit(geo.positions.tolist(), channel_map, geo.name)
        return geo
    return explicit(geometry, channel_map)


def for_channels(channels: int) -> ArrayGeometry:
    """The preset a bare recording most likely came from, by its channel count (for `decode`)."""
    if channels <= 5:
        return preset("respeaker-4")
    if channels == 6:
        return preset("respeaker-6")
    return preset("minidsp-uma8")


def circular(n: int, radius_m: float, name: str | None = None) -> ArrayGeometry:
    """A uniform circular array (for benchmarks and tests of channel counts without a preset)."""
    return explicit(_ring(radius_m, n), name=name or f"circle-{n}")
