"""`cuas-node calibrate radar-reflectors OUT --sensor ID [--config FILE] [LINES...]`: learn where a
radar's plots recur at the site with nothing flying (`calibration.radar_reflectors`).

Reads the radar's detections as measurement JSON lines (what `replay` prints and `track` reads;
`-` or no file: standard input), refuses a recording too short to tell a reflector from chance
(exit 1, nothing written), leaves out the plots of whatever moved through the coverage (named on
stderr), writes the reflector map OUT and prints, as one JSON line, what it learnt and the line to
put in the radar's `[[sensors]]` section. Malformed lines are named with their line number and
skipped, as `track` does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from cuas_node.calibration.cli_common import find_sensor, load_procedure_config
from cuas_node.calibration.radar_reflectors import (
    MIN_SCANS,
    group_scans,
    learn_from_scans,
    moving_targets,
)
from cuas_node.config import GenericRadarSensor, TiMmwaveSensor
from cuas_node.fusion.params import RadarSensor
from cuas_node.fusion_setup import fusion_setup, sensor_spec
from cuas_node.kernel.measurement import EmptyRadarScan, RadarDetection
from cuas_node.measurement_lines import Rejected, parse_line

SHOWN_ERRORS = 10


def add_radar_reflectors_parser(csub: Any) -> None:
    """`calibrate radar-reflectors`: its arguments."""
    p = csub.add_parser(
        "radar-reflectors", help="learn the site's fixed reflectors, so that they start no tracks"
    )
    p.add_argument("out", type=Path, help="reflector map to write (JSON)")
    p.add_argument(
        "lines",
        nargs="*",
        default=["-"],
        help="the radar's measurement JSON lines (as replay prints them), the site with nothing flying;"
        " - or none: standard input",
    )
    p.add_argument("--config", help="config file (default: $CUAS_CONFIG or /etc/cuas-node/config.toml)")
    p.add_argument("--sensor", required=True, help="id of the radar (kind ti-mmwave or radar) in the config")


def cmd_radar_reflectors(args: argparse.Namespace) -> int:
    config = load_procedure_config(args)
    entry = find_sensor(config, args.sensor)
    if not isinstance(entry, TiMmwaveSensor | GenericRadarSensor):
        raise ValueError(f"sensor {args.sensor!r} is a {entry.kind}, not a radar (ti-mmwave or radar)")
    entry = entry.model_copy(update={"reflectors_file": None})  # learnt afresh, the old map unused
    sensor = sensor_spec(entry)
    assert isinstance(sensor, RadarSensor)
    measurements = list(_radar_measurements(args.lines, args.sensor))
    recording = group_scans(measurements, sensor)
    n_scans = max(len(recording.times), round(recording.duration_s * sensor.scan_rate_hz) + 1)
    prog = "cuas-node calibrate radar-reflectors"
    if not measurements or n_scans < MIN_SCANS:
        seconds = MIN_SCANS / sensor.scan_rate_hz
        print(
            f"{prog}: refused: {len(recording.times)} scans of {args.sensor!r} in the input; at least"
            f" {MIN_SCANS} are needed ({seconds:.0f} s at {sensor.scan_rate_hz:g} Hz) to tell a"
            " reflector from chance: record the site for longer, with nothing flying",
            file=sys.stderr,
        )
        return 1
    setup = fusion_setup(config.model_copy(update={"sensors": [entry]}))
    moving = moving_targets(setup, recording, sensor)
    for line in moving.described[:SHOWN_ERRORS]:
        print(f"{prog}: {line}: its plots are left out of the map", file=sys.stderr)
    plots = [p[~theirs] for p, theirs in zip(recording.plots, moving.theirs, strict=True)]
    site = learn_from_scans(sensor, plots, n_scans)
    document = site.to_dict() | {
        "sensor_id": args.sensor,
        "learnt": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "scans": n_scans,
        "seconds": round(recording.duration_s, 3),
        "inputs": list(args.lines),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    summary = {
        "reflectors_file": str(args.out),
        "sensor": args.sensor,
        "scans": n_scans,
        "seconds": round(recording.duration_s, 1),
        "plots": sum(p.shape[0] for p in recording.plots),
        "moving_targets": len(moving.described),
        "moving_target_plots": moving.plots,
        "reflectors": len(site),
        "rates_per_scan": sorted((round(float(r), 3) for r in site.rate), reverse=True),
        "config": {"reflectors_file": str(args.out.resolve())},
    }
    print(json.dumps(summary))
    return 0


def _radar_measurements(paths: Sequence[str], sensor_id: str) -> Iterator[RadarDetection | EmptyRadarScan]:
    """The radar's measurements in the input files; malformed lines named on stderr and skipped."""
    shown = 0
    for path in paths:
        handle: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
        try:
            for number, line in enumerate(handle, 1):
                result = parse_line(line)
                if isinstance(result, Rejected):
                    shown += 1
                    if shown <= SHOWN_ERRORS:
                        print(f"{path}: line {number}: {str(result)[:300]}", file=sys.stderr)
                elif isinstance(result, RadarDetection | EmptyRadarScan) and result.sensor_id == sensor_id:
                    yield result
        finally:
            if handle is not sys.stdin.buffer:
                handle.close()
    if shown > SHOWN_ERRORS:
        print(f"... and {shown - SHOWN_ERRORS} more malformed lines", file=sys.stderr)
