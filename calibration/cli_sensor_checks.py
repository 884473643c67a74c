"""`calibrate acoustic-check`, `calibrate rf-pathloss` and `calibrate radar`: the per-sensor-kind
procedures (docs/calibration.md §2-§4).

Unlike `align` these need no rotation solve: each checks or fits one property of one sensor kind
(channel order of a microphone array, RSSI vs distance, radar range bias and static clutter), so
they share only the report plumbing of `cuas_node.calibration.cli_common`.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cuas_node.calibration import io as calio
from cuas_node.calibration.cli_common import (
    UsageError,
    add_common_arguments,
    find_sensor,
    optional_config,
    output_path,
    print_verdict,
    report_header,
    resolve_origin,
    write_report,
)
from cuas_node.calibration.plot import Panel, Series


def add_acoustic_check_parser(csub: Any) -> None:
    """`calibrate acoustic-check`: its arguments."""
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


def add_rf_pathloss_parser(csub: Any) -> None:
    """`calibrate rf-pathloss`: its arguments."""
    rf = csub.add_parser("rf-pathloss", help="fit RSSI vs distance of an FPV scanner or Remote ID receiver")
    add_common_arguments(rf)
    rf.add_argument(
        "--measurements", type=Path, action="append", required=True, help="JSON lines (repeatable)"
    )
    rf.add_argument("--reference", type=Path, help="GPX/CSV track (FPV); default: Remote ID in the capture")
    rf.add_argument("--uas-id", help="only this Remote ID (reference and RID samples)")
    rf.add_argument("--channel", help="only this FPV channel, e.g. R1")


def add_radar_parser(csub: Any) -> None:
    """`calibrate radar`: its arguments."""
    rd = csub.add_parser("radar", help="radar range bias (corner reflector) and static clutter map")
    rd.add_argument("--config", help="config file (for the sensor's mount and defaults)")
    rd.add_argument("--sensor", required=True, help="radar sensor id")
    rd.add_argument("--raw", type=Path, required=True, help="capture of the radar's data UART")
    rd.add_argument("--reflector-range-m", type=float, help="measured range of a corner reflector")
    rd.add_argument("--reflector-az-deg", type=float, help="its azimuth from boresight (optional)")
    rd.add_argument("--clutter", action="store_true", help="learn the static clutter map (empty site!)")
    rd.add_argument("--map-out", type=Path, help="clutter map .npz (default: beside --out)")
    rd.add_argument("--out", type=Path, help="calibration TOML to write")


# ---------------------------------------------------------------------------------------------
# acoustic check


def cmd_acoustic_check(args: argparse.Namespace) -> int:
    from cuas_node.calibration.acoustic_check import check_array, read_audio
    from cuas_node.drivers.acoustic.geometry import preset, resolve
    from cuas_node.kernel.pose import Pose, cartesian_to_spherical

    config = optional_config(args)
    sensor = find_sensor(config, args.sensor)
    if sensor is not None:
        geometry = resolve(sensor.geometry, sensor.channel_map)
        mount = sensor.mount
    elif args.geometry:
        geometry = preset(args.geometry)
        mount = None
    else:
        raise UsageError("give --config and --sensor, or --geometry")
    az, el = args.bearing_deg, args.elevation_deg
    if not args.sensor_frame:
        if mount is None:
            raise UsageError(
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
    header = report_header("acoustic-check", sensor_id, [str(args.audio)])
    header["source"] = {
        "bearing_deg": args.bearing_deg,
        "elevation_deg": args.elevation_deg,
        "distance_m": args.distance_m if args.distance_m is not None else math.inf,
        "sensor_frame_az_deg": round(az, 3),
        "sensor_frame_el_deg": round(el, 3),
    }
    header["geometry"] = geometry.name
    out = output_path(args, sensor_id, "acoustic-check")
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
    write_report(out, header, result.report(), paste, panels)
    print(f"verdict: {result.verdict.upper()}")
    for message in result.messages:
        print(f"  - {message}")
    return 0 if result.ok else 1


# ---------------------------------------------------------------------------------------------
# RF path loss


def cmd_rf_pathloss(args: argparse.Namespace) -> int:
    from cuas_node.calibration.pathloss import fit_path_loss, samples_from_capture

    config = optional_config(args)
    sensor = find_sensor(config, args.sensor)
    measurements = calio.load_measurements(args.measurements)
    frame = resolve_origin(args, config, measurements)
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
    header = report_header("rf-pathloss", args.sensor, [*map(str, args.measurements)])
    header["channel"] = args.channel or ""
    out = output_path(args, args.sensor, "rf-pathloss")
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
    write_report(out, header, result.report(), "", panels)
    print(
        f"RSSI at 1 m {result.p1_dbm:.1f} dBm (±{result.sigma_p1_db:.1f}), exponent {result.exponent:.2f} "
        f"(±{result.sigma_exponent:.2f}), shadowing {result.shadowing_db:.1f} dB over {result.n_used} samples"
    )
    print_verdict({}, {}, {}, result.refusals)
    return 0 if result.accepted else 1


# ---------------------------------------------------------------------------------------------
# radar


def cmd_radar(args: argparse.Namespace) -> int:
    from cuas_node.calibration.radar_cal import learn_clutter, range_bias, read_ti_capture

    if args.reflector_range_m is None and not args.clutter:
        raise UsageError("give --reflector-range-m (range bias) and/or --clutter (static clutter map)")
    frames = read_ti_capture(args.raw)
    out = output_path(args, args.sensor, "radar")
    header = report_header("radar", args.sensor, [str(args.raw)])
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
        print_verdict({}, {}, {}, bias.refusals)
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
    write_report(out, header, body, "\n".join(paste_lines), panels)
    return 0 if accepted else 1
