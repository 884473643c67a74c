"""Plumbing shared by every `cuas-node calibrate` procedure: config and sensor lookup, the node's
origin, where the calibration TOML goes, its common header, writing TOML + PNG, and the verdict.

Kept apart from the procedures so that each one reads as "load, fit, report" and so that every
procedure writes its record the same way (docs/calibration.md promises one TOML layout).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cuas_node.calibration import io as calio
from cuas_node.calibration.plot import Panel, save_plot
from cuas_node.config import ConfigError, load_config, resolve_config_path
from cuas_node.kernel.geo import LocalFrame
from cuas_node.kernel.measurement import AnyMeasurement, GpsFix

DEFAULT_DIR = Path("/etc/cuas-node/calibration")


class UsageError(ValueError):
    """Options that do not go together or are missing: exit 2, as argparse's own usage errors
    (`calibrate` exits 1 for a refused input or a failed check: docs/calibration.md)."""


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of every geometric procedure (align, rf-pathloss), worded identically."""
    p.add_argument("--config", help="config file (default: $CUAS_CONFIG or /etc/cuas-node/config.toml)")
    p.add_argument("--sensor", required=True, help="sensor id to calibrate")
    p.add_argument("--origin", help="node position LAT,LON,ALT_HAE (default: config, else GPS in capture)")
    p.add_argument("--out", type=Path, help="calibration TOML to write")


def load_procedure_config(args: argparse.Namespace, required: bool = True) -> Any:
    """The node config, or None when it is optional for this procedure and none was given."""
    if not required and not args.config:
        return None
    return load_config(resolve_config_path(args.config))


def optional_config(args: argparse.Namespace) -> Any:
    """The config when `--config` was given, else None: these procedures also run without one
    (explicit `--origin`, `--geometry`, ...), so the default config path is not consulted."""
    return load_procedure_config(args, required=False)


def find_sensor(config: Any, sensor_id: str | None) -> Any:
    """The `[[sensors]]` entry with this id; a ConfigError (exit 78) names the ids that exist."""
    if config is None or sensor_id is None:
        return None
    for s in config.sensors:
        if s.id == sensor_id:
            return s
    raise ConfigError(
        [f"no sensor with id {sensor_id!r} (have: {', '.join(s.id for s in config.sensors)})"], "sensors"
    )


def resolve_origin(
    args: argparse.Namespace, config: Any, measurements: Sequence[AnyMeasurement]
) -> LocalFrame:
    """--origin, else the config's node.position, else the mean GPS fix in the capture."""
    if getattr(args, "origin", None):
        try:
            lat, lon, alt = (float(v) for v in args.origin.split(","))
        except ValueError:
            raise UsageError(
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


def output_path(args: argparse.Namespace, sensor_id: str, procedure: str) -> Path:
    """`--out`, else `<DEFAULT_DIR>/<sensor>-<procedure>.toml` (the documented default)."""
    return Path(args.out) if args.out else DEFAULT_DIR / f"{sensor_id}-{procedure}.toml"


def report_header(procedure: str, sensor_id: str, inputs: Sequence[str]) -> dict[str, Any]:
    """The keys every calibration TOML starts with, so a record says what made it and from what."""
    from cuas_node import __version__

    return {
        "procedure": procedure,
        "sensor_id": sensor_id,
        "date": calio.utc_now_iso(),
        "software": f"cuas-node {__version__}",
        "inputs": [str(i) for i in inputs],
    }


def write_report(
    out: Path, header: dict[str, Any], body: dict[str, Any], paste: str, panels: list[Panel]
) -> None:
    """Write the TOML (with the paste snippet repeated as a comment) and the PNG beside it."""
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


def print_verdict(
    before: dict[str, float], after: dict[str, float], sigmas: dict[str, float], refusals: Sequence[str]
) -> None:
    """Residuals before/after, 1-sigma values, then ACCEPTED or the refusals on stderr."""
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
