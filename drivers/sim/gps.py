"""Simulated GNSS receiver: the node's true position with noise, as NMEA GGA + RMC once per epoch."""

from __future__ import annotations

import numpy as np

from cuas_node.drivers.nmea.encode import encode_gga, encode_rmc
from cuas_node.drivers.sim.scenario import NodeSpec, SimGpsSpec
from cuas_node.kernel.geo import LocalFrame

_GEOID_SEPARATION_M = 47.0  # a typical value for north-west Europe; only its consistency matters


class SimGps:
    def __init__(self, spec: SimGpsSpec, node: NodeSpec, seed: int) -> None:
        self.spec = spec
        self.frame = LocalFrame(node.position.lat, node.position.lon, node.position.alt_m)
        self.rng = np.random.default_rng(seed)

    def epoch(self, t_utc: float) -> bytes:
        offset = self.rng.normal(0.0, self.spec.sigma_m, 3) * (1.0, 1.0, 1.5)
        lat, lon, alt_hae = (float(v) for v in self.frame.to_geodetic(offset))
        alt_msl = alt_hae - _GEOID_SEPARATION_M
        return encode_gga(
            t_utc, lat, lon, alt_msl, geoid_sep_m=_GEOID_SEPARATION_M, quality=1, num_sats=9, hdop=0.9
        ) + encode_rmc(t_utc, lat, lon, speed_mps=0.0, course_deg=0.0)
