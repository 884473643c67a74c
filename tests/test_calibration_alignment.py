"""Alignment against a Remote ID reference drone, with the simulator's radar where the truth is known.

The radar is mounted with yaw 7.3° (and a little pitch) while the config says 0°, and it stamps its
frames 150 ms late (time_offset_s = -0.150 recovers the true time). Its detections go the real way:
SimRadar point clouds → TI UART frames → the TI frame parser → the node's clusterer.
"""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

from cuas_node.calibration.alignment import AlignmentOptions, InitialMount, align
from cuas_node.calibration.io import (
    ReferenceTrack,
    load_measurements,
    read_track,
    reference_from_remoteid,
    write_measurements,
)
from cuas_node.drivers.radar.cluster import ClusterOptions, PointClusterer, RadarResolution
from cuas_node.drivers.radar.ti_frames import TiFrameParser
from cuas_node.drivers.sim.radar import SimRadar
from cuas_node.drivers.sim.scenario import Scenario
from cuas_node.drivers.sim.world import World
from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.measurement import AnyMeasurement, RemoteIdReport

ORIGIN = LocalFrame(52.0116, 4.3571, 52.0)
T0 = 1_750_000_000.0
TRUE_YAW, TRUE_PITCH, LATENCY = 7.3, 2.0, 0.150
OFFSET = (0.0, 0.0, 3.0)

# A pattern a pilot can fly in a minute: crossing the view both ways at two ranges, in and out.
PATTERN = [
    (0, (-40.0, 35.0, 20.0)),
    (10, (40.0, 35.0, 22.0)),
    (17, (45.0, 85.0, 30.0)),
    (29, (-50.0, 85.0, 25.0)),
    (38, (-20.0, 40.0, 12.0)),
    (48, (30.0, 65.0, 35.0)),
    (60, (0.0, 25.0, 18.0)),
]
HOVER = [(0, (10.0, 50.0, 20.0)), (60, (10.2, 50.1, 20.0))]
RADIAL = [(0, (12.0, 20.0, 10.0)), (60, (60.0, 100.0, 50.0))]


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def _scenario(waypoints: list[tuple[float, tuple[float, float, float]]]) -> Scenario:
    return Scenario(
        name="alignment",
        duration_s=60,
        node={"position": {"lat": ORIGIN.lat, "lon": ORIGIN.lon, "alt_m": ORIGIN.alt_m}},
        sensors=[
            {
                "kind": "ti-mmwave",
                "id": "radar-1",
                "rate_hz": 10,
                "mount": {"yaw_deg": TRUE_YAW, "pitch_deg": TRUE_PITCH, "offset_m": list(OFFSET)},
            }
        ],
        targets=[
            {
                "id": "ref",
                "kind": "quadcopter",
                "rcs_m2": 0.05,
                "waypoints": [{"t": t, "enu_m": list(p)} for t, p in waypoints],
                "remote_id": {"uas_id": "REF0001"},
            }
        ],
    )


def simulate(
    waypoints: list[tuple[float, tuple[float, float, float]]], seed: int = 3, rid_sigma_m: float = 1.0
) -> list[AnyMeasurement]:
    """Radar detections (late by LATENCY) and the drone's 1 Hz Remote ID reports with GNSS noise."""
    scenario = _scenario(waypoints)
    world = World(scenario)
    radar = SimRadar(scenario.sensors[0], seed)  # type: ignore[arg-type]
    parser = TiFrameParser()
    clusterer = PointClusterer.from_options(ClusterOptions())
    rng = np.random.default_rng(seed + 1)
    out: list[AnyMeasurement] = []
    for k in range(600):
        t = k * 0.1
        state = world.state(t)
        for frame in parser.feed(radar.frame(state)):
            out += clusterer.detections(
                frame.points,
                frame.snr_db,
                sensor_id="radar-1",
                t_capture=T0 + t + LATENCY,
                t_receive=t,
                resolution=RadarResolution.iwr6843(),
            )
        if k % 10 == 0 and state.enu.shape[0]:
            lat, lon, alt = ORIGIN.to_geodetic(state.enu[0] + rng.normal(0, rid_sigma_m, 3))
            out.append(
                RemoteIdReport(
                    "rid-1", T0 + t + 0.3, t, "REF0001", float(lat), float(lon), float(alt), time_utc=T0 + t
                )
            )
    return out


@pytest.fixture(scope="module")
def pattern_capture() -> list[AnyMeasurement]:
    return simulate(PATTERN)


