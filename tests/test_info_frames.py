"""What `info` says about where things are: `enu_origin` is the frame of every track's `enu_m`,
`position` follows GPS, and `info` changes only when the position changes materially."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pymap3d
import pytest

from cuas_node.assembly import core_setup
from cuas_node.config import build_config
from cuas_node.core.step import NodeCore, moved_materially
from cuas_node.kernel.clock import ManualClock
from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.measurement import GpsFix, RadarDetection
from cuas_node.kernel.pose import cartesian_to_spherical
from cuas_node.kernel.reports import NodePosition
from cuas_node.publish import wire
from cuas_node.runtime import Runtime
from tests.sinks import RecordingSink

LAT, LON, ALT = 52.0, 4.3, 40.0
RNG = np.random.default_rng(3)


@pytest.fixture(autouse=True)
def _same_noise_whatever_ran_before() -> None:
    """Every test draws its noise from the same start, whatever ran before it in this process
    (pytest-xdist spreads the tests over workers in any order)."""
    global RNG
    RNG = np.random.default_rng(3)


def _fix(t: float, east_m: float, north_m: float, hdop: float = 0.9) -> GpsFix:
    lat, lon, _ = LocalFrame(LAT, LON, ALT).to_geodetic(np.array([east_m, north_m, 0.0]))
    return GpsFix("gps", t, 0.0, float(lat), float(lon), ALT, 0.0, quality=1, num_sats=9, hdop=hdop)


def _detection(t: float, enu: np.ndarray) -> RadarDetection:
    r, az, el = cartesian_to_spherical(enu)
    s = (0.2, math.radians(1.0), math.radians(1.5), 0.1)
    return RadarDetection("radar", t, 0.0, float(r), float(az), float(el), 0.0, *s, snr_db=20.0)


def _runtime(tmp_path: Path, **node: Any) -> tuple[Runtime, RecordingSink]:
    config = build_config(
        {
            "node": {"id": "t", "state_dir": str(tmp_path), **node},
            "fusion": {"reorder_window_s": 0.0, "confirm_m": 3},
            "sensors": [
                {"kind": "ti-mmwave", "id": "radar", "port": "/dev/null", "max_range_m": 400},
                {"kind": "nmea", "id": "gps", "port": "/dev/null"},
            ],
        },
        "test",
    )
    sink = RecordingSink("t", session=4)
    return Runtime(config, ManualClock(), [], sink, session=4), sink


def test_enu_m_from_enu_origin_reproduces_the_track_position_to_centimetres(tmp_path: Path) -> None:
    """GPS fixes keep moving the node's position after the ENU origin was pinned by the first
    one: tracks stay in the pinned frame, and `enu_origin` says which frame that is."""
    runtime, sink = _runtime(tmp_path)
    target = np.array([80.0, 250.0, 60.0])
    for k in range(40):
        t = 1_700_000_000.0 + k * 0.1
        batch: list[Any] = [_detection(t, target)]
        if k % 4 == 0:  # the GPS mean wanders by metres over its first fixes
            batch.append(_fix(t, RNG.normal(0, 3.0), RNG.normal(0, 3.0)))
        runtime.cycle(t, batch)
    (_, origin), *_ = [i for i in sink.info if i[1] is not None]
    info = wire.info_payload("t", 0.0, sink.info[-1][0], sink.info[-1][1], [])
    assert info["enu_origin"] == wire.point_record(origin)
    records = [r for m in sink.tracks for r in m["tracks"]]
    assert records
    o = info["enu_origin"]
    for r in records:
        lat, lon, alt = pymap3d.enu2geodetic(*r["enu_m"], o["lat"], o["lon"], o["alt_m"])
        north_err = (lat - r["lat"]) * 111_320.0
        east_err = (lon - r["lon"]) * 111_320.0 * math.cos(math.radians(LAT))
        assert math.hypot(north_err, east_err) < 0.02 and abs(alt - r["alt_m"]) < 0.02
    # ... whereas the live position is not the frame: it settled metres away from the origin.
    p = info["position"]
    e, n, _ = pymap3d.geodetic2enu(p["lat"], p["lon"], p["alt_m"], o["lat"], o["lon"], o["alt_m"])
    assert math.hypot(e, n) > 0.1


def test_info_changes_only_when_the_position_moves_beyond_its_accuracy(tmp_path: Path) -> None:
    runtime, sink = _runtime(tmp_path)
    runtime.cycle(0.0, [])
    assert sink.info == []  # nothing known yet, nothing new
    for k in range(12):  # 1 Hz fixes scattered by ~1 m, HDOP 0.9: 4.5 m accuracy
        runtime.cycle(float(k), [_fix(float(k), RNG.normal(0, 1.0), RNG.normal(0, 1.0))])
    assert len(sink.info) == 1  # the first fix: position and origin at once
    position, origin = sink.info[0]
    assert position is not None and position.source == "gps" and position.accuracy_m == 4.5
    assert origin is not None


def test_a_configured_position_is_in_the_first_info_with_zones(tmp_path: Path) -> None:
    """The retained `info` a node publishes at start names its configured position, zones or not."""
    zone = {"id": "yard", "polygon": [[52.0, 4.3], [52.001, 4.3], [52.001, 4.301]]}
    config = build_config(
        {
            "node": {
                "id": "t",
                "state_dir": str(tmp_path),
                "position": {"lat": LAT, "lon": LON, "alt_m": ALT},
            },
            "zones": [zone],
        },
        "test",
    )
    core = NodeCore(core_setup(config))
    assert core.position() == NodePosition(LAT, LON, ALT, "config")
    assert core.origin() is not None and (core.origin().lat, core.origin().lon) == (LAT, LON)  # type: ignore[union-attr]


def test_moved_materially() -> None:
    here = NodePosition(LAT, LON, ALT, "gps", accuracy_m=4.0)
    frame = LocalFrame(LAT, LON, ALT)

    def at(e: float, n: float, u: float, source: str = "gps") -> NodePosition:
        lat, lon, alt = frame.to_geodetic(np.array([e, n, u]))
        return NodePosition(float(lat), float(lon), float(alt), source, accuracy_m=4.0)

    assert not moved_materially(at(3.0, 2.0, 5.0), here)
    assert moved_materially(at(3.0, 3.0, 0.0), here)  # 4.2 m > 4 m
    assert moved_materially(at(0.0, 0.0, 6.5), here)  # vertical: 1.5 x 4 m
    assert moved_materially(at(0.0, 0.0, 0.0, "config"), here)  # a new source
    assert moved_materially(here, None) and moved_materially(None, here) and not moved_materially(None, None)
