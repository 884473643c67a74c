"""`cuas-node acoustic score [--background FILE] WAV...`: the node's acoustic decision on WAV files.

One JSON line per file, `{"file", "drone_likelihood", "detected", "f0_hz"}`. `detected` is the
decision the running node would take on that sound: the detector is built by the same function as
the driver factory's (`detector.configured_detector`), from `--config`/`--sensor` (that sensor's
`background_file`, `detection_threshold`, `false_alarms_per_hour`) or from the options here, and
decides with the same `DroneDetector.detect`. A recording of a known array (`--geometry`, or the
`--sensor`'s when the file carries its channels) goes through the array's pipeline as the
driver's stream does (direction, beam, coherence and distance evidence); any other file is one
beam of its channels put in step. `node/cli.py` only hooks this in.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_acoustic_parser(sub: Any) -> None:
    """`acoustic` and its subcommands."""
    acoustic = sub.add_parser("acoustic", help="acoustic tools")
    acoustic_sub = acoustic.add_subparsers(dest="acoustic_command", required=True)
    score = acoustic_sub.add_parser(
        "score", help="drone likelihood and the node's decision for WAV files, one JSON line each"
    )
    score.add_argument("wav", nargs="+", type=Path, help="mono or multichannel WAV files")
    score.add_argument("--background", type=Path, help="site background (calibrate acoustic-background)")
    score.add_argument(
        "--false-alarms-per-hour", type=float, help="target rate for the background's threshold (1.0)"
    )
    score.add_argument("--threshold", type=float, help="explicit threshold (overrides the background's)")
    score.add_argument("--config", help="config file: decide as its --sensor does")
    score.add_argument("--sensor", help="acoustic-array sensor id in --config")
    score.add_argument(
        "--geometry",
        help="the recording's array: a preset (respeaker-4, respeaker-6, minidsp-uma8) or a JSON list "
        "of microphone positions [[x, y, z], ...] in metres; scored through the array's pipeline",
    )


def _detector(args: argparse.Namespace) -> Any:
    from cuas_node.calibration.cli_common import find_sensor, optional_config
    from cuas_node.drivers.acoustic.detector import DEFAULT_FALSE_ALARMS_PER_HOUR, configured_detector

    background, threshold, rate = args.background, args.threshold, args.false_alarms_per_hour
    if args.config or args.sensor:
        if not (args.config and args.sensor):
            raise ValueError("--config and --sensor go together")
        sensor = find_sensor(optional_config(args), args.sensor)
        if getattr(sensor, "kind", None) != "acoustic-array":
            raise ValueError(f"sensor {args.sensor!r} is not an acoustic-array")
        background = background or sensor.background_file
        threshold = threshold if threshold is not None else sensor.detection_threshold
        rate = rate if rate is not None else sensor.false_alarms_per_hour
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError("--threshold must be within [0, 1]")
    if rate is not None and not rate > 0:
        raise ValueError("--false-alarms-per-hour must be > 0")
    if args.false_alarms_per_hour is not None and background is None:
        raise ValueError("--false-alarms-per-hour sets the threshold from a background: give --background")
    return configured_detector(background, threshold, rate or DEFAULT_FALSE_ALARMS_PER_HOUR)


def _array(args: argparse.Namespace, detector: Any) -> Callable[[int], Any] | None:
    """A maker of the array's pipeline for a file's sample rate, when the recording's array is
    known (`--geometry`, or the `--sensor`'s): the node's own path for its stream. None: one beam."""
    from cuas_node.calibration.cli_common import find_sensor, optional_config
    from cuas_node.drivers.acoustic.driver import AcousticPipeline

    sensor = find_sensor(optional_config(args), args.sensor) if args.config and args.sensor else None
    options = recording_array_options(args.geometry, sensor)
    if options is None:
        return None
    return lambda rate: AcousticPipeline(sample_rate=rate, detector=detector, **options)


def recording_array_options(geometry: str | None, sensor: Any) -> dict[str, Any] | None:
    """The pipeline settings of the array a recording was made with (`AcousticPipeline`'s
    keywords): the configured acoustic-array `sensor`'s (`driver_factory.array_options`), its
    geometry replaced by `geometry` when given (a preset name or a JSON list of positions: the
    recording's own array, whatever the config's). None when neither names an array: one beam.
    Shared by `acoustic score` and `calibrate acoustic-background`, so both score a recording as
    the node's driver scores the array's stream."""
    from cuas_node.driver_factory import array_options
    from cuas_node.drivers.acoustic.geometry import resolve

    options: dict[str, Any] = {} if sensor is None else array_options(sensor)
    if geometry is not None:
        try:
            spec = json.loads(geometry) if geometry.lstrip().startswith("[") else geometry
            options["geometry"] = resolve(spec)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"--geometry: {exc}") from None
    elif sensor is None:
        return None
    return options


def cmd_acoustic(args: argparse.Namespace) -> int:
    """Exit 0; 1 if a file could not be scored (the others still are); 2 on a bad option or
    background file."""
    from cuas_node.drivers.acoustic.decode import read_wav, score_array_samples, score_samples

    try:
        detector = _detector(args)
        array = _array(args, detector)
    except ValueError as exc:  # BackgroundError included
        print(f"cuas-node acoustic score: {exc}", file=sys.stderr)
        return 2
    status = 0
    warned: set[str] = set()
    for path in args.wav:
        try:
            x, rate = read_wav(Path(path))
            _warn_if_narrowband(path, rate)
            pipeline = None if array is None else array(rate)
            if pipeline is not None and x.shape[1] >= pipeline.geometry.min_channels:
                _warn_if_learnt_otherwise(detector, pipeline.geometry.identity, warned)
                obj = score_array_samples(str(path), x, pipeline)  # the node's path for its stream
            else:
                if pipeline is not None:
                    note_one_beam("cuas-node acoustic score", path, x.shape[1], pipeline.geometry)
                _warn_if_learnt_otherwise(detector, None, warned)
                obj = score_samples(str(path), x, rate, detector)  # as `score_wav_files`, read once
            print(json.dumps(obj, separators=(",", ":")), flush=True)
        except (OSError, ValueError) as exc:
            # One unreadable file must not stop the batch: say which and why, carry on.
            why = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
            named = why if str(path) in why else f"{path}: {why}"  # `read_wav` names the file itself
            print(f"cuas-node acoustic score: {named}", file=sys.stderr)
            status = 1
    return status


def note_one_beam(prog: str, path: Path | str, channels: int, geometry: Any) -> None:
    """The stderr note of a recording with fewer channels than the array's: scored as one beam
    (`acoustic score` and `calibrate acoustic-background` alike)."""
    print(
        f"{prog}: {path}: {channels} channel(s), not the {geometry.name} array's "
        f"{geometry.min_channels}: scored as one beam, without the array's evidence",
        file=sys.stderr,
    )


def _warn_if_learnt_otherwise(detector: Any, array: str | None, warned: set[str]) -> None:
    """Once per kind of mismatch: the background's threshold was learnt on other scores than
    these (`Background.mismatch`), so the decisions here are not the ones it was set for."""
    word = "" if detector.background is None else detector.background.mismatch(array)
    if word and word not in warned:
        warned.add(word)
        print(f"cuas-node acoustic score: note: {word}", file=sys.stderr)


def _warn_if_narrowband(path: Path | str, rate: int) -> None:
    """A recording below the detector's analysis rate is scored, but on less of the spectrum than
    the node hears: say so (the site background refuses such recordings outright)."""
    from cuas_node.drivers.acoustic.features import ANALYSIS_RATE

    if rate < ANALYSIS_RATE:
        print(
            f"cuas-node acoustic score: {path}: {rate} Hz is below the {ANALYSIS_RATE} Hz the "
            f"detector analyses (it sees only up to {rate // 2} Hz): the score is less reliable",
            file=sys.stderr,
        )