def test_alignment_recovers_yaw_and_time_offset(pattern_capture: list[AnyMeasurement]) -> None:
    reference = reference_from_remoteid(pattern_capture, sigma_m=1.0)
    result = align(
        pattern_capture, "radar-1", reference, ORIGIN, InitialMount(offset_m=OFFSET), AlignmentOptions()
    )
    assert result.accepted, result.refusals
    v = result.values
    print("recovered", v, result.sigmas, result.residuals_after)
    assert abs(v["yaw_deg"] - TRUE_YAW) < 0.5
    assert abs(v["time_offset_s"] - (-LATENCY)) < 0.020
    assert abs(v["pitch_deg"] - TRUE_PITCH) < 1.0
    assert result.residuals_after["az_rms_deg"] < result.residuals_before["az_rms_deg"]
    assert result.n_used > 200


def test_hovering_reference_is_refused() -> None:
    capture = simulate(HOVER, seed=5)
    reference = reference_from_remoteid(capture, sigma_m=1.0)
    result = align(capture, "radar-1", reference, ORIGIN, InitialMount(offset_m=OFFSET))
    assert not result.accepted
    assert any("time_offset_s" in r or "singular" in r or "azimuth" in r for r in result.refusals)


def test_radial_line_is_refused() -> None:
    capture = simulate(RADIAL, seed=6)
    reference = reference_from_remoteid(capture, sigma_m=1.0)
    result = align(capture, "radar-1", reference, ORIGIN, InitialMount(offset_m=OFFSET))
    assert not result.accepted
    assert any("azimuth" in r or "poorly" in r or "apart" in r for r in result.refusals)


def test_jsonl_round_trip_and_gpx_reference(tmp_path: Path, pattern_capture: list[AnyMeasurement]) -> None:
    """The capture file format and a GPX track as the reference give the same answer."""
    path = tmp_path / "meas.jsonl"
    with path.open("w") as handle:
        write_measurements(handle, pattern_capture)
    loaded = load_measurements(path)
    assert len(loaded) == len(pattern_capture)
    ref = reference_from_remoteid(loaded)
    gpx = tmp_path / "track.gpx"
    points = "".join(
        f'<trkpt lat="{float(la)!r}" lon="{float(lo)!r}"><ele>{float(al)!r}</ele>'
        f"<time>{_iso(float(t))}</time></trkpt>"
        for t, la, lo, al in zip(ref.t, ref.lat, ref.lon, ref.alt_m, strict=True)
    )
    gpx.write_text(f'<gpx version="1.1"><trk><trkseg>{points}</trkseg></trk></gpx>')
    track = read_track(gpx, sigma_m=1.0)
    assert isinstance(track, ReferenceTrack) and len(track) == len(ref)
    result = align(loaded, "radar-1", track, ORIGIN, InitialMount(offset_m=OFFSET))
    assert result.accepted
    assert abs(result.values["yaw_deg"] - TRUE_YAW) < 0.5


def test_cli_align_writes_toml_and_png(tmp_path: Path, pattern_capture: list[AnyMeasurement]) -> None:
    from cuas_node.calibration.cli import main as calibrate_main

    meas = tmp_path / "meas.jsonl"
    with meas.open("w") as handle:
        write_measurements(handle, pattern_capture)
    config = tmp_path / "config.toml"
    config.write_text(
        f"""[node]
id = "mast-1"
position = {{ lat = {ORIGIN.lat}, lon = {ORIGIN.lon}, alt_m = {ORIGIN.alt_m} }}

[[sensors]]
kind = "ti-mmwave"
id = "radar-1"
port = "/dev/null"
mount = {{ yaw_deg = 0.0, pitch_deg = 0.0, roll_deg = 0.0, offset_m = [0.0, 0.0, 3.0] }}
"""
    )
    out = tmp_path / "radar-1-alignment.toml"
    status = calibrate_main(
        [
            "align",
            "--config",
            str(config),
            "--sensor",
            "radar-1",
            "--measurements",
            str(meas),
            "--out",
            str(out),
        ]
    )
    assert status == 0
    data = tomllib.loads(out.read_text())
    assert data["accepted"] is True
    assert abs(data["config"]["mount"]["yaw_deg"] - TRUE_YAW) < 0.5
    assert math.isclose(data["config"]["time_offset_s"], -LATENCY, abs_tol=0.02)
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
