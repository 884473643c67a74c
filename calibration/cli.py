"""`cuas-node calibrate ...`: the field calibration procedures (docs/calibration.md).

The geometric procedures write a calibration TOML (fitted values, residual statistics before and
after, conditioning, date, inputs, and a `[config]` table with the exact keys to paste into the
sensor's `[[sensors]]` entry) and a PNG of before/after beside it; the two that learn the site
(acoustic-background, radar-reflectors) write the file the config points at and print the line.
Exit status: 0 accepted, 1 refused or a check that found a problem (a TOML is still written, with
`accepted = false` and the reasons; a site file is not), 2 usage error, 78 configuration error.

`node/cli.py` wires this in with `add_calibrate_parser(sub)` and dispatches `calibrate` to
`run(args)`; `main(argv)` runs the same parser stand-alone (tests, `python -m cuas_node.calibration.cli`).
This module only builds the parser and dispatches: the procedures live in
`cuas_node.calibration.cli_capture_align` (capture, align), `cuas_node.calibration.cli_sensor_checks`
(acoustic-check, rf-pathloss, radar), `cuas_node.calibration.cli_acoustic_background` and
`cuas_node.calibration.cli_radar_reflectors`, their shared plumbing in
`cuas_node.calibration.cli_common`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from cuas_node.calibration import io as calio
from cuas_node.calibration.cli_acoustic_background import (
    add_acoustic_background_parser,
    cmd_acoustic_background,
)
from cuas_node.calibration.cli_capture_align import (
    add_align_parser,
    add_capture_parser,
    capture,
    cmd_align,
    cmd_capture,
)
from cuas_node.calibration.cli_common import DEFAULT_DIR, UsageError
from cuas_node.calibration.cli_radar_reflectors import add_radar_reflectors_parser, cmd_radar_reflectors
from cuas_node.calibration.cli_sensor_checks import (
    add_acoustic_check_parser,
    add_radar_parser,
    add_rf_pathloss_parser,
    cmd_acoustic_check,
    cmd_radar,
    cmd_rf_pathloss,
)
from cuas_node.config import ConfigError

__all__ = [
    "DEFAULT_DIR",
    "PROCEDURES",
    "add_calibrate_parser",
    "capture",
    "cmd_acoustic_background",
    "cmd_acoustic_check",
    "cmd_align",
    "cmd_capture",
    "cmd_radar",
    "cmd_radar_reflectors",
    "cmd_rf_pathloss",
    "main",
    "run",
]

PROCEDURES = (
    "capture",
    "align",
    "acoustic-check",
    "acoustic-background",
    "rf-pathloss",
    "radar",
    "radar-reflectors",
)


def add_calibrate_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `calibrate` and its procedures to the `cuas-node` subparsers."""
    cal = sub.add_parser("calibrate", help="field calibration procedures (docs/calibration.md)")
    _add_procedures(cal)
    out: argparse.ArgumentParser = cal
    return out


def _add_procedures(cal: argparse.ArgumentParser) -> None:
    """One subcommand per procedure, in the order of PROCEDURES (and of the docs and `--help`)."""
    csub = cal.add_subparsers(dest="calibrate_command", required=True)
    add_capture_parser(csub)
    add_align_parser(csub)
    add_acoustic_check_parser(csub)
    add_acoustic_background_parser(csub)
    add_rf_pathloss_parser(csub)
    add_radar_parser(csub)
    add_radar_reflectors_parser(csub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cuas-node calibrate")
    _add_procedures(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 78


def run(args: argparse.Namespace) -> int:
    """Dispatch one `calibrate` procedure (ConfigError propagates to the caller's handler)."""
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "capture": cmd_capture,
        "align": cmd_align,
        "acoustic-check": cmd_acoustic_check,
        "acoustic-background": cmd_acoustic_background,
        "rf-pathloss": cmd_rf_pathloss,
        "radar": cmd_radar,
        "radar-reflectors": cmd_radar_reflectors,
    }
    try:
        return commands[args.calibrate_command](args)
    except UsageError as exc:
        print(f"cuas-node calibrate {args.calibrate_command}: {exc}", file=sys.stderr)
        return 2
    except (calio.CalibrationInputError, ValueError, OSError) as exc:
        # A file that cannot be read says which and why ("x.wav: No such file or directory"), as
        # `acoustic score` does, not Python's "[Errno 2] ..." repr.
        why = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.filename else exc
        print(f"cuas-node calibrate {args.calibrate_command}: {why}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
