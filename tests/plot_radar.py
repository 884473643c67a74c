"""A long-range 3-D plot radar for fusion tests: 300–2500 m, ±60° × ±20°, 2 m / 1° / 1°, no
range-rate, 20 Hz (the benchmark's `LONG_RANGE` radar), at the origin looking north."""

from __future__ import annotations

import math

import numpy as np

from cuas_node.fusion.measurement_models import RadarModel, radar_model
from cuas_node.fusion.params import RadarSensor
from cuas_node.kernel.pose import Pose

RATE_HZ = 20.0
SIGMA = np.array([2.0, math.radians(1.0), math.radians(1.0)])


def plot_radar(splits_objects: bool = False) -> RadarModel:
    """Its measurement model; `splits_objects` as a TI board's clustering (soft updates)."""
    sensor = RadarSensor(
        "radar",
        Pose.from_angles(0.0, 0.0, 0.0, (0.0, 0.0, 0.0)),
        2500.0,
        math.radians(60.0),
        math.radians(20.0),
        min_range_m=300.0,
        range_sigma_m=float(SIGMA[0]),
        az_sigma_rad=float(SIGMA[1]),
        el_sigma_rad=float(SIGMA[2]),
        range_rate=False,
        range_rate_sigma_mps=None,
        scan_rate_hz=RATE_HZ,
        false_alarms_per_scan=1.0,
        splits_objects=splits_objects,
    )
    return radar_model(sensor, range_rate=False)
