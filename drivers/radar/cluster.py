"""From a radar point cloud to candidate objects (`RadarDetection`).

The TI demo emits one point per CFAR peak, so a drone at 50 m gives a handful of points and a wall
gives dozens. Fusion wants one measurement per object with an honest uncertainty, so here we:
1. drop static clutter (points whose |Doppler| is inside a band around zero: walls, ground, trees);
2. link points closer than a gate that widens with range (angular spread grows with range), and take
   connected components of that graph as clusters;
3. summarise each cluster and convert it to spherical sensor coordinates with sigmas from the radar's
   resolution cells and the SNR (the Cramér-Rao-like res/sqrt(2·SNR)), floored because real
   estimators never reach the bound.

Everything is vectorised with numpy: the node clusters 20 frames/s on a Raspberry Pi next to other
sensors. The clutter step is a `ClutterFilter`, so a learned static map can join the band
(`AllClutterFilters`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cuas_node.kernel.measurement import RadarDetection
from cuas_node.kernel.pose import wrap

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class RadarResolution:
    """Resolution cells of the chirp profile and array; the defaults are an xWR1642 drone profile.

    `az_res_rad` is the boresight beamwidth 2/N_virtual (8 virtual antennas: ~14 degrees); it widens
    off boresight as 1/cos(az). A device without elevation (the 1642 reports z = 0) gets a fixed,
    large elevation sigma because the target can be anywhere in the antenna's vertical beam.
    """

    range_res_m: float = 0.3
    az_res_rad: float = 2.0 / 8
    el_res_rad: float = math.radians(30.0)
    doppler_res_mps: float = 0.1
    has_elevation: bool = False
    no_elevation_sigma_rad: float = math.radians(15.0)
    range_floor_fraction: float = 0.5
    doppler_floor_fraction: float = 0.5
    az_floor_rad: float = math.radians(1.0)
    el_floor_rad: float = math.radians(2.0)
    max_off_boresight_widening: float = 4.0

    @classmethod
    def xwr1642(cls) -> RadarResolution:
        """2 TX x 4 RX, azimuth only."""
        return cls()

    @classmethod
    def iwr6843(cls) -> RadarResolution:
        """3 TX x 4 RX (ISK/AOP): 8 virtual antennas in azimuth plus an elevation row."""
        return cls(has_elevation=True)


@dataclass(frozen=True, slots=True)
class Cluster:
    """One group of points, in Cartesian sensor coordinates (x right, y boresight, z up)."""

    x_m: float
    y_m: float
    z_m: float
    doppler_mps: float
    snr_max_db: float
    snr_mean_db: float
    n_points: int
    extent_m: float


class ClutterFilter(Protocol):
    def keep(self, points: NDArray[np.float32], snr_db: FloatArray | None) -> NDArray[np.bool_]:
        """Mask of the points that may belong to a moving object."""
        ...


@dataclass(frozen=True, slots=True)
class DopplerBandFilter:
    """Static clutter has zero Doppler; a drone that hovers is lost too, which a map would fix."""

    band_mps: float = 0.1

    def keep(self, points: NDArray[np.float32], snr_db: FloatArray | None) -> NDArray[np.bool_]:
        return np.abs(points[:, 3]) >= self.band_mps


@dataclass(frozen=True, slots=True)
class AllClutterFilters:
    """Keeps a point only if every filter keeps it: the Doppler band plus a learned static map."""

    filters: tuple[ClutterFilter, ...]

    def keep(self, points: NDArray[np.float32], snr_db: FloatArray | None) -> NDArray[np.bool_]:
        mask = np.ones(points.shape[0], dtype=np.bool_)
        for f in self.filters:
            mask &= f.keep(points, snr_db)
        return mask


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """The clustering knobs that belong in the node's config file (see `PointClusterer`)."""

    doppler_clutter_band_mps: float = 0.1
    eps_m: float = 1.0
    eps_per_range: float = 0.02
    doppler_gate_mps: float = 2.0
    min_points: int = 1


