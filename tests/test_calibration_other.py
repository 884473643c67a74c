"""RF path loss, radar range bias and clutter map, the capture helper and the report writers."""

from __future__ import annotations

import json
import math
import threading
import time
import tomllib
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cuas_node.calibration.io import dumps_toml, load_measurements, read_csv_track, write_measurements
from cuas_node.calibration.pathloss import fit_path_loss, samples_from_capture
from cuas_node.calibration.plot import Panel, Series, encode_png, save_plot
from cuas_node.calibration.radar_cal import learn_clutter, range_bias, read_ti_capture
from cuas_node.drivers.nmea.encode import encode_gga
from cuas_node.drivers.radar.ti_encode import encode_frame
from cuas_node.drivers.sim.radar import SimRadar
from cuas_node.drivers.sim.scenario import SimRadarSpec
from cuas_node.drivers.sim.world import TargetState
from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.measurement import EmptyRadarScan, RadarDetection, RemoteIdReport

ORIGIN = LocalFrame(52.0116, 4.3571, 52.0)


# --- RF path loss --------------------------------------------------------------------------------


def test_path_loss_recovers_exponent_and_intercept() -> None:
    rng = np.random.default_rng(11)
    d = np.exp(rng.uniform(math.log(5.0), math.log(400.0), 400))
    rssi = -38.0 - 10 * 2.6 * np.log10(d) + rng.normal(0, 4.0, d.size)
    fades = rng.random(d.size) < 0.08  # deep multipath fades and a body in the way: outliers
    rssi[fades] -= rng.uniform(15, 30, fades.sum())
    result = fit_path_loss(d, rssi, "fpv-1")
    print("path loss", result.p1_dbm, result.exponent, result.shadowing_db)
    assert result.accepted, result.refusals
    assert abs(result.exponent - 2.6) < 0.15
    assert abs(result.p1_dbm - (-38.0)) < 2.0
    assert 3.0 < result.shadowing_db < 5.5


def test_path_loss_refuses_a_narrow_distance_span() -> None:
    rng = np.random.default_rng(12)
    d = rng.uniform(80.0, 120.0, 200)
    result = fit_path_loss(d, -40 - 25 * np.log10(d) + rng.normal(0, 4, d.size))
    assert not result.accepted
    assert any("span" in r for r in result.refusals)


def test_remote_id_receiver_path_loss_from_capture(tmp_path: Path) -> None:
    """A RID drone flying out to 300 m: each report carries its own position, so nothing else is needed."""
    from cuas_node.calibration.cli import main as calibrate_main

    rng = np.random.default_rng(13)
    reports = []
    for k in range(300):
        east, north = 5.0 + k, 0.3 * k
        lat, lon, alt = ORIGIN.to_geodetic(np.array([east, north, 30.0]))
        d = math.sqrt(east**2 + north**2 + 30.0**2)
        rssi = -45.0 - 22.0 * math.log10(d) + rng.normal(0, 3.0)
        reports.append(
            RemoteIdReport("rid-1", 1e9 + k, k, "DRONE1", float(lat), float(lon), float(alt), rssi_dbm=rssi)
        )
    d, rssi, _ = samples_from_capture(reports, "rid-1", ORIGIN)
    result = fit_path_loss(d, rssi)
    assert abs(result.exponent - 2.2) < 0.15 and result.accepted
    meas = tmp_path / "rid.jsonl"
    with meas.open("w") as handle:
        write_measurements(handle, reports)
    out = tmp_path / "rid-1-rf-pathloss.toml"
    origin = f"{ORIGIN.lat},{ORIGIN.lon},{ORIGIN.alt_m}"
    args = ["rf-pathloss", "--sensor", "rid-1", "--measurements", str(meas), "--origin", origin]
    assert calibrate_main([*args, "--out", str(out)]) == 0
    report = tomllib.loads(out.read_text())
    assert abs(report["result"]["exponent"] - 2.2) < 0.15


# --- radar ---------------------------------------------------------------------------------------


