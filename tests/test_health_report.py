"""Health that means what it says: rates named after what they count, tracks counted by status."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

from cuas_node.config import build_config
from cuas_node.drivers.driver import SensorHealth
from cuas_node.health_report import RateSampler, sensor_entry
from cuas_node.kernel.clock import ManualClock
from cuas_node.kernel.measurement import RadarDetection, SensorState
from cuas_node.runtime import Runtime
from tests.sinks import RecordingSink


def test_a_radar_reports_frames_and_detections_per_second_by_name() -> None:
    rates = RateSampler()
    first = SensorHealth("radar-1", "ti-mmwave", SensorState.OK, 100, 9.9, {"frames": 40})
    sensor_entry(first, {}, 0, rates, 10.0, 5.0)
    later = SensorHealth("radar-1", "ti-mmwave", SensorState.OK, 220, 14.9, {"frames": 90})
    entry = sensor_entry(later, {}, 0, rates, 15.0, 5.0)
    assert entry["frames_per_s"] == 10.0  # 50 frames in 5 s
    assert entry["detections_per_s"] == 24.0  # 120 detections in 5 s
    assert entry["rate_hz"] == entry["detections_per_s"]  # schema 1.0's name, kept


def test_other_kinds_name_their_own_rates() -> None:
    gps = sensor_entry(
        SensorHealth("gps", "nmea", SensorState.OK, 5, 1.0, {"epochs": 5}), {}, 0, RateSampler(), 1.0, 5.0
    )
    assert "fixes_per_s" in gps and "epochs_per_s" in gps and "frames_per_s" not in gps


def radar_node(tmp_path: Path) -> Runtime:
    """A node with one TI radar at a known position, no reorder window, no drivers (fed by hand)."""
    config = build_config(
        {
            "node": {
                "id": "t",
                "state_dir": str(tmp_path),
                "position": {"lat": 52.0, "lon": 4.3, "alt_m": 0},
            },
            "fusion": {"reorder_window_s": 0.0},
            "sensors": [{"kind": "ti-mmwave", "id": "radar", "port": "/dev/null", "max_range_m": 200}],
        },
        "test",
    )
    return Runtime(config, ManualClock(0.0), [], RecordingSink("t"), session=1)


def test_fusion_counts_tracks_by_status(tmp_path: Path, schemas: dict[str, Any]) -> None:
    """One real target (confirmed) among clutter (tentative): `tracks` is what a consumer sees."""
    runtime = radar_node(tmp_path)
    rng = np.random.default_rng(2)
    s = (0.15, math.radians(1.0), math.radians(2.0), 0.1)
    for k in range(30):
        t = k * 0.1
        batch = [RadarDetection("radar", t, 0.0, 80.0 + 0.5 * t, 0.1, 0.2, -0.5, *s, snr_db=20.0)]
        for _ in range(3):  # clutter: a new place every frame
            batch.append(
                RadarDetection(
                    "radar", t, 0.0, float(rng.uniform(20, 190)), float(rng.uniform(-1, 1)),
                    float(rng.uniform(0.05, 0.6)), float(rng.uniform(-5, 5)), *s, snr_db=12.0,
                )
            )  # fmt: skip
        runtime.cycle(t, batch)
    health = runtime.health(3.0, 3.0)
    fusion = health["fusion"]
    assert (fusion["confirmed"], fusion["coasting"]) == (1, 0)
    assert fusion["tracks"] == 1 and fusion["tentative"] > 0
    jsonschema.validate({"type": "health", "node_id": "t", "seq": 1, **health}, schemas["health"])
    assert fusion["dropped"] == {
        "invalid": 0,
        "below_ground": 0,
        "unsupported": 0,
        "waiting_for_position": 0,
        "captured_after_now": 0,
        "duplicate": 0,
        "stale": 0,
    }
    assert fusion["without_range_rate"] == 0


def test_fusion_counts_what_it_could_not_use_by_reason(tmp_path: Path, schemas: dict[str, Any]) -> None:
    runtime = radar_node(tmp_path)
    s = (0.15, math.radians(1.0), math.radians(2.0), 0.1)
    batch = [
        RadarDetection("radar", 0.1, 0.0, math.nan, 0.1, 0.2, -0.5, *s, snr_db=20.0),  # invalid
        RadarDetection("radar", 0.1, 0.0, 80.0, 0.1, -0.5, -0.5, *s, snr_db=20.0),  # 38 m underground
        RadarDetection("radar", 0.1, 0.0, 60.0, 0.2, 0.1, None, 0.15, 0.02, 0.03, None, snr_db=20.0),
        RadarDetection("ghost", 0.1, 0.0, 60.0, 0.2, 0.1, 1.0, *s, snr_db=20.0),  # no such sensor
    ]
    runtime.cycle(0.2, batch)
    fusion = runtime.health(1.0, 1.0)["fusion"]
    assert fusion["dropped"] == {
        "invalid": 1,
        "below_ground": 1,
        "unsupported": 1,
        "waiting_for_position": 0,
        "captured_after_now": 0,
        "duplicate": 0,
        "stale": 0,
    }
    assert fusion["without_range_rate"] == 1
    jsonschema.validate(
        {"type": "health", "node_id": "t", "seq": 1, **runtime.health(1.0, 1.0)}, schemas["health"]
    )


def test_a_silent_sensor_is_degraded_with_a_reason_and_first_rates_count_from_start() -> None:
    from cuas_node.drivers.driver import SensorHealth
    from cuas_node.health_report import RateSampler, sensor_entry
    from cuas_node.kernel.measurement import SensorState

    quiet = SensorHealth("rid-1", "remoteid", SensorState.OK, 0, None, {"messages": 0})
    entry = sensor_entry(quiet, {}, 0, RateSampler(), 100.0, 2.0)
    assert entry["state"] == "degraded" and entry["detail"] == "no data from the sensor yet"
    stale = SensorHealth("rid-1", "remoteid", SensorState.OK, 3, 80.0, {"messages": 9})
    assert sensor_entry(stale, {}, 0, RateSampler(), 100.0, 2.0)["detail"] == "no data for 20 s"
    # The first health message, 2 s after start: rates since start, not 0.
    radar = SensorHealth("radar-1", "ti-mmwave", SensorState.OK, 60, 99.9, {"frames": 20})
    first = sensor_entry(radar, {}, 0, RateSampler(), 100.0, 2.0)
    assert first["frames_per_s"] == 10.0 and first["detections_per_s"] == 30.0 and first["state"] == "ok"