@dataclass
class PointClusterer:
    """Configured point clustering: gate(r) = eps_m + eps_per_range * r between two points.

    With the defaults the gate is 2 m at 50 m, so two drones 3 m apart (each a few tens of cm
    across) stay two clusters, while points of one target spread by a range cell stay together.
    Points further apart in Doppler than `doppler_gate_mps` are never linked: two objects crossing
    rarely share a velocity. Without SNR (no TLV 7) every point weighs the same and the SNR is
    taken as 0 dB, which gives the widest sigmas rather than invented confidence.
    `doppler_span_mps`: the profile's unambiguous radial speed, past which Doppler wraps (None:
    not known): a target at +10 m/s on a ±10.1 m/s profile has points at +10.0 and −10.1, one
    object, linked and averaged across the edge.
    """

    eps_m: float = 1.0
    eps_per_range: float = 0.02
    doppler_gate_mps: float = 2.0
    min_points: int = 1
    clutter_filter: ClutterFilter = field(default_factory=DopplerBandFilter)
    doppler_span_mps: float | None = None

    @classmethod
    def from_options(
        cls,
        options: ClusterOptions,
        static_map: ClutterFilter | None = None,
        doppler_span_mps: float | None = None,
    ) -> PointClusterer:
        """`static_map` (e.g. `static_map.StaticClutterMap`) filters after the Doppler band."""
        band = DopplerBandFilter(options.doppler_clutter_band_mps)
        return cls(
            eps_m=options.eps_m,
            eps_per_range=options.eps_per_range,
            doppler_gate_mps=options.doppler_gate_mps,
            min_points=options.min_points,
            clutter_filter=band if static_map is None else AllClutterFilters((band, static_map)),
            doppler_span_mps=doppler_span_mps,
        )

    def cluster(self, points: ArrayLike, snr_db: ArrayLike | None = None) -> list[Cluster]:
        return self._table(points, snr_db).clusters()

    def detections(
        self,
        points: ArrayLike,
        snr_db: ArrayLike | None,
        *,
        sensor_id: str,
        t_capture: float,
        t_receive: float,
        resolution: RadarResolution | None = None,
    ) -> list[RadarDetection]:
        return _to_detections(
            self._table(points, snr_db),
            resolution or RadarResolution(),
            sensor_id=sensor_id,
            t_capture=t_capture,
            t_receive=t_receive,
        )

    def _table(self, points: ArrayLike, snr_db: ArrayLike | None) -> _ClusterTable:
        pts = np.asarray(points, dtype=np.float32).reshape(-1, 4)
        snr = None if snr_db is None else np.asarray(snr_db, dtype=np.float64).reshape(-1)
        if snr is not None and snr.shape[0] != pts.shape[0]:
            raise ValueError("snr_db must have one value per point")
        keep = self.clutter_filter.keep(pts, snr)
        pts = pts[keep]
        snr = np.zeros(pts.shape[0]) if snr is None else snr[keep]
        xyz = pts[:, :3].astype(np.float64)
        doppler = pts[:, 3].astype(np.float64)
        table = _summarise(xyz, doppler, snr, self._labels(xyz, doppler), self.doppler_span_mps)
        return table.select(table.n_points >= self.min_points)

    def _labels(self, xyz: FloatArray, doppler: FloatArray) -> NDArray[np.intp]:
        n = xyz.shape[0]
        if n <= 1:
            return np.zeros(n, dtype=np.intp)
        rng = np.sqrt(np.einsum("ij,ij->i", xyz, xyz))
        iu, ju = np.triu_indices(n, k=1)
        d2 = np.zeros(iu.shape[0])
        for axis in range(3):
            col = xyz[:, axis]
            d2 += (col[iu] - col[ju]) ** 2
        gate = self.eps_m + self.eps_per_range * np.minimum(rng[iu], rng[ju])
        apart = doppler[iu] - doppler[ju]
        if self.doppler_span_mps is not None:  # across the edge of the unambiguous span
            apart = wrap(apart, self.doppler_span_mps)
        apart = np.abs(apart)
        linked = (d2 <= gate * gate) & (apart <= self.doppler_gate_mps)
        # scipy is imported here, not at the top: importing scipy starts threading machinery, and a
        # protocol module must import without it (docs/architecture.md, sans-IO rule).
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        graph = coo_matrix((np.ones(int(linked.sum()), dtype=np.int8), (iu[linked], ju[linked])), (n, n))
        _, labels = connected_components(graph, directed=False)
        return np.asarray(labels, dtype=np.intp)


@dataclass(frozen=True, slots=True)
class _ClusterTable:
    """Clusters as columns, so that the conversion to detections is vectorised too."""

    centroid: FloatArray  # (K, 3)
    doppler: FloatArray
    snr_max: FloatArray
    snr_mean: FloatArray
    n_points: NDArray[np.intp]
    extent: FloatArray

    def select(self, mask: NDArray[np.bool_]) -> _ClusterTable:
        return _ClusterTable(
            self.centroid[mask],
            self.doppler[mask],
            self.snr_max[mask],
            self.snr_mean[mask],
            self.n_points[mask],
            self.extent[mask],
        )

    def clusters(self) -> list[Cluster]:
        columns = zip(
            self.centroid.tolist(),
            self.doppler.tolist(),
            self.snr_max.tolist(),
            self.snr_mean.tolist(),
            self.n_points.tolist(),
            self.extent.tolist(),
            strict=True,
        )
        return [Cluster(x, y, z, dop, smax, smean, n, ext) for (x, y, z), dop, smax, smean, n, ext in columns]

    @classmethod
    def from_clusters(cls, clusters: list[Cluster]) -> _ClusterTable:
        return cls(
            np.array([(c.x_m, c.y_m, c.z_m) for c in clusters], dtype=np.float64).reshape(-1, 3),
            np.array([c.doppler_mps for c in clusters], dtype=np.float64),
            np.array([c.snr_max_db for c in clusters], dtype=np.float64),
            np.array([c.snr_mean_db for c in clusters], dtype=np.float64),
            np.array([c.n_points for c in clusters], dtype=np.intp),
            np.array([c.extent_m for c in clusters], dtype=np.float64),
        )