def test_captures_and_replay_lines_with_empty_radar_frames_load(tmp_path: Path) -> None:
    """A real radar's capture holds empty frames (`EmptyRadarScan`): `calibrate capture` writes
    them and every procedure's loader reads them back, as it reads `replay`'s lines of them."""
    plot = RadarDetection("radar-1", 100.0, 1.0, 40.0, 0.1, 0.05, -1.0, 0.5, 0.02, 0.02, 0.1, 20.0)
    empty = EmptyRadarScan("radar-1", 100.1, 1.1)
    path = tmp_path / "capture.jsonl"
    with path.open("w") as handle:
        write_measurements(handle, [plot, empty])
    replayed = json.dumps(
        {
            "type": "measurement",
            "kind": "EmptyRadarScan",
            "sensor_id": "radar-1",
            "t_capture": 100.2,
            "t_receive": 1.2,
        }
    )
    path.write_text(path.read_text() + replayed + "\n")
    assert load_measurements(path) == [plot, empty, EmptyRadarScan("radar-1", 100.2, 1.2)]


def _radar(clutter_points: int = 12, false_alarms: float = 1.0, seed: int = 21) -> SimRadar:
    spec = SimRadarSpec(
        kind="ti-mmwave",
        id="radar-1",
        rate_hz=20,
        max_range_m=100.0,  # the shipped profiles reach 104 m; the map's grid 120 m
        static_clutter_points=clutter_points,
        false_alarms_per_frame=false_alarms,
    )
    return SimRadar(spec, seed)


def _no_targets() -> TargetState:
    return TargetState([], [], np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)))


def test_range_bias_from_a_corner_reflector(tmp_path: Path) -> None:
    radar = _radar(clutter_points=6)
    reflector = TargetState(["cr"], ["bird"], np.array([1.0]), np.array([[6.0, 24.0, 1.0]]), np.zeros((1, 3)))
    true_range = float(np.linalg.norm([6.0, 24.0, 1.0]))
    bias = 0.32
    data = bytearray()
    for k in range(200):
        pts, snr = radar.points(reflector)
        r = np.linalg.norm(pts[:, :3], axis=1, keepdims=True)
        pts[:, :3] *= (r + bias) / np.maximum(r, 1e-6)  # the board's range bias, on every point
        data += encode_frame(k, pts.astype(np.float32), snr_db=snr, noise_db=np.full(snr.shape, 60.0))
    raw = tmp_path / "reflector.bin"
    raw.write_bytes(bytes(data))
    frames = read_ti_capture(raw)
    result = range_bias(frames, true_range, az_deg=math.degrees(math.atan2(6.0, 24.0)))
    print("range bias", result.bias_m, result.sigma_m, result.n_seen)
    assert result.accepted, result.refusals
    assert abs(result.bias_m - bias) < 0.05


def test_clutter_map_learned_from_an_empty_site(tmp_path: Path) -> None:
    from cuas_node.calibration.cli import main as calibrate_main

    radar = _radar(clutter_points=20, false_alarms=1.0)
    data = b"".join(radar.frame(_no_targets()) for _ in range(300))
    raw = tmp_path / "empty.bin"
    raw.write_bytes(data)
    result = learn_clutter(read_ti_capture(raw))
    assert result.static_cells > 0
    # Every clutter point (with its jitter) falls in a learned cell; random false alarms do not.
    clutter = np.column_stack([radar.clutter, np.zeros(radar.clutter.shape[0])]).astype(np.float32)
    assert not result.static_map.keep(clutter, None).any()
    assert result.slow_points_dropped / result.slow_points > 0.95
    out = tmp_path / "radar-1-radar.toml"
    status = calibrate_main(
        ["radar", "--sensor", "radar-1", "--raw", str(raw), "--clutter", "--out", str(out)]
    )
    assert status == 0
    report = tomllib.loads(out.read_text())
    assert Path(report["clutter"]["map_file"]).exists()
    assert report["clutter"]["result"]["static_cells"] == result.static_cells


# --- capture helper ------------------------------------------------------------------------------


