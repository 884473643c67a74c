"""The ground: nothing real is below it, so what appears there is a reflection.

A radar sees a low target twice: directly, and by the ground bounce, which arrives as an image
mirrored below the ground (multipath). Such images, and tracks built from them, are physically
impossible and are treated as clutter: a detection whose height above ground is below zero by
more than its own uncertainty (`SIGMAS` standard deviations) never reaches the tracker, and a
track whose estimate is that far below never confirms (and is deleted if it was confirmed).

The ground is a plane through the configured ground altitude (`node.ground_alt_m`, default: the
node's reference point, the mast foot from which sensor offsets are measured), bent with the
Earth's curvature: at range d the local tangent plane (ENU) rises d²/2R above the ground, 7.8 m
at 10 km. Terrain is not modelled: on a hilltop, configure the lowest ground in coverage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cuas_node.fusion.measurement_models import RADIAL_SPAN_MPS
from cuas_node.fusion.tracks import TrackTable
from cuas_node.kernel.pose import Pose, spherical_to_cartesian

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]
EARTH_RADIUS_M = 6_371_000.0
SIGMAS = 3.0
"""How many standard deviations below the ground make a position impossible, not just noisy."""
_MAX_CLIMB_MPS = RADIAL_SPAN_MPS / 2.0
"""Bound on a target's vertical speed in `mirror_images`: the speeds clutter Doppler spans."""


@dataclass(frozen=True, slots=True)
class Ground:
    """The ground in the local ENU frame: `u0_m` is its height at the origin (≤ 0 when the origin
    is the mast foot or above the ground)."""

    u0_m: float = 0.0

    def height(self, enu: FloatArray) -> FloatArray:
        """Height above the ground of ENU points (N,3)."""
        d2 = enu[:, 0] ** 2 + enu[:, 1] ** 2
        return np.asarray(enu[:, 2] - (self.u0_m - d2 / (2.0 * EARTH_RADIUS_M)), dtype=np.float64)

    def impossible(self, enu: FloatArray, sigma_up_m: FloatArray) -> npt.NDArray[np.bool_]:
        """Points below the ground by more than `SIGMAS` of their vertical uncertainty."""
        return np.asarray(self.height(enu) + SIGMAS * sigma_up_m < 0.0)


def radar_points_enu(z: FloatArray, pose: Pose) -> FloatArray:
    """Radar detections (M,3 range, az, el, or M,4 with radial velocity) → ENU positions (M,3).
    Only the first three columns are read: where a detection is does not depend on whether its
    radar measures range-rate."""
    return pose.sensor_to_enu(spherical_to_cartesian(z[:, 0], z[:, 1], z[:, 2]))


def radar_height_sigma(z: FloatArray, sigmas: FloatArray, pose: Pose) -> FloatArray:
    """The standard deviation of radar detections' heights (M,), from their range and angle
    errors through the mount (columns as `radar_points_enu`'s). Asked only of a frame with a
    detection below the ground: most frames need no more than the positions."""
    r, az, el = z[:, 0], z[:, 1], z[:, 2]
    ce, se, ca, sa = np.cos(el), np.sin(el), np.cos(az), np.sin(az)
    # d(up)/d(range, az, el): the up row of the mount's rotation times the spherical Jacobian.
    up = pose.rotation[2]
    d_range = up[0] * ce * sa + up[1] * ce * ca + up[2] * se
    d_az = r * ce * (up[0] * ca - up[1] * sa)
    d_el = r * (-up[0] * se * sa - up[1] * se * ca + up[2] * ce)
    var = (d_range * sigmas[:, 0]) ** 2 + (d_az * sigmas[:, 1]) ** 2 + (d_el * sigmas[:, 2]) ** 2
    return np.asarray(np.sqrt(var), dtype=np.float64)


def hold_above_ground(table: TrackTable, slots: IndexArray, ground: Ground) -> None:
    """A constraint, not an observation: no state is below the ground. A prediction or update
    that goes there (a coasting track still descending, noise on a low target) is raised to the
    ground with its downward speed removed, in the mixed state and in every IMM model."""
    if not slots.size:
        return
    height = ground.height(table.x[slots, :3])
    below = slots[height < 0.0]
    if not below.size:
        return
    lift = -height[height < 0.0]
    table.x[below, 2] += lift
    table.x[below, 5] = np.maximum(table.x[below, 5], 0.0)
    table.xm[below, :, 2] += lift[:, None]
    table.xm[below, :, 5] = np.maximum(table.xm[below, :, 5], 0.0)


def mirror_images(
    ground: Ground,
    enu: FloatArray,
    sigma_up: FloatArray,
    sigma_across: FloatArray,
    radial: FloatArray | None = None,
    sigma_radial: FloatArray | None = None,
    radar_up_m: float = 0.0,
) -> npt.NDArray[np.bool_]:
    """Detections of one frame that are the ground-bounce image of another detection in it.

    A low target's image lies below the ground, mirrored (same horizontal place, height −h), and
    is often too uncertain in height (a few degrees of elevation at 200 m are tens of metres) to
    be `impossible` on its own; but the radar sees the target itself in the same frame. A
    detection whose estimate is below the ground is taken for an image when some detection above
    the ground lies at its horizontal place and mirrored height, each within `SIGMAS` of the
    pair's combined uncertainty (`sigma_across`: horizontal, `sigma_up`: vertical), and, when
    both carry a range-rate, moves alike: the image's range-rate differs from the target's only
    by the climb rate seen through the mast's height (≤ 2·`radar_up_m`·|v_up|/r, bounded here by
    the ±20 m/s over which clutter Doppler is spread). A frame's static clutter (zero Doppler)
    is thus never the partner of a moving target's detection."""
    height = ground.height(enu)
    below = np.flatnonzero(height < 0.0)
    above = np.flatnonzero(height >= 0.0)
    flagged = np.zeros(enu.shape[0], dtype=bool)
    if not below.size or not above.size:
        return flagged
    horizontal = np.linalg.norm(enu[below, None, :2] - enu[None, above, :2], axis=2)
    mirrored = np.abs(height[below, None] + height[None, above])
    pair_across = np.hypot(sigma_across[below, None], sigma_across[None, above])
    pair_up = np.hypot(sigma_up[below, None], sigma_up[None, above])
    match = (horizontal <= SIGMAS * pair_across) & (mirrored <= SIGMAS * pair_up)
    if radial is not None and sigma_radial is not None:
        rng = np.maximum(np.linalg.norm(enu[below], axis=1), 1.0)
        climb = 2.0 * radar_up_m * _MAX_CLIMB_MPS / rng
        both = np.isfinite(radial[below, None]) & np.isfinite(radial[None, above])
        gap = np.abs(radial[below, None] - radial[None, above])
        pair_radial = np.hypot(sigma_radial[below, None], sigma_radial[None, above])
        alike = gap <= SIGMAS * pair_radial + climb[:, None]
        match &= ~both | alike
    flagged[below] = match.any(axis=1)
    return flagged
