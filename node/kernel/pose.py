"""Mount pose: the rotation and lever arm that carry a sensor's own frame into the node's ENU frame.

Sensor frame: x right, y forward (boresight), z up. Yaw is the compass bearing of boresight
(clockwise from north), pitch tilts boresight up, roll turns the right side down. Rotations are
applied roll first, then pitch, then yaw: R = R_yaw · R_pitch · R_roll, so a sensor with all angles
zero looks north with x pointing east.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def wrap(values: npt.ArrayLike, half_width: float = math.pi) -> FloatArray:
    """`values` wrapped into [−half_width, half_width): an angle (the default), or a radar's
    radial speed, which its Doppler reports modulo twice its unambiguous span."""
    return np.asarray((np.asarray(values, dtype=np.float64) + half_width) % (2.0 * half_width) - half_width)


def rotation_sensor_to_enu(yaw_deg: float, pitch_deg: float, roll_deg: float) -> FloatArray:
    """3×3 matrix whose columns are the sensor's x, y, z axes expressed in ENU."""
    yaw, pitch, roll = (math.radians(a) for a in (yaw_deg, pitch_deg, roll_deg))
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    # Yaw is clockwise seen from above: boresight (0,1,0) → (sin yaw, cos yaw, 0).
    r_yaw = np.array([[cy, sy, 0.0], [-sy, cy, 0.0], [0.0, 0.0, 1.0]])
    # Pitch about the sensor's x axis: boresight tilts towards +z.
    r_pitch = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    # Roll about boresight: the right side (+x) goes down (towards -z).
    r_roll = np.array([[cr, 0.0, sr], [0.0, 1.0, 0.0], [-sr, 0.0, cr]])
    return r_yaw @ r_pitch @ r_roll


@dataclass(frozen=True, slots=True)
class Pose:
    """A sensor's calibrated mount: rotation into ENU and position relative to the node origin."""

    rotation: FloatArray  # sensor → ENU
    offset_enu_m: FloatArray  # sensor origin in node ENU

    @classmethod
    def from_angles(
        cls, yaw_deg: float, pitch_deg: float, roll_deg: float, offset_m: tuple[float, float, float]
    ) -> Pose:
        return cls(
            rotation_sensor_to_enu(yaw_deg, pitch_deg, roll_deg), np.asarray(offset_m, dtype=np.float64)
        )

    def sensor_to_enu(self, xyz: npt.ArrayLike) -> FloatArray:
        """Points (..., 3) in the sensor frame → node ENU."""
        return np.asarray(xyz, dtype=np.float64) @ self.rotation.T + self.offset_enu_m

    def enu_to_sensor(self, enu: npt.ArrayLike) -> FloatArray:
        """Points (..., 3) in node ENU → sensor frame (the rotation is orthonormal)."""
        return (np.asarray(enu, dtype=np.float64) - self.offset_enu_m) @ self.rotation


def spherical_to_cartesian(
    range_m: npt.ArrayLike, az_rad: npt.ArrayLike, el_rad: npt.ArrayLike
) -> FloatArray:
    """Sensor spherical (azimuth from boresight towards +x) → sensor Cartesian (..., 3)."""
    r = np.asarray(range_m, dtype=np.float64)
    az = np.asarray(az_rad, dtype=np.float64)
    el = np.asarray(el_rad, dtype=np.float64)
    horizontal = r * np.cos(el)
    return np.stack([horizontal * np.sin(az), horizontal * np.cos(az), r * np.sin(el)], axis=-1)


def cartesian_to_spherical(xyz: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Sensor Cartesian (..., 3) → (range, azimuth, elevation)."""
    p = np.asarray(xyz, dtype=np.float64)
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    horizontal = np.hypot(x, y)
    return np.sqrt(horizontal**2 + z**2), np.arctan2(x, y), np.arctan2(z, horizontal)