def test_capture_runs_the_configured_drivers(tmp_path: Path) -> None:
    from cuas_node.calibration.cli import capture
    from cuas_node.config import build_config
    from cuas_node.drivers.sim.pty import PtyPort

    port = PtyPort()
    config = build_config(
        {"node": {"id": "cap"}, "sensors": [{"kind": "nmea", "id": "gps", "port": port.path}]}, "test"
    )
    stop = threading.Event()

    def feed() -> None:
        k = 0
        while not stop.is_set():
            port.write(encode_gga(1.75e9 + k, ORIGIN.lat, ORIGIN.lon, 10.0, 42.0))
            k += 1
            time.sleep(0.05)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        out = tmp_path / "meas.jsonl"
        counts = capture(config, 1.0, out, raw_dir=tmp_path / "raw")
    finally:
        stop.set()
        writer.join()
        port.close()
    assert counts["gps"] > 3
    loaded = load_measurements(out)
    assert len(loaded) == counts["gps"] and loaded[0].sensor_id == "gps"
    assert (tmp_path / "raw" / "gps.bin").read_bytes().startswith(b"$GPGGA")


def test_capture_survives_a_raising_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A driver bug (here: the third sentence raises) costs that sensor a back-off, never the
    capture or the other sensors, and the error is reported at the end."""
    import cuas_node.driver_factory
    from cuas_node.calibration.cli import capture
    from cuas_node.config import build_config
    from cuas_node.drivers.sim.pty import PtyPort

    ports = {"gps": PtyPort(), "gps-bad": PtyPort()}
    config = build_config(
        {
            "node": {"id": "cap"},
            "sensors": [{"kind": "nmea", "id": sid, "port": p.path} for sid, p in ports.items()],
        },
        "test",
    )
    real_build = cuas_node.driver_factory.build_driver

    def build_driver(sensor: Any, clock: Any, hardware: Any = None) -> Any:
        driver: Any = real_build(sensor, clock)
        if sensor.id == "gps-bad":
            inner, calls = driver.to_measurements, [0]

            def third_raises(*args: Any) -> Any:
                calls[0] += 1
                if calls[0] == 3:
                    raise ValueError("GGA field 6 out of range")
                return inner(*args)

            monkeypatch.setattr(driver, "to_measurements", third_raises)
        return driver

    monkeypatch.setattr(cuas_node.driver_factory, "build_driver", build_driver)
    stop = threading.Event()

    def feed() -> None:
        k = 0
        while not stop.is_set():
            for port in ports.values():
                port.write(encode_gga(1.75e9 + k, ORIGIN.lat, ORIGIN.lon, 10.0, 42.0))
            k += 1
            time.sleep(0.05)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        counts = capture(config, 2.0, tmp_path / "meas.jsonl")
    finally:
        stop.set()
        writer.join()
        for port in ports.values():
            port.close()
    assert counts["gps"] > 20  # never interrupted
    assert counts["gps-bad"] > 5  # two before the fault, and more after the reopen
    err = capsys.readouterr().err
    assert "warning: sensor gps-bad: 1 error(s) (internal 1)" in err
    assert "internal error in read: ValueError: GGA field 6 out of range" in err
    assert "sensor gps:" not in err


# --- writers -------------------------------------------------------------------------------------


def test_toml_writer_round_trips() -> None:
    data = {
        "procedure": "alignment",
        "accepted": False,
        "refusals": ['say "why"', "and\nmore"],
        "result": {"yaw_deg": 7.25, "sigma": math.inf, "n": 3},
        "config": {"mount": {"yaw_deg": 7.25, "offset_m": [0.0, 0.0, 3.0]}, "time_offset_s": -0.15},
    }
    text = dumps_toml(data, "a header\nline two")
    back = tomllib.loads(text)
    assert back["refusals"] == data["refusals"]
    assert back["config"]["mount"]["offset_m"] == [0.0, 0.0, 3.0]
    assert back["result"]["sigma"] == math.inf


def test_csv_track_reader(tmp_path: Path) -> None:
    path = tmp_path / "walk.csv"
    path.write_text(
        "Time,Latitude,Longitude,Ele\n2025-05-01T10:00:01Z,52.0,4.3,10\n2025-05-01T10:00:00Z,52.1,4.4,11\n"
    )
    track = read_csv_track(path)
    assert len(track) == 2 and track.t[1] - track.t[0] == 1.0 and track.lat[0] == 52.1


@pytest.mark.parametrize("builtin", [True, False])
def test_png_plot(tmp_path: Path, builtin: bool) -> None:
    if not builtin:
        pytest.importorskip("matplotlib")
    x = np.linspace(0, 10, 50)
    panels = [
        Panel(
            "a", "x", "y", [Series(x, np.sin(x), "pts", "red"), Series(x, np.cos(x), "line", "green", "line")]
        ),
        Panel("b", image=np.outer(np.arange(10), np.arange(20)).astype(float), extent=(0, 1, 0, 1)),
    ]
    path = tmp_path / "plot.png"
    backend = save_plot(path, "t", panels, builtin=builtin)
    blob = path.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n" and backend == ("builtin" if builtin else "matplotlib")


def test_encode_png_is_valid() -> None:
    img = np.zeros((3, 2, 3), dtype=np.uint8)
    img[1, 1] = (255, 0, 0)
    blob = encode_png(img)
    length = int.from_bytes(blob[33:37], "big")
    raw = zlib.decompress(blob[41 : 41 + length])
    assert len(raw) == 3 * (1 + 2 * 3) and raw[7 + 1 + 3 : 7 + 1 + 6] == b"\xff\x00\x00"


def test_replay_style_lines_are_read() -> None:
    """`cuas-node replay` names the class in `kind`; other line types are skipped."""
    from cuas_node.calibration.io import iter_measurements

    lines = [
        '{"type":"track","id":1}',
        '{"type":"measurement","kind":"RadarDetection","sensor_id":"r","t_capture":1.0,"t_receive":0.5,'
        '"range_m":10,"az_rad":0.1,"el_rad":0,"radial_mps":1,"sigma_range_m":0.2,"sigma_az_rad":0.02,'
        '"sigma_el_rad":0.03,"sigma_radial_mps":0.1,"snr_db":20,"n_points":2,"extent_m":0.3}',
        '{"sensor_id":"g","t_capture":2.0,"lat":52,"lon":4,"alt_msl_m":null,"geoid_sep_m":null,"quality":1}',
    ]
    got = list(iter_measurements(lines))
    assert [type(m).__name__ for m in got] == ["RadarDetection", "GpsFix"]


def test_capture_counts_what_a_radar_saw_not_its_empty_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A radar whose 20 frames held nothing: the capture file keeps its 20 empty looks, but the
    count `calibrate capture` prints (and exits 1 on when nothing was captured) is of things
    seen, as the driver's health and doctor count them."""
    import cuas_node.driver_factory
    from cuas_node.calibration.cli import capture
    from cuas_node.config import build_config
    from cuas_node.drivers.radar.ti_driver import TiMmwaveDriver
    from cuas_node.kernel.clock import SystemClock
    from tests.fakes import ChunkTransport

    frames = b"".join(encode_frame(k, np.zeros((0, 4)), None) for k in range(20))
    config = build_config(
        {"node": {"id": "cap"}, "sensors": [{"kind": "nmea", "id": "r", "port": "/dev/null"}]}, "t"
    )

    def build_driver(sensor: Any, clock: Any, hardware: Any = None) -> Any:
        return TiMmwaveDriver(sensor.id, ChunkTransport([frames]), SystemClock())

    monkeypatch.setattr(cuas_node.driver_factory, "build_driver", build_driver)
    counts = capture(config, 0.5, tmp_path / "meas.jsonl")
    assert counts == {"r": 0}
    looks = load_measurements(tmp_path / "meas.jsonl")
    assert len(looks) == 20 and all(isinstance(m, EmptyRadarScan) for m in looks)
