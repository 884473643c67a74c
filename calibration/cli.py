"""`cuas-node calibrate ...`: the field calibration procedures (docs/calibration.md).

Each procedure writes a calibration TOML (fitted values, residual statistics before and after,
conditioning, date, inputs, and a `[config]` table with the exact keys to paste into the sensor's
`[[sensors]]` entry) and a PNG of before/after beside it. Exit status: 0 accepted, 1 refused or a
check that found a problem (the TOML is still written, with `accepted = false` and the reasons),
2 usage error, 78 configuration error.

`node/cli.py` wires this in with `add_calibrate_parser(sub)` and dispatches `calibrate` to
`run(args)`; `main(argv)` runs the same parser stand-alone (tests, `python -m calibration.cli`).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import queue
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from calibration import io as calio
from calibration.plot import Panel, Series, save_plot
from node.config import ConfigError, load_config, resolve_config_path
from node.geo import LocalFrame
from node.measurement import AnyMeasurement, GpsFix

DEFAULT_DIR = Path("/etc/cuas-node/calibration")
PROCEDURES = ("capture", "align", "acoustic-check", "rf-pathloss", "radar")


def add_calibrate_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `calibrate` and its procedures to the `cuas-node` subparsers."""
    cal = sub.add_parser("calibrate", help="field calibration procedures (docs/calibration.md)")
    _fill(cal)
    out: argparse.ArgumentParser = cal
    return out