def _summarise(
    xyz: FloatArray,
    doppler: FloatArray,
    snr: FloatArray,
    labels: NDArray[np.intp],
    doppler_span: float | None = None,
) -> _ClusterTable:
    """Per-cluster statistics with segment reductions instead of a Python loop over points; the
    Doppler mean taken around each cluster's first point, wrapped, where it wraps (`doppler_span`)."""
    if labels.shape[0] == 0:
        empty = np.zeros(0)
        return _ClusterTable(np.zeros((0, 3)), empty, empty, empty, np.zeros(0, dtype=np.intp), empty)
    order = np.argsort(labels, kind="stable")
    labels_sorted = labels[order]
    starts = np.flatnonzero(np.r_[True, labels_sorted[1:] != labels_sorted[:-1]])
    counts = np.diff(np.r_[starts, labels_sorted.shape[0]])
    xyz_s, dop_s, snr_s = xyz[order], doppler[order], snr[order]
    snr_max = np.maximum.reduceat(snr_s, starts)
    # Linear power weights relative to the cluster's peak: no overflow, and never all zero.
    weight = 10.0 ** ((snr_s - np.repeat(snr_max, counts)) / 10.0)
    wsum = np.add.reduceat(weight, starts)
    centroid = np.add.reduceat(xyz_s * weight[:, None], starts, axis=0) / wsum[:, None]
    span = np.maximum.reduceat(xyz_s, starts, axis=0) - np.minimum.reduceat(xyz_s, starts, axis=0)
    if doppler_span is None:
        mean_doppler = np.add.reduceat(dop_s, starts) / counts
    else:
        offset = wrap(dop_s - np.repeat(dop_s[starts], counts), doppler_span)
        mean_doppler = wrap(dop_s[starts] + np.add.reduceat(offset, starts) / counts, doppler_span)
    return _ClusterTable(
        centroid=centroid,
        doppler=mean_doppler,
        snr_max=snr_max,
        snr_mean=np.add.reduceat(snr_s, starts) / counts,
        n_points=counts.astype(np.intp),
        extent=np.sqrt(np.einsum("ij,ij->i", span, span)),
    )


def cluster_points(
    points: ArrayLike,
    snr_db: ArrayLike | None = None,
    *,
    doppler_clutter_band_mps: float = 0.1,
    eps_m: float = 1.0,
    eps_per_range: float = 0.02,
    doppler_gate_mps: float = 2.0,
    min_points: int = 1,
) -> list[Cluster]:
    """Functional front end of `PointClusterer` (points: (N, 4) x, y, z, doppler)."""
    options = ClusterOptions(doppler_clutter_band_mps, eps_m, eps_per_range, doppler_gate_mps, min_points)
    return PointClusterer.from_options(options).cluster(points, snr_db)


def clusters_to_detections(
    clusters: list[Cluster],
    resolution: RadarResolution,
    *,
    sensor_id: str,
    t_capture: float,
    t_receive: float,
) -> list[RadarDetection]:
    """Spherical coordinates plus resolution/sqrt(2·SNR) sigmas, using the cluster's peak SNR."""
    table = _ClusterTable.from_clusters(clusters)
    return _to_detections(table, resolution, sensor_id=sensor_id, t_capture=t_capture, t_receive=t_receive)


def _to_detections(
    table: _ClusterTable,
    res: RadarResolution,
    *,
    sensor_id: str,
    t_capture: float,
    t_receive: float,
) -> list[RadarDetection]:
    x, y, z = table.centroid.T
    horiz = np.hypot(x, y)
    rng = np.hypot(horiz, z)
    az = np.arctan2(x, y)
    el = np.arctan2(z, horiz)
    # The peak point's SNR sets the precision: points of one object are not independent looks.
    root = np.sqrt(2.0 * 10.0 ** (table.snr_max / 10.0))
    widen = np.minimum(1.0 / np.maximum(np.cos(az), 1e-9), res.max_off_boresight_widening)
    sigma_range = np.maximum(res.range_res_m / root, res.range_floor_fraction * res.range_res_m)
    # The centroid wanders over the object's body from frame to frame: half its extent is an error
    # term no SNR removes.
    sigma_range = np.hypot(sigma_range, table.extent / 2.0)
    sigma_az = np.maximum(res.az_res_rad * widen / root, res.az_floor_rad)
    if res.has_elevation:
        sigma_el = np.maximum(res.el_res_rad / root, res.el_floor_rad)
    else:
        sigma_el = np.full(root.shape, res.no_elevation_sigma_rad)
    sigma_radial = np.maximum(res.doppler_res_mps / root, res.doppler_floor_fraction * res.doppler_res_mps)
    rows = zip(
        rng.tolist(),
        az.tolist(),
        el.tolist(),
        table.doppler.tolist(),
        sigma_range.tolist(),
        sigma_az.tolist(),
        sigma_el.tolist(),
        sigma_radial.tolist(),
        table.snr_max.tolist(),
        table.n_points.tolist(),
        table.extent.tolist(),
        strict=True,
    )
    return [RadarDetection(sensor_id, t_capture, t_receive, *row) for row in rows]
