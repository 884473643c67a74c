"""`cuas-node calibrate acoustic-background OUT [--capture SECONDS] [WAV...]`: learn a site's sound.

From WAV files of the site (channels averaged), or by listening to the configured array for
SECONDS (`--config`, `--sensor`: its port and channel map; the frames are decoded as the driver
decodes them and the microphones averaged). Writes the background file OUT
(drivers/acoustic/background.py) and prints what it learnt and the line to put in the sensor's
config; refuses (exit 1, nothing written) a background that holds a drone-like source.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from cuas_node.calibration.cli_common import find_sensor, optional_config


def add_acoustic_background_parser(csub: Any) -> None:
    """`calibrate acoustic-background`: its arguments."""
    bg = csub.add_parser(
        "acoustic-background", help="learn the site's ambient sound for the acoustic detector"
    )
    bg.add_argument("out", type=Path, help="background file to write (JSON)")
    bg.add_argument("wav", nargs="*", type=Path, help="WAV recordings of the site (no drone flying)")
    bg.add_argument("--capture", type=float, metavar="SECONDS", help="listen to the configured array")
    bg.add_argument("--config", help="config file (the array's port and channel map, with --capture)")
    bg.add_argument("--sensor", help="acoustic-array sensor id in --config")
    bg.add_argument(
        "--false-alarms-per-hour", type=float, default=1.0, help="target rate to report the threshold for"
    )


def capture_array(sensor: Any, seconds: float) -> Any:
    """`seconds` of the array's stream, microphones averaged → Recording. Frames after a gap or a
    format change start a new stretch; the longest stretch is kept."""
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
                chunk = frame.samples[:, list(geometry.channel_map)].astype(np.float64) / 32768.0
                stretches[-1].append((rate, chunk.mean(axis=1)))
    finally:
        transport.close()
    best = max(stretches, key=lambda s: sum(c.size for _, c in s))
    if not best:
        raise ValueError(f"no audio frames from {sensor.port} in {seconds:g} s (is the array streaming?)")
    return Recording(f"{sensor.port} (capture)", np.concatenate([c for _, c in best]), best[0][0])


def cmd_acoustic_background(args: argparse.Namespace) -> int:
    from cuas_node.drivers.acoustic.background import BackgroundError
    from cuas_node.drivers.acoustic.background_learn import Recording, learn_background
    from cuas_node.drivers.acoustic.decode import read_wav
    from cuas_node.drivers.acoustic.detector import DroneDetector, shipped_threshold
    from cuas_node.drivers.acoustic.steering import steered_mono

    if not args.false_alarms_per_hour > 0:
        raise ValueError("--false-alarms-per-hour must be > 0")
    recordings = []
    for path in args.wav:
        x, rate = read_wav(path)  # ValueError naming the file if it is not a WAV
        recordings.append(Recording(str(path), steered_mono(x, rate), rate))  # as `acoustic score`
    if args.capture is not None:
        if not args.capture > 0:
            raise ValueError("--capture SECONDS must be > 0")
        sensor = find_sensor(optional_config(args), args.sensor)
        if sensor is None or getattr(sensor, "kind", None) != "acoustic-array":
            raise ValueError("--capture needs --config and --sensor naming an acoustic-array")
        recordings.append(capture_array(sensor, args.capture))
    if not recordings:
        raise ValueError("give WAV files of the site, or --capture SECONDS with --config and --sensor")
    try:
        background = learn_background(recordings)
    except BackgroundError as exc:
        print(f"cuas-node calibrate acoustic-background: refused: {exc}")
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    background.save(args.out)
    summary = {
        "background_file": str(args.out),
        "seconds": round(background.seconds, 1),
        "windows": background.windows,
        "standing_line_bins": int(np.count_nonzero(background.suppress_db)),
        "false_alarms_per_hour": args.false_alarms_per_hour,
        "threshold": round(background.threshold(args.false_alarms_per_hour), 4),
        "config": {
            "background_file": str(args.out.resolve()),
            "false_alarms_per_hour": args.false_alarms_per_hour,
        },
    }
    print(json.dumps(summary))
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