def _fill(cal: argparse.ArgumentParser) -> None:
    csub = cal.add_subparsers(dest="calibrate_command", required=True)

    cap = csub.add_parser("capture", help="record the configured sensors' measurements as JSON lines")
    cap.add_argument("--config", help="config file (default: $CUAS_CONFIG or /etc/cuas-node/config.toml)")
    cap.add_argument("--duration", type=float, required=True, help="seconds to record")
    cap.add_argument("--out", type=Path, required=True, help="measurements JSON-lines file")
    cap.add_argument("--sensor", action="append", help="only this sensor id (repeatable)")
    cap.add_argument(
        "--raw-dir", type=Path, help="also write each serial sensor's raw bytes to DIR/<sensor>.bin"
    )

    al = csub.add_parser("align", help="solve a sensor's yaw/pitch/roll and time offset from a reference")
    _common(al)
    al.add_argument(
        "--measurements", type=Path, action="append", required=True, help="JSON lines (repeatable)"
    )
    al.add_argument("--reference", type=Path, help="GPX or CSV track of the reference (default: Remote ID)")
    al.add_argument("--uas-id", help="the reference drone's Remote ID (default: the most heard)")
    al.add_argument("--ref-sigma-m", type=float, help="reference position error, 1-sigma metres")
    al.add_argument("--fit", help="comma-separated: yaw_deg,pitch_deg,roll_deg,time_offset_s,range_bias_m")
    al.add_argument("--max-time-offset", type=float, default=1.0, help="search window in seconds (1)")

    ac = csub.add_parser(
        "acoustic-check", help="verify a microphone array's channel order, polarity, geometry"
    )
    ac.add_argument("--config", help="config file (geometry, channel_map and mount of --sensor)")
    ac.add_argument("--sensor", help="sensor id in the config")
    ac.add_argument("--geometry", help="preset name when there is no config (respeaker-4, ...)")
    ac.add_argument(
        "--audio", type=Path, required=True, help="framed-PCM capture of the array's port, or WAV"
    )
    ac.add_argument("--bearing-deg", type=float, required=True, help="compass bearing of the source")
    ac.add_argument("--elevation-deg", type=float, default=0.0, help="elevation of the source (0)")
    ac.add_argument("--distance-m", type=float, help="distance of the source (default: far away)")
    ac.add_argument(
        "--sensor-frame", action="store_true", help="--bearing-deg is relative to the array's boresight"
    )
    ac.add_argument("--out", type=Path, help="calibration TOML to write")

    rf = csub.add_parser("rf-pathloss", help="fit RSSI vs distance of an FPV scanner or Remote ID receiver")
    _common(rf)
    rf.add_argument(
        "--measurements", type=Path, action="append", required=True, help="JSON lines (repeatable)"
    )
    rf.add_argument("--reference", type=Path, help="GPX/CSV track (FPV); default: Remote ID in the capture")
    rf.add_argument("--uas-id", help="only this Remote ID (reference and RID samples)")
    rf.add_argument("--channel", help="only this FPV channel, e.g. R1")

    rd = csub.add_parser("radar", help="radar range bias (corner reflector) and static clutter map")
    rd.add_argument("--config", help="config file (for the sensor's mount and defaults)")
    rd.add_argument("--sensor", required=True, help="radar sensor id")
    rd.add_argument("--raw", type=Path, required=True, help="capture of the radar's data UART")
    rd.add_argument("--reflector-range-m", type=float, help="measured range of a corner reflector")
    rd.add_argument("--reflector-az-deg", type=float, help="its azimuth from boresight (optional)")
    rd.add_argument("--clutter", action="store_true", help="learn the static clutter map (empty site!)")
    rd.add_argument("--map-out", type=Path, help="clutter map .npz (default: beside --out)")
    rd.add_argument("--out", type=Path, help="calibration TOML to write")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="config file (default: $CUAS_CONFIG or /etc/cuas-node/config.toml)")
    p.add_argument("--sensor", required=True, help="sensor id to calibrate")
    p.add_argument("--origin", help="node position LAT,LON,ALT_HAE (default: config, else GPS in capture)")
    p.add_argument("--out", type=Path, help="calibration TOML to write")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cuas-node calibrate")
    _fill(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 78


def run(args: argparse.Namespace) -> int:
    """Dispatch one `calibrate` procedure (ConfigError propagates to the caller's handler)."""
    commands = {
        "capture": cmd_capture,
        "align": cmd_align,
        "acoustic-check": cmd_acoustic_check,
        "rf-pathloss": cmd_rf_pathloss,
        "radar": cmd_radar,
    }
    try:
        return commands[args.calibrate_command](args)
    except (calio.CalibrationInputError, ValueError, OSError) as exc:
        print(f"cuas-node calibrate {args.calibrate_command}: {exc}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------------------------------------
# helpers


def _config(args: argparse.Namespace, required: bool = True) -> Any:
    if not required and not args.config:
        return None
    return load_config(resolve_config_path(args.config))


def _sensor(config: Any, sensor_id: str | None) -> Any:
    if config is None or sensor_id is None:
        return None
    for s in config.sensors:
        if s.id == sensor_id:
            return s
    raise ConfigError(
        [f"no sensor with id {sensor_id!r} (have: {', '.join(s.id for s in config.sensors)})"], "sensors"
    )


def _origin(args: argparse.Namespace, config: Any, measurements: Sequence[AnyMeasurement]) -> LocalFrame:
    """--origin, else the config's node.position, else the mean GPS fix in the capture."""
    if getattr(args, "origin", None):
        try:
            lat, lon, alt = (float(v) for v in args.origin.split(","))
        except ValueError:
            raise ValueError(
                "--origin must be LAT,LON,ALT (degrees, degrees, metres above the ellipsoid)"
            ) from None
        return LocalFrame(lat, lon, alt)
    if config is not None and config.node.position is not None:
        p = config.node.position
        return LocalFrame(p.lat, p.lon, p.alt_m)
    fixes = [m for m in measurements if isinstance(m, GpsFix) and m.quality > 0]
    if fixes:
        return LocalFrame(
            float(np.mean([f.lat for f in fixes])),
            float(np.mean([f.lon for f in fixes])),
            float(np.mean([f.alt_hae_m or 0.0 for f in fixes])),
        )
    raise ValueError(
        "the node's position is unknown: give --origin, node.position in the config, or capture GPS"
    )


def _out(args: argparse.Namespace, sensor_id: str, procedure: str) -> Path:
    return Path(args.out) if args.out else DEFAULT_DIR / f"{sensor_id}-{procedure}.toml"


def _header(procedure: str, sensor_id: str, inputs: Sequence[str]) -> dict[str, Any]:
    from node import __version__

    return {
        "procedure": procedure,
        "sensor_id": sensor_id,
        "date": calio.utc_now_iso(),
        "software": f"cuas-node {__version__}",
        "inputs": [str(i) for i in inputs],
    }


def _write(out: Path, header: dict[str, Any], body: dict[str, Any], paste: str, panels: list[Panel]) -> None:
    note = f"cuas-node calibration: {header['procedure']} of {header['sensor_id']}\n"
    if paste:
        note += "Paste into this sensor's [[sensors]] entry:\n" + "\n".join(
            "  " + p for p in paste.splitlines()
        )
    calio.write_toml(out, {**header, **body}, note)
    png = out.with_suffix(".png")
    backend = save_plot(png, f"{header['procedure']}: {header['sensor_id']}", panels)
    print(f"wrote {out} and {png} ({backend})")
    if paste:
        print("paste into the sensor's [[sensors]] entry:\n" + paste)


# ---------------------------------------------------------------------------------------------
# capture


class _TeeTransport:
    """Passes a driver's transport through while appending every byte read to a file."""

    def __init__(self, inner: Any, path: Path) -> None:
        self.inner = inner
        self.handle = path.open("ab")

    def open(self) -> None:
        self.inner.open()

    def read(self, max_bytes: int = 65536) -> bytes:
        data: bytes = self.inner.read(max_bytes)
        if data:
            self.handle.write(data)
        return data

    def write(self, data: bytes) -> None:
        self.inner.write(data)

    def close(self) -> None:
        self.inner.close()
        self.handle.flush()

    @property
    def is_open(self) -> bool:
        return bool(self.inner.is_open)


def capture(
    config: Any,
    duration_s: float,
    out: Path,
    *,
    sensors: Sequence[str] | None = None,
    raw_dir: Path | None = None,
    clock: Any = None,
) -> dict[str, int]:
    """Run the configured drivers (no fusion, no MQTT) and write their measurements as JSON lines.

    One thread per driver as in the node, so a slow port never delays another sensor's stamps; a
    port that fails to open is retried every second until the end."""
    from drivers.registry import UnsupportedSensor, build_driver
    from node.clock import SystemClock

    clock = clock or SystemClock()
    chosen = [s for s in config.sensors if s.enabled and (not sensors or s.id in sensors)]
    if not chosen:
        raise ValueError("no enabled sensor to capture")
    try:
        drivers = [build_driver(s, clock) for s in chosen]
    except UnsupportedSensor as exc:
        raise ConfigError([str(exc)], "sensors") from None
    tees: list[_TeeTransport] = []
    if raw_dir is not None:
        raw_dir.mkdir(parents=True, exist_ok=True)
        for d in drivers:
            if hasattr(d, "transport"):
                tee = _TeeTransport(d.transport, raw_dir / f"{d.sensor_id}.bin")
                d.transport = tee
                tees.append(tee)
    q: queue.Queue[AnyMeasurement] = queue.Queue(maxsize=100000)
    stop = threading.Event()
    counts = {d.sensor_id: 0 for d in drivers}
    errors: dict[str, str] = {}

    def loop(driver: Any) -> None:
        opened = False
        while not stop.is_set():
            try:
                if not opened:
                    driver.open()
                    opened = True
                for m in driver.read():
                    q.put(m)
            except Exception as exc:  # a port that vanished: note it and retry, as the node does
                errors[driver.sensor_id] = str(exc)
                if opened:
                    with contextlib.suppress(Exception):
                        driver.close()
                opened = False
                stop.wait(1.0)
        if opened:
            with contextlib.suppress(Exception):
                driver.close()

    threads = [
        threading.Thread(target=loop, args=(d,), daemon=True, name=f"cal-{d.sensor_id}") for d in drivers
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + duration_s
    with out.open("w", encoding="utf-8") as handle:
        for t in threads:
            t.start()
        try:
            while time.monotonic() < deadline or not q.empty():
                if time.monotonic() >= deadline:
                    stop.set()
                try:
                    m = q.get(timeout=0.1)
                except queue.Empty:
                    continue
                calio.write_measurements(handle, [m])
                counts[m.sensor_id] = counts.get(m.sensor_id, 0) + 1
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=2.0)
            for tee in tees:
                tee.handle.close()
    for sid, message in errors.items():
        print(f"warning: sensor {sid}: {message}", file=sys.stderr)
    return counts


def cmd_capture(args: argparse.Namespace) -> int:
    config = _config(args)
    counts = capture(config, args.duration, args.out, sensors=args.sensor, raw_dir=args.raw_dir)
    for sid, n in counts.items():
        print(f"{sid}: {n} measurements")
    print(f"wrote {args.out}")
    return 0 if any(counts.values()) else 1


# ---------------------------------------------------------------------------------------------
# align


def cmd_align(args: argparse.Namespace) -> int:
    from calibration.alignment import AlignmentOptions, InitialMount, align

    config = _config(args, required=False) if not args.config else _config(args)
    sensor = _sensor(config, args.sensor)
    measurements = calio.load_measurements(args.measurements)
    frame = _origin(args, config, measurements)
    if args.reference is not None:
        reference = calio.read_track(args.reference, args.ref_sigma_m or 3.0)
    else:
        reference = calio.reference_from_remoteid(measurements, args.uas_id, args.ref_sigma_m)
    initial = InitialMount()
    if sensor is not None:
        m = sensor.mount
        initial = InitialMount(m.yaw_deg, m.pitch_deg, m.roll_deg, tuple(m.offset_m), sensor.time_offset_s)
    fit = tuple(p.strip() for p in args.fit.split(",")) if args.fit else None
    options = AlignmentOptions(fit=fit, max_time_offset_s=args.max_time_offset)
    result = align(measurements, args.sensor, reference, frame, initial, options)
    header = _header("alignment", args.sensor, [*map(str, args.measurements), reference.source])
    header["reference"] = reference.source
    header["origin"] = {"lat": frame.lat, "lon": frame.lon, "alt_m": frame.alt_m}
    header["sensor_type"] = result.sensor_type
    out = _out(args, args.sensor, "alignment")
    panels = _alignment_panels(result)
    _write(out, header, result.report(), result.config_snippet() if result.accepted else "", panels)
    _print_summary(result.residuals_before, result.residuals_after, result.sigmas, result.refusals)
    return 0 if result.accepted else 1


def _alignment_panels(result: Any) -> list[Panel]:
    p = result.plot
    if not p:
        return [Panel("no matched measurements")]
    panels = [
        Panel(
            "azimuth residual",
            "time (s)",
            "measured - predicted (deg)",
            [
                Series(p["t"], p["az_before_deg"], "before (config)", "red"),
                Series(p["t"], p["az_after_deg"], "after (calibrated)", "green"),
            ],
        )
    ]
    if "meas_enu_before" in p:
        ref = p["ref_enu"]
        panels.append(
            Panel(
                "top view (ENU)",
                "east (m)",
                "north (m)",
                [
                    Series(ref[:, 0], ref[:, 1], "reference", "grey", "line"),
                    Series(p["meas_enu_before"][:, 0], p["meas_enu_before"][:, 1], "before", "red"),
                    Series(p["meas_enu_after"][:, 0], p["meas_enu_after"][:, 1], "after", "green"),
                ],
                equal_aspect=True,
            )
        )
    return panels


def _print_summary(
    before: dict[str, float], after: dict[str, float], sigmas: dict[str, float], refusals: Sequence[str]
) -> None:
    for key in after:
        print(f"  {key}: before {before.get(key, math.nan):.3f}, after {after[key]:.3f}")
    for key, value in sigmas.items():
        print(f"  1-sigma {key}: {value:.4g}")
    if refusals:
        print("REFUSED:", file=sys.stderr)
        for r in refusals:
            print(f"  - {r}", file=sys.stderr)
    else:
        print("ACCEPTED")


# ---------------------------------------------------------------------------------------------
# acoustic check


def cmd_acoustic_check(args: argparse.Namespace) -> int:
    from calibration.acoustic_check import check_array, read_audio
    from calibration.pose import Pose, cartesian_to_spherical
    from drivers.acoustic.geometry import preset, resolve

    config = _config(args, required=False) if not args.config else _config(args)
    sensor = _sensor(config, args.sensor)
    if sensor is not None:
        geometry = resolve(sensor.geometry, sensor.channel_map)
        mount = sensor.mount
    elif args.geometry:
        geometry = preset(args.geometry)
        mount = None
    else:
        raise ValueError("give --config and --sensor, or --geometry")
    az, el = args.bearing_deg, args.elevation_deg
    if not args.sensor_frame:
        if mount is None:
            raise ValueError(
                "a compass bearing needs the sensor's mount from --config; or use --sensor-frame"
            )
        pose = Pose.from_angles(mount.yaw_deg, mount.pitch_deg, mount.roll_deg, (0.0, 0.0, 0.0))
        u = np.array(
            [
                math.cos(math.radians(el)) * math.sin(math.radians(az)),
                math.cos(math.radians(el)) * math.cos(math.radians(az)),
                math.sin(math.radians(el)),
            ]
        )
        _, a, e = cartesian_to_spherical(pose.enu_to_sensor(u))
        az, el = math.degrees(float(a)), math.degrees(float(e))
    samples, fs = read_audio(args.audio)
    result = check_array(samples, fs, geometry, az, el, args.distance_m)
    sensor_id = args.sensor or geometry.name
    header = _header("acoustic-check", sensor_id, [str(args.audio)])
    header["source"] = {
        "bearing_deg": args.bearing_deg,
        "elevation_deg": args.elevation_deg,
        "distance_m": args.distance_m if args.distance_m is not None else math.inf,
        "sensor_frame_az_deg": round(az, 3),
        "sensor_frame_el_deg": round(el, 3),
    }
    header["geometry"] = geometry.name
    out = _out(args, sensor_id, "acoustic-check")
    residual = np.asarray(result.tdoa_residuals_us)
    panels = [
        Panel(
            "hypotheses (best first)",
            "rank",
            "coherence",
            [Series(np.arange(result.plot["scores"].size), result.plot["scores"], "score", "blue")],
        ),
        Panel(
            "pair delays: measured - expected",
            "expected delay (us)",
            "residual (us)",
            [Series(result.plot["tdoa_expected_us"], residual, "best channel order", "green")],
        ),
    ]
    paste = f"channel_map = {result.suggested_channel_map}" if result.verdict.startswith("swapped") else ""
    _write(out, header, result.report(), paste, panels)
    print(f"verdict: {result.verdict.upper()}")
    for message in result.messages:
        print(f"  - {message}")
    return 0 if result.ok else 1


# ---------------------------------------------------------------------------------------------
# RF path loss


def cmd_rf_pathloss(args: argparse.Namespace) -> int:
    from calibration.pathloss import fit_path_loss, samples_from_capture

    config = _config(args, required=False) if not args.config else _config(args)
    sensor = _sensor(config, args.sensor)
    measurements = calio.load_measurements(args.measurements)
    frame = _origin(args, config, measurements)
    reference = None
    if args.reference is not None:
        reference = calio.read_track(args.reference)
    else:
        with contextlib.suppress(calio.CalibrationInputError):
            reference = calio.reference_from_remoteid(measurements, args.uas_id)
    offset = tuple(sensor.mount.offset_m) if sensor is not None else (0.0, 0.0, 0.0)
    time_offset = sensor.time_offset_s if sensor is not None else 0.0
    d, rssi, source = samples_from_capture(
        measurements, args.sensor, frame, offset, reference, args.channel, args.uas_id, time_offset
    )
    result = fit_path_loss(d, rssi, args.sensor, source)
    header = _header("rf-pathloss", args.sensor, [*map(str, args.measurements)])
    header["channel"] = args.channel or ""
    out = _out(args, args.sensor, "rf-pathloss")
    dd = result.plot.get("distance_m", np.zeros(0))
    yy = result.plot.get("rssi_dbm", np.zeros(0))
    series = [Series(dd, yy, "samples", "blue")]
    if np.isfinite(result.exponent) and dd.size:
        grid = np.geomspace(max(float(dd.min()), 1.0), float(dd.max()), 50)
        series.append(Series(grid, result.predict(grid), "fit", "red", "line"))
    panels = [Panel("RSSI vs distance", "distance (m)", "RSSI (dBm)", series)]
    if dd.size:
        panels.append(
            Panel(
                "residual vs log distance",
                "10 log10(distance / 1 m)",
                "dB",
                [Series(10 * np.log10(dd), yy - result.predict(dd), "after", "green")],
            )
        )
    _write(out, header, result.report(), "", panels)
    print(
        f"RSSI at 1 m {result.p1_dbm:.1f} dBm (±{result.sigma_p1_db:.1f}), exponent {result.exponent:.2f} "
        f"(±{result.sigma_exponent:.2f}), shadowing {result.shadowing_db:.1f} dB over {result.n_used} samples"
    )
    _print_summary({}, {}, {}, result.refusals)
    return 0 if result.accepted else 1


# ---------------------------------------------------------------------------------------------
# radar


def cmd_radar(args: argparse.Namespace) -> int:
    from calibration.radar_cal import learn_clutter, range_bias, read_ti_capture

    if args.reflector_range_m is None and not args.clutter:
        raise ValueError("give --reflector-range-m (range bias) and/or --clutter (static clutter map)")
    frames = read_ti_capture(args.raw)
    out = _out(args, args.sensor, "radar")
    header = _header("radar", args.sensor, [str(args.raw)])
    body: dict[str, Any] = {}
    panels: list[Panel] = []
    accepted = True
    paste_lines: list[str] = []
    if args.reflector_range_m is not None:
        bias = range_bias(frames, args.reflector_range_m, args.reflector_az_deg)
        body["range_bias"] = bias.report()
        accepted &= bias.accepted
        err = bias.plot.get("error_m", np.zeros(0))
        idx = np.arange(err.size)
        panels.append(
            Panel(
                "corner reflector range error",
                "frame",
                "measured - true (m)",
                [Series(idx, err, "before", "red"), Series(idx, err - bias.bias_m, "after bias", "green")],
            )
        )
        if bias.accepted:
            paste_lines.append(f"range_bias_m = {bias.bias_m:.3f}")
        print(
            f"range bias {bias.bias_m:+.3f} m (±{bias.sigma_m:.3f}) from {bias.n_seen}/{bias.n_frames} frames"
        )
        _print_summary({}, {}, {}, bias.refusals)
    if args.clutter:
        clutter = learn_clutter(frames)
        map_out = args.map_out or out.with_suffix(".npz")
        map_out.parent.mkdir(parents=True, exist_ok=True)
        clutter.static_map.save(map_out)
        body["clutter"] = clutter.report() | {"map_file": str(map_out)}
        g = clutter.static_map.grid
        occupancy = clutter.static_map.hits / max(clutter.frames, 1)
        panels.append(
            Panel(
                "slow-point occupancy (range x azimuth)",
                "azimuth (deg)",
                "range (m)",
                image=occupancy,
                extent=(-90.0, 90.0, 0.0, g.max_range_m),
            )
        )
        panels.append(
            Panel(
                "learned static cells",
                "azimuth (deg)",
                "range (m)",
                image=clutter.static_map.static.astype(np.float64),
                extent=(-90.0, 90.0, 0.0, g.max_range_m),
            )
        )
        paste_lines.append(f'static_map_file = "{map_out}"')
        print(
            f"clutter map: {clutter.static_cells} static cells; drops {clutter.slow_points_dropped} of "
            f"{clutter.slow_points} slow points over {clutter.frames} frames -> {map_out}"
        )
        for w in clutter.warnings:
            print(f"warning: {w}", file=sys.stderr)
    body["accepted"] = accepted
    _write(out, header, body, "\n".join(paste_lines), panels)
    return 0 if accepted else 1


if __name__ == "__main__":
    sys.exit(main())
