"""`cuas-node calibrate acoustic-background [--capture SECONDS] [--geometry G] OUT [WAV...]`: learn a
site's sound.

The background's threshold is compared, in the node, with the scores of the node's own path, so
it is learnt on them (drivers/acoustic/background_learn.py). With the array known, by listening to
the configured array for SECONDS (`--config`, `--sensor`: its port, geometry, channel map and
pipeline settings; the frames are decoded as the driver decodes them) or from multichannel WAV
files of it (`--geometry`, a preset or JSON positions, or `--config`/`--sensor`, as `acoustic
score` takes them), every window is scored through the array's pipeline as the driver scores its
stream (`decode.ArrayScorer`). Without one, or for a file with fewer channels than the array's (a
note on stderr), the channels are put in step and averaged, one beam, as `acoustic score` does. A
background is learnt on one path: the array's recordings and one-beam ones are not mixed. Writes
the background file OUT (drivers/acoustic/background.py, which records the path it was learnt
on) and prints what it learnt and the line to put in the sensor's config; refuses (exit 1, nothing
written) a background that holds a drone-like source.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from cuas_node.calibration.cli_common import UsageError, find_sensor, optional_config

PROG = "cuas-node calibrate acoustic-background"


def add_acoustic_background_parser(csub: Any) -> None:
    """`calibrate acoustic-background`: its arguments."""
    bg = csub.add_parser(
        "acoustic-background",
        help="learn the site's ambient sound for the acoustic detector",
        description="Learn the site's sound, scored as the node scores it: through the array's "
        "pipeline when the array is known (--capture, or --geometry or --config/--sensor with its "
        "multichannel WAVs), else as one beam of the channels. The file records which (learnt_on). "
        "Options go before OUT or after the WAVs, e.g. `calibrate acoustic-background --geometry "
        "respeaker-4 bg.json site.wav`.",
    )
    bg.add_argument("out", type=Path, help="background file to write (JSON)")
    bg.add_argument("wav", nargs="*", type=Path, help="WAV recordings of the site (no drone flying)")
    bg.add_argument(
        "--capture", type=float, metavar="SECONDS", help="listen to the configured array (--config, --sensor)"
    )
    bg.add_argument("--config", help="config file: the acoustic-array --sensor's port and array")
    bg.add_argument("--sensor", help="acoustic-array sensor id in --config")
    bg.add_argument(
        "--geometry",
        help="the WAVs' array: a preset (respeaker-4, respeaker-6, minidsp-uma8) or a JSON list of "
        "microphone positions [[x, y, z], ...] in metres; their windows are scored through the "
        "array's pipeline, as the node scores them (as `acoustic score --geometry`)",
    )
    bg.add_argument(
        "--false-alarms-per-hour", type=float, default=1.0, help="target rate to report the threshold for"
    )


def capture_array(sensor: Any, seconds: float) -> Any:
    """`seconds` of the array's stream → Recording of its wire channels (n, the array's
    `min_channels`), as the driver reads them. Frames after a gap or a format change start a new
    stretch; the longest stretch is kept."""
    from cuas_node.drivers.acoustic.background_learn import Recording
    from cuas_node.drivers.acoustic.geometry import resolve
    from cuas_node.drivers.acoustic.protocol import PcmFrameParser
    from cuas_node.drivers.transport import SerialTransport

    geometry = resolve(sensor.geometry, sensor.channel_map)
    transport = SerialTransport(sensor.port, sensor.baudrate)
    parser = PcmFrameParser()
    stretches: list[list[Any]] = [[]]
    rate = 0
    transport.open()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for frame in parser.feed(transport.read(65536)):
                if frame.channels < geometry.min_channels:
                    continue
                if frame.sample_rate != rate or frame.gap or frame.restart:
                    stretches.append([])
                    rate = frame.sample_rate
                chunk = frame.samples[:, : geometry.min_channels].astype(np.float64) / 32768.0
                stretches[-1].append((rate, chunk))
    finally:
        transport.close()
    best = max(stretches, key=lambda s: sum(c.shape[0] for _, c in s))
    if not best:
        raise ValueError(f"no audio frames from {sensor.port} in {seconds:g} s (is the array streaming?)")
    return Recording(f"{sensor.port} (capture)", np.concatenate([c for _, c in best]), best[0][0])


def _recordings(args: argparse.Namespace) -> tuple[list[Any], Any]:
    """The recordings to learn from and the scorer of their windows: the array's pipeline when
    the array is known and they carry its channels, else one beam (`MonoScorer`)."""
    from cuas_node.acoustic_cli import note_one_beam, recording_array_options
    from cuas_node.drivers.acoustic.background_learn import MonoScorer, Recording
    from cuas_node.drivers.acoustic.decode import ArrayScorer, read_wav
    from cuas_node.drivers.acoustic.steering import steered_mono

    if bool(args.config) != bool(args.sensor):
        raise UsageError("--config and --sensor go together")
    sensor = find_sensor(optional_config(args), args.sensor)
    if sensor is not None and getattr(sensor, "kind", None) != "acoustic-array":
        raise UsageError(f"sensor {args.sensor!r} is not an acoustic-array")
    try:
        options = recording_array_options(args.geometry, sensor)
    except ValueError as exc:  # a --geometry that names no array
        raise UsageError(str(exc)) from None
    array = None if options is None else ArrayScorer(options)
    on_array, one_beam = [], []
    for path in args.wav:
        x, rate = read_wav(path)  # ValueError naming the file if it is not a WAV
        if array is not None and array.fits(x):
            on_array.append(Recording(str(path), x, rate))
            continue
        if array is not None:
            note_one_beam(PROG, path, x.shape[1], array.geometry)
        one_beam.append(Recording(str(path), steered_mono(x, rate), rate))  # as `acoustic score`
    if args.capture is not None:
        if not args.capture > 0:
            raise UsageError("--capture SECONDS must be > 0")
        if sensor is None or array is None:
            raise UsageError("--capture needs --config and --sensor naming an acoustic-array")
        if args.geometry is not None:  # the stream is the sensor's array: another would mislabel it
            raise UsageError(
                "--capture listens to the --sensor's array: its geometry is the config's, not --geometry"
            )
        on_array.append(capture_array(sensor, args.capture))
    if array is not None and one_beam and not on_array:
        # The array was named, so a background for it was asked: one learnt on one beam would be
        # noted as a mismatch by every run of the node.
        raise ValueError(
            f"none of the {len(one_beam)} recording(s) carries the {array.geometry.name} array's "
            f"{array.geometry.min_channels} channels: record through the array (or --capture), or "
            "name no array (no --geometry, --config/--sensor) to learn a one-beam background"
        )
    if on_array and one_beam and array is not None:
        # One threshold for two kinds of score would fit neither.
        raise ValueError(
            f"{len(one_beam)} recording(s) scored as one beam ({', '.join(r.name for r in one_beam)}) "
            f"and {len(on_array)} through the {array.geometry.name} array: learn the background from "
            "the array's recordings only"
        )
    if not (on_array or one_beam):
        raise UsageError("give WAV files of the site, or --capture SECONDS with --config and --sensor")
    return (on_array, array) if on_array else (one_beam, MonoScorer())


def cmd_acoustic_background(args: argparse.Namespace) -> int:
    from cuas_node.drivers.acoustic.background import BackgroundError
    from cuas_node.drivers.acoustic.background_learn import learn_background
    from cuas_node.drivers.acoustic.detector import DroneDetector, shipped_threshold

    if not args.false_alarms_per_hour > 0:
        raise UsageError("--false-alarms-per-hour must be > 0")
    recordings, scorer = _recordings(args)
    try:
        background = learn_background(recordings, scorer=scorer)
    except BackgroundError as exc:
        print(f"{PROG}: refused: {exc}")
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    background.save(args.out)
    summary = {
        "background_file": str(args.out),
        "seconds": round(background.seconds, 1),
        "windows": background.windows,
        "learnt_on": background.learnt_on,
        "array_geometry": background.array,
        "standing_line_bins": int(np.count_nonzero(background.suppress_db)),
        "near_windows_set_aside": background.near_set_aside,
        "false_alarms_per_hour": args.false_alarms_per_hour,
        "threshold": round(background.threshold(args.false_alarms_per_hour), 4),
        "config": {
            "background_file": str(args.out.resolve()),
            "false_alarms_per_hour": args.false_alarms_per_hour,
        },
    }
    print(json.dumps(summary))
    if background.near_set_aside:
        print(
            f"note: {background.near_set_aside} window(s) set aside: the {background.array} array "
            "placed their source at one of its microphones (an insect or the like at the array, which "
            "the node marks down); they are not the site's far sound and set neither the spread nor "
            "the floor of the threshold",
            file=sys.stderr,
        )
    shipped = shipped_threshold(DroneDetector().model)
    if summary["threshold"] > shipped:
        # Quieter sites lower it, louder ones raise it: a big rise costs detections, say so.
        print(
            f"note: at this site the detector needs a drone likelihood of {summary['threshold']:.2f} "
            f"(shipped default {shipped:.2f}) to keep to {args.false_alarms_per_hour:g} false alarm(s) "
            "per hour: faint or distant drones are missed more often here. Check the recordings are "
            "the site's usual sound (not a storm or works), or accept more false alarms per hour.",
            file=sys.stderr,
        )
    return 0
