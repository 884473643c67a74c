"""A radar frame's detections as the arrays fusion takes, and what is checked of them first.

Kept apart from the engine, which routes each frame (`FusionEngine._radar`): these are pure
functions of a frame, its radar's coverage and pose, and the ground.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np

from cuas_node.fusion.ground import Ground, mirror_images, radar_height_sigma, radar_points_enu
from cuas_node.fusion.measurement_models import Coverage
from cuas_node.kernel.measurement import RadarDetection
from cuas_node.kernel.pose import Pose

_RADAR_FIELDS = operator.attrgetter(
    "range_m",
    "az_rad",
    "el_rad",
    "radial_mps",
    "sigma_range_m",
    "sigma_az_rad",
    "sigma_el_rad",
    "sigma_radial_mps",
    "extent_m",
)


def radar_arrays(
    detections: Sequence[RadarDetection], range_bias_m: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stack a frame's detections: z (M,4), sigmas (M,4) and extents (M,), NaN where range-rate
    is absent, and two masks (M,): `valid` (finite range > 0, finite angles, finite positive sigmas:
    anything else would put a NaN or an infinity into a track) and `rate` (a usable range-rate:
    finite, with a finite positive sigma; None and NaN both count as absent). One pass over the
    objects (None becomes NaN in a float array): a frame is a hundred of them."""
    rows = np.array(list(map(_RADAR_FIELDS, detections)), dtype=np.float64).reshape(-1, 9)
    z, sig = rows[:, :4], rows[:, 4:8]
    z[:, 0] -= range_bias_m
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(z) & np.isfinite(sig) & (sig > 0.0)
        valid = finite[:, :3].all(axis=1) & (z[:, 0] > 0.0)
    return z, sig, rows[:, 8], valid, valid & finite[:, 3]


def repeated_rows(z: np.ndarray, before: np.ndarray | None = None) -> np.ndarray:
    """(M,) the detections of a frame z (M, D: values and sigmas) that repeat one before them in
    it, or a row of `before` (the same radar's frame of the same capture time, already fused): a
    frame delivered twice, or a line written twice. Two objects never give one radar
    bit-identical plots (noise), while a repeated plot fused again is a second track on the same
    target. NaN (no range-rate) equals NaN here. One sort of the rows, not a Python loop: every
    frame is asked."""
    rows = z if before is None else np.vstack([before, z])
    filled = np.where(np.isnan(rows), np.inf, rows)  # NaN == NaN for this test (inf is not a valid value)
    order = np.lexsort(filled.T[::-1])
    ordered = filled[order]
    same = np.zeros(rows.shape[0], dtype=bool)
    same[order[1:]] = (ordered[1:] == ordered[:-1]).all(axis=1)
    return same[rows.shape[0] - z.shape[0] :]


REPEAT_HORIZON_S = 5.0
"""How long a radar's frames are remembered to recognise one delivered again (`RecentFrames`):
longer than any delivery delay fusion still takes a measurement after (`late`)."""
REPEAT_MAX_FRAMES = 500  # 5 s of a 100 Hz radar


class RecentFrames:
    """Each radar's frames of the last `REPEAT_HORIZON_S` before the newest, by capture time;
    each row once, and never more than `REPEAT_MAX_FRAMES` frames (capture times that go back,
    or a frame sent over and over, cannot make it grow)."""

    def __init__(self) -> None:
        self._frames: dict[str, dict[float, np.ndarray]] = {}
        self._newest: dict[str, float] = {}

    def repeated(
        self, sensor_id: str, t: float, z: np.ndarray, stamps: np.ndarray | None = None
    ) -> np.ndarray:
        """(M,) the detections of the radar's frame z at `t` already given (`repeated_rows`; the
        engine asks it of the valid detections, values and sigmas: a detection that differs only
        in its sigma is not the same report). `stamps`: a scanning radar's plots' own capture
        times (`_repeated_plots`)."""
        if stamps is not None:
            return self._repeated_plots(sensor_id, stamps, z)
        frames = self._frames.setdefault(sensor_id, {})
        before = frames.get(t)
        out = repeated_rows(z, before)
        if not out.all():
            frames[t] = z[~out] if before is None else np.vstack([before, z[~out]])
        newest = self._newest[sensor_id] = max(t, self._newest.get(sensor_id, t))
        # Frames arrive in capture order, mostly: the oldest is first.
        while frames and next(iter(frames)) < newest - REPEAT_HORIZON_S:
            del frames[next(iter(frames))]
        if len(frames) > REPEAT_MAX_FRAMES:  # out of order: old ones left behind newer ones
            kept = [k for k in frames if k >= newest - REPEAT_HORIZON_S][-REPEAT_MAX_FRAMES:]
            self._frames[sensor_id] = {k: frames[k] for k in kept}
        return out

    def _repeated_plots(self, sensor_id: str, stamps: np.ndarray, z: np.ndarray) -> np.ndarray:
        """`repeated` for a scanning radar, whose batches hold plots of many capture times: a plot
        sent again comes in another batch, at another batch time, so each is looked up by its own
        stamp (among the rows of the same whole second of stamps, the stamp one of the values
        compared)."""
        rows = np.hstack([z, stamps[:, None]])
        keys = np.floor(stamps)
        out = np.zeros(rows.shape[0], dtype=bool)
        for key in np.unique(keys):
            at = keys == key
            out[at] = self.repeated(sensor_id, float(key), rows[at])
        return out


OUTSIDE_SIGMAS = 3.0


def outside_coverage(coverage: Coverage, z: np.ndarray, sig: np.ndarray) -> np.ndarray:
    """(M,) detections beyond the radar's configured coverage (range interval, azimuth and
    elevation half-widths) by more than OUTSIDE_SIGMAS of their own σ in that coordinate. They are
    fused (a radar may well see a little past its nominal field of view, and fusion loses
    nothing), but counted (`fusion.outside_coverage` in health, `track`'s summary): many of them
    mean a coverage or mount that does not describe the radar, angles in the wrong unit (degrees
    for radians), or artefacts (range aliases, sidelobe ghosts), and where the configured coverage
    does not reach, a missed scan is no evidence against a track."""
    with np.errstate(invalid="ignore", divide="ignore"):  # invalid rows (NaN, σ ≤ 0) are masked by the caller
        return np.asarray(coverage.sigmas_beyond(z[:, 0], z[:, 1], z[:, 2], sig[:, :3].T) > OUTSIDE_SIGMAS)


def below_ground(
    ground: Ground | None, z: np.ndarray, sig: np.ndarray, rate: np.ndarray, pose: Pose
) -> np.ndarray:
    """Detections of one frame (valid ones, rows of `radar_arrays`) that are no target: below
    the ground beyond their uncertainty, or the ground-bounce image (multipath) of another
    (`ground.mirror_images`). Dropped before they can start a track or drag a real one down;
    a frame with nothing below the ground (the usual one) asks no more than its heights."""
    dropped = np.zeros(z.shape[0], dtype=bool)
    if ground is None or not z.shape[0]:
        return dropped
    enu = radar_points_enu(z, pose)
    if not (ground.height(enu) < 0.0).any():
        return dropped
    sigma_up = radar_height_sigma(z, sig, pose)
    across = np.hypot(sig[:, 0], z[:, 0] * np.cos(z[:, 2]) * sig[:, 1])
    radial = np.where(rate, z[:, 3], np.nan)
    mast = float(ground.height(pose.offset_enu_m[None, :])[0])
    images = mirror_images(ground, enu, sigma_up, across, radial, sig[:, 3], mast)
    return np.asarray(ground.impossible(enu, sigma_up) | images)
