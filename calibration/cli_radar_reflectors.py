"""`cuas-node calibrate radar-reflectors OUT --sensor ID [--config FILE] [LINES...]`: learn where a
radar's plots recur at the site with nothing flying (`calibration.radar_reflectors`).

Reads the radar's detections as measurement JSON lines (what `replay` prints and `track` reads;
`-` or no file: standard input). Refuses (exit 1, nothing written) a recording too short to tell a
reflector from chance, or one whose plots mostly lack the range-rate the radar is configured to
measure; names on stderr the spots seen only for a moment (something passing through, left out);
writes the reflector map OUT and prints, as one JSON line, what it learnt and the line to put in
the radar's `[[sensors]]` section. Malformed lines are named with their line number and skipped,
as `track` does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from cuas_node.calibration.cli_common import UsageError, find_sensor, load_procedure_config
from cuas_node.config import GenericRadarSensor, TiMmwaveSensor
from cuas_node.fusion.params import RadarSensor
from cuas_node.fusion_setup import sensor_spec
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
    # Imported here, not at the top: every `cuas-node` command builds this parser, and the
    # learning (scipy.special) would add a quarter of a second to each (`config check` 0.7 s).
    from cuas_node.calibration.radar_reflectors import (
        MIN_SCANS,
        SURVEY_S,
        group_scans,
        learn_from_scans,
        without_range_rate,
    )

    config = load_procedure_config(args)
    entry = find_sensor(config, args.sensor)
    if not isinstance(entry, TiMmwaveSensor | GenericRadarSensor):
        raise UsageError(f"sensor {args.sensor!r} is a {entry.kind}, not a radar (ti-mmwave or radar)")
    sensor = sensor_spec(entry.model_copy(update={"reflectors_file": None}))  # learnt afresh
    assert isinstance(sensor, RadarSensor)
    read = _Input(args.sensor)
    recording = group_scans(read.measurements(args.lines), sensor)
    prog = "cuas-node calibrate radar-reflectors"
    if recording.n_scans < MIN_SCANS:
        seconds = MIN_SCANS / sensor.scan_rate_hz
        others = f"; {read.other_sensors} lines of other sensors ({', '.join(sorted(read.ids))})"
        print(
            f"{prog}: refused: {recording.n_scans} scans of {args.sensor!r} in the input"
            + (f" ({recording.breaks} breaks left out)" if recording.breaks else "")
            + (others if read.other_sensors and not recording.plots else "")
            + f"; at least {MIN_SCANS} are needed ({seconds:.0f} s at {sensor.scan_rate_hz:g} Hz) to tell a"
            " reflector from chance: record the site for longer, with nothing flying",
            file=sys.stderr,
        )
        return 1
    period = 1.0 / sensor.scan_rate_hz
    if not sensor.sweeps and abs(recording.frame_gap_s - period) > 0.25 * period:
        print(
            f"{prog}: note: frames come every {recording.frame_gap_s:.3g} s, rate_hz says {period:.3g} s:"
            " scans are counted at rate_hz, so the rates learnt are off by as much; set rate_hz right",
            file=sys.stderr,
        )
    if recording.seconds < SURVEY_S:
        print(
            f"{prog}: note: {recording.seconds:.0f} s of survey; under {SURVEY_S:.0f} s a reflector that"
            " shows in a few bursts, or faintly, may not be learnt",
            file=sys.stderr,
        )
    plots = sum(p.shape[0] for p in recording.plots)
    lacking = without_range_rate(sensor, recording)
    if lacking * 2 > plots:
        print(
            f"{prog}: refused: {lacking} of {plots} plots of {args.sensor!r} carry no range-rate, and the"
            " radar is configured to measure it: set range_rate = false if it does not (a map of the"
            " few plots with one would leave the rest unpriced)",
            file=sys.stderr,
        )
        return 1
    survey = learn_from_scans(sensor, recording)
    for centre in survey.passing[:SHOWN_ERRORS]:
        print(
            f"{prog}: left out a spot at {centre[0]:.0f} m, azimuth {math.degrees(centre[1]):.1f} deg,"
            f" elevation {math.degrees(centre[2]):.1f} deg: its plots came in a moment of the recording,"
            " something passing through (a car, a walker, a bird), not the site",
            file=sys.stderr,
        )
    site = survey.reflectors
    site.sensor_id = args.sensor
    document = site.to_dict() | {
        "learnt": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "scans": recording.n_scans,
        "seconds": round(recording.seconds, 3),
        "inputs": list(args.lines),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    summary = {
        "reflectors_file": str(args.out),
        "sensor": args.sensor,
        "scans": recording.n_scans,
        "seconds": round(recording.seconds, 1),
        "breaks": recording.breaks,
        "plots": plots,
        "plots_without_range_rate": lacking,
        "duplicates": read.duplicates,
        "reflectors": len(site),
        "passing": len(survey.passing),
        "rates_per_scan": sorted((round(float(r), 3) for r in site.rate), reverse=True),
        "config": {"reflectors_file": str(args.out.resolve())},
    }
    print(json.dumps(summary))
    return 0


class _Input:
    """The radar's measurements in the input files, each once: malformed lines named on stderr
    and skipped, the lines of other sensors and exact duplicates (a file given twice) counted."""

    def __init__(self, sensor_id: str) -> None:
        self.sensor_id = sensor_id
        self.other_sensors = 0
        self.ids: set[str] = set()
        self.duplicates = 0

    def measurements(self, paths: Sequence[str]) -> list[RadarDetection | EmptyRadarScan]:
        shown = 0
        seen: set[RadarDetection | EmptyRadarScan] = set()
        out: list[RadarDetection | EmptyRadarScan] = []
        for path in paths:
            try:
                handle: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
            except OSError as exc:
                raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
            try:
                for number, line in enumerate(handle, 1):
                    result = parse_line(line)
                    if isinstance(result, Rejected):
                        shown += 1
                        if shown <= SHOWN_ERRORS:
                            print(f"{path}: line {number}: {str(result)[:300]}", file=sys.stderr)
                    elif isinstance(result, RadarDetection | EmptyRadarScan):
                        if result.sensor_id != self.sensor_id:
                            self.other_sensors += 1
                            self.ids.add(result.sensor_id)
                        elif result in seen:
                            self.duplicates += 1
                        else:
                            seen.add(result)
                            out.append(result)
            finally:
                if handle is not sys.stdin.buffer:
                    handle.close()
        if shown > SHOWN_ERRORS:
            print(f"... and {shown - SHOWN_ERRORS} more malformed lines", file=sys.stderr)
        return out
