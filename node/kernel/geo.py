"""WGS84 ↔ local ENU at the node: fusion works in metres, the wire speaks geodetic.

pymap3d does the geodesy (ellipsoidal, vectorised over numpy arrays); this module only pins the
origin so the rest of the node never passes the reference point around.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pymap3d

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class LocalFrame:
    """East-North-Up tangent frame at a WGS84 origin (altitude above the ellipsoid)."""

    lat: float
    lon: float
    alt_m: float

    def to_enu(self, lat: npt.ArrayLike, lon: npt.ArrayLike, alt_m: npt.ArrayLike) -> FloatArray:
        """Geodetic → ENU metres; returns shape (..., 3)."""
        e, n, u = pymap3d.geodetic2enu(lat, lon, alt_m, self.lat, self.lon, self.alt_m)
        return np.stack(np.broadcast_arrays(e, n, u), axis=-1).astype(np.float64)

    def to_geodetic(self, enu: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
        """ENU metres (..., 3) → (lat, lon, alt_m) arrays."""
        points = np.asarray(enu, dtype=np.float64)
        lat, lon, alt = pymap3d.enu2geodetic(
            points[..., 0], points[..., 1], points[..., 2], self.lat, self.lon, self.alt_m
        )
        return (
            np.asarray(lat, dtype=np.float64),
            np.asarray(lon, dtype=np.float64),
            np.asarray(alt, np.float64),
        )
