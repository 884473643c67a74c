"""`calibrate capture` and `calibrate align`: record the sensors' measurements, then solve a
sensor's mount rotation and time offset against a reference target (docs/calibration.md §0, §1).

They belong together because `align` consumes what `capture` writes: the JSON-lines format and
the raw byte dumps are the contract between the two.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cuas_node.calibration import io as calio
from cuas_node.calibration.cli_common import (
    add_common_arguments,
    find_sensor,
    load_procedure_config,
    optional_config,
    output_path,
    print_verdict,
    report_header,
    resolve_origin,
    write_report,
)
from cuas_node.calibration.plot import Panel, Series
from cuas_node.config import ConfigError
from cuas_node.drivers.supervisor import DriverSupervisor
from cuas_node.kernel.measurement import AnyMeasurement, saw_something

_CAPTURE_BACKOFF_MAX_S = 2.0
"""A capture lasts minutes: a replugged sensor must be back within seconds, not after 30 s."""


def add_capture_parser(csub: Any) -> None:
    """`calibrate capture`: its arguments."""
    cap = csub.add_parser("capture", help="record the configured sensors' measurements as JSON lines")
    cap.add_argument("--config", help="config file (default: $CUAS_CONFIG or /etc/cuas-node/config.toml)")
    cap.add_argument("--duration", type=float, required=True, help="seconds to record")
    cap.add_argument("--out", type=Path, required=True, help="measurements JSON-lines file")
    cap.add_argument("--sensor", action="append", help="only this sensor id (repeatable)")
    cap.add_argument(
        "--raw-dir", type=Path, help="also write each serial sensor's raw bytes to DIR/<sensor>.bin"
    )


def add_align_parser(csub: Any) -> None:
    """`calibrate align`: its arguments."""
    al = csub.add_parser("align", help="solve a sensor's yaw/pitch/roll and time offset from a reference")
    add_common_arguments(al)
    al.add_argument(
        "--measurements", type=Path, action="append", required=True, help="JSON lines (repeatable)"
    )
    al.add_argument("--reference", type=Path, help="GPX or CSV track of the reference (default: Remote ID)")
    al.add_argument("--uas-id", help="the reference drone's Remote ID (default: the most heard)")
    al.add_argument("--ref-sigma-m", type=float, help="reference position error, 1-sigma metres")
    al.add_argument("--fit", help="comma-separated: yaw_deg,pitch_deg,roll_deg,time_offset_s,range_bias_m")
    al.add_argument("--max-time-offset", type=float, default=1.0, help="search window in seconds (1)")


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

    One supervised thread per driver as in the node (`cuas_node.drivers.supervisor`), so a slow
    port never delays another sensor's stamps, and a port that fails or a driver that raises is
    retried with back-off until the end and reported on stderr."""
    from cuas_node.driver_factory import UnsupportedSensor, build_driver
    from cuas_node.kernel.clock import SystemClock

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
    # The node's own supervision: a port that vanishes or a driver that raises costs that sensor a
    # back-off (capped low: a capture is short), never the other sensors or the capture.
    loops = [DriverSupervisor(d, q, stop, backoff_max_s=_CAPTURE_BACKOFF_MAX_S) for d in drivers]
    out.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + duration_s
    with out.open("w", encoding="utf-8") as handle:
        for loop in loops:
            loop.start()
        try:
            while time.monotonic() < deadline or not q.empty():
                if time.monotonic() >= deadline:
                    stop.set()
                try:
                    m = q.get(timeout=0.1)
                except queue.Empty:
                    continue
                calio.write_measurements(handle, [m])
                counts[m.sensor_id] = counts.get(m.sensor_id, 0) + saw_something(m)
        finally:
            stop.set()
            for loop in loops:
                loop.join(timeout=2.0)
            for tee in tees:
                tee.handle.close()
    for loop in loops:
        _report_errors(loop)
    return counts


def _report_errors(loop: DriverSupervisor) -> None:
    """A warning for each sensor that failed or lost measurements during the capture."""
    sid, stats = loop.driver.sensor_id, loop.stats
    if stats.errors:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(stats.errors.items()))
        total = sum(stats.errors.values())
        print(f"warning: sensor {sid}: {total} error(s) ({kinds}); last: {stats.last_error}", file=sys.stderr)
    if stats.dropped:
        print(f"warning: sensor {sid}: {stats.dropped} measurement(s) dropped (queue full)", file=sys.stderr)


def cmd_capture(args: argparse.Namespace) -> int:
    config = load_procedure_config(args)
    counts = capture(config, args.duration, args.out, sensors=args.sensor, raw_dir=args.raw_dir)
    for sid, n in counts.items():
        print(f"{sid}: {n} measurements")
    print(f"wrote {args.out}")
    return 0 if any(counts.values()) else 1


# ---------------------------------------------------------------------------------------------
# align


def cmd_align(args: argparse.Namespace) -> int:
    from cuas_node.calibration.alignment import AlignmentOptions, InitialMount, align

    config = optional_config(args)
    sensor = find_sensor(config, args.sensor)
    measurements = calio.load_measurements(args.measurements)
    frame = resolve_origin(args, config, measurements)
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
    header = report_header("alignment", args.sensor, [*map(str, args.measurements), reference.source])
    header["reference"] = reference.source
    header["origin"] = {"lat": frame.lat, "lon": frame.lon, "alt_m": frame.alt_m}
    header["sensor_type"] = result.sensor_type
    out = output_path(args, args.sensor, "alignment")
    panels = _alignment_panels(result)
    write_report(out, header, result.report(), result.config_snippet() if result.accepted else "", panels)
    print_verdict(result.residuals_before, result.residuals_after, result.sigmas, result.refusals)
    return 0 if result.accepted else 1


def _alignment_panels(result: Any) -> list[Panel]:
    """Azimuth residual over time, and (radar) the measured positions over the reference track."""
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
