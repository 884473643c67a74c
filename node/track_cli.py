"""`cuas-node track [--config FILE] [FILE|-]`: the command around `cuas_node.track`'s loop.

Arguments, the config (a TOML file, or the config a recording carries), the input file or stdin,
malformed lines and the summary on stderr, exit codes. Imported by the CLI to register the
subcommand, so it imports the fusion (numpy, scipy) only when the command runs.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from cuas_node.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from cuas_node.measurement_lines import Rejected
    from cuas_node.track import TrackStats

EX_USAGE = 2
EX_NOINPUT = 66
EX_IOERR = 74
SHOWN_ERRORS = 20
"""Malformed lines reported one by one on stderr; the rest are counted."""


def add_track_parser(sub: Any) -> None:
    """The `track` subcommand's arguments (registered by `cuas_node.cli`)."""
    p = sub.add_parser(
        "track", help="fuse measurement JSON lines (replay's) into tracks, as fast as the CPU allows"
    )
    p.add_argument(
        "file", nargs="?", default="-", help="measurement JSON lines ('-' or none: standard input)"
    )
    p.add_argument(
        "--config",
        help="config TOML, or a recording whose config to use (default: $CUAS_CONFIG; required)",
    )


def _is_pcapng(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == b"\x0a\x0d\x0d\x0a"
    except OSError:
        return False  # load_config says what is wrong with it


def track_config(path: Path, workdir: Path) -> Config:
    """The config of a run: a TOML file, or the config a recording carries (rebuilt as `replay`
    rebuilds it, its calibration files restored into `workdir`)."""
    if not _is_pcapng(path):
        return load_config(path)
    from cuas_node.drivers.record_pcapng import read_recording
    from cuas_node.recording_config import replay_config

    try:
        recording = read_recording(path)
    except (OSError, ValueError) as exc:
        raise ConfigError([f"cannot read the recording: {exc}"], str(path)) from None
    return replay_config(recording, None, workdir, str(path))


def _counts(counter: Counter[str], limit: int = 8) -> str:
    items = [f"{name}: {n}" for name, n in counter.most_common(limit)]
    if len(counter) > limit:
        items.append(f"... {len(counter) - limit} more")
    return ", ".join(items)


# A radar's plots carrying more frames a second than this many times its configured scan rate
# (over at least this many frames) are not one frame per scan (`frame_stamps.FrameRuns`).
_MISTIMED_RATIO, _MISTIMED_LEAST = 1.5, 20
_UNDERSTATED_RATIO = 3.0  # learnt false alarms this many times the configured ones: say so
# False alarms a scan priced above the uniform density, at least this many and this share: say so.
_CONCENTRATED_LEAST, _CONCENTRATED_SHARE = 1.0, 0.25


def _degrees(x: float) -> str:
    """An angle as the summary gives it: whole degrees, signed, and no "-0"."""
    whole = round(x)
    return f"{whole:+d}" if whole else "0"


def _metres(x: float) -> str:
    """A range as the summary gives it: whole metres, tenths below 20 m (a TI board's bins)."""
    return f"{x:.0f}" if x >= 20.0 else f"{x:.1f}"


def summary(stats: TrackStats) -> list[str]:
    """The stderr summary, one line per subject."""
    from cuas_node.track import sparse_stamps

    rate = stats.measurements / stats.wall_s if stats.wall_s > 0 else 0.0
    empty = f" ({stats.empty_scans} of them empty radar scans)" if stats.empty_scans else ""
    lines = [
        f"{stats.lines} lines read, {stats.measurements} measurements given to fusion{empty}, "
        f"{stats.tracks_messages} tracks messages, {stats.alerts} alerts "
        f"in {stats.wall_s:.2f} s ({rate:.0f} measurements/s)"
    ]
    if stats.malformed:
        lines.append(f"skipped {stats.malformed.total()} malformed lines ({_counts(stats.malformed)})")
    if stats.unknown_kinds:
        lines.append(
            f"skipped {stats.unknown_kinds.total()} measurements of unknown kinds "
            f"({_counts(stats.unknown_kinds)})"
        )
    if stats.unconfigured:
        lines.append(
            f"skipped {stats.unconfigured.total()} measurements of sensors not in the config "
            f"or disabled ({_counts(stats.unconfigured)}; "
            f"configured: {', '.join(stats.configured) or 'none'})"
        )
    dropped = {reason.replace("_", " "): n for reason, n in stats.dropped.items() if n}
    if dropped:
        lines.append(
            f"fusion could not use {sum(dropped.values())} of the measurements given to it "
            f"({', '.join(f'{n} {reason}' for reason, n in dropped.items())}; docs/mqtt.md, health)"
        )
    if stats.stale:
        lines.append(
            f"stale measurements by sensor: {_counts(stats.stale)} (captured longer before the "
            "newest radar or array scan than fusion reaches back: a stream that fell behind; if most "
            "of a sensor's, its clock runs behind the others': synchronise it or set its time_offset_s)"
        )
    if stats.ahead:
        lines.append(
            f"measurements stamped after the time by sensor: {_counts(stats.ahead)} "
            "(t_capture more than a second after the time the other lines give: a sensor clock "
            "ahead of the others', or its stamps in another time base, e.g. local time against UTC)"
        )
    if stats.outside_coverage:
        lines.append(
            f"{stats.outside_coverage} radar detections lay beyond their radar's configured coverage by "
            "more than 3 sigma (fused; check min_range_m, max_range_m, the fields of view, the mount "
            "and that angles are in radians)"
        )
    for sensor_id, times in stats.plot_times.items():
        rate_hz, seen = stats.frame_rates_hz.get(sensor_id), times.per_second()
        if rate_hz and times.runs:
            lines.append(
                f"radar {sensor_id!r}: {times.runs} of its {times.frames} scans carried their plots' "
                f"capture times apart (within {1e3 * times.window_s:.0f} ms, an eighth of its period, "
                "as an extractor stamps each plot); each such run of times was fused as one scan at its first"
            )
        if rate_hz and times.frames >= _MISTIMED_LEAST and seen > _MISTIMED_RATIO * rate_hz:
            lines.append(
                f"radar {sensor_id!r}: its plots carried {times.frames} capture times (a run of stamps "
                f"counting once), {seen:.1f} a second "
                f"for rate_hz = {rate_hz:g}; each time is taken as a look at its whole coverage, which "
                "charges a miss to every track it does not hit. A scanning radar that stamps each plot "
                "when its beam passed needs sweeps = true; else check rate_hz (docs/config.md)"
            )
        if rate_hz and sparse_stamps(times, rate_hz):
            lines.append(
                f"radar {sensor_id!r}: its plots carried {times.frames} capture times, never two "
                f"within {times.least_step_s:.3g} s, for rate_hz = {rate_hz:g}: capture times in "
                "milliseconds or another unit? t_capture is UTC seconds (docs/track.md); else check rate_hz"
            )
    for sensor_id, (pd, false_alarms, sweeps, specified) in stats.learnt.items():
        told = (
            f"learnt Pd {pd:.2f}"
            if math.isfinite(pd)
            else "Pd not learnt (no track it saw moved 10 of its cells: fusion.detection_probability stands)"
        )
        lines.append(
            f"radar {sensor_id!r}: {told}, {false_alarms:.1f} false alarms a "
            + ("sweep (a rate_hz twice the radar's sweep rate halves that Pd)" if sweeps else "scan")
        )
        if false_alarms > _UNDERSTATED_RATIO * max(specified, 1.0):
            lines.append(
                f"radar {sensor_id!r}: it reported {false_alarms:.1f} false alarms a "
                f"{'sweep' if sweeps else 'scan'} for false_alarms_per_scan = {specified:g}; the "
                "confirmation bar counts the configured figure (false_track_probability, "
                "docs/config.md), so with fewer configured than it makes false tracks confirm more often"
            )
    for sensor_id, profile in stats.clutter_profiles.items():
        if profile.concentrated >= max(_CONCENTRATED_LEAST, _CONCENTRATED_SHARE * profile.per_scan):
            (near, far), (low, high) = profile.peak_range_m, profile.peak_elevation_deg
            azimuth = profile.peak_azimuth_deg
            sector = (
                ""
                if azimuth is None
                else f", {_degrees(azimuth[0])}° to {_degrees(azimuth[1])}° azimuth from boresight"
            )
            look = "sweep" if stats.learnt.get(sensor_id, (0.0, 0.0, False))[2] else "scan"
            lines.append(
                f"radar {sensor_id!r}: {profile.concentrated:.1f} of its {profile.per_scan:.1f} false "
                f"alarms a {look} fell where they are denser than all of them spread evenly, the densest "
                f"{profile.peak_ratio:.0f} times (at {_metres(near)}-{_metres(far)} m, {_degrees(low)}° to "
                f"{_degrees(high)}° elevation{sector}), and are priced as clutter where they fall (ground "
                "clutter near the radar, a clutter ring, sea or rain; a drone among them confirms later: "
                "fusion.clutter_profile, docs/architecture.md)"
            )
    places_told = (
        (
            stats.fixtures,
            "places where its plots recurred for fusion.learn_fixtures_after_s now count as site "
            "clutter, as a surveyed reflector (a drone hovering there all that time would too; "
            "docs/calibration.md)",
        ),
        (
            stats.clutter_spots,
            "places gave several plots a scan at the end (trees, rain, a road's spray) and are priced "
            "as clutter there (a drone inside one confirms late; docs/architecture.md)",
        ),
    )
    for per_radar, told in places_told:
        lines += [
            f"radar {sensor_id!r}: {places} {told}" for sensor_id, places in per_radar.items() if places
        ]
    for sensor_id, (tracks, median) in stats.range_rate_contradicted.items():
        if tracks:
            lines.append(
                f"radar {sensor_id!r}: on {tracks} tracks its range moved at a speed its range-rate "
                f"contradicted (by {median:.1f} m/s, the median when each was told): a radar whose "
                "range-rate wraps reads so, by about twice its span or a multiple (set "
                "unambiguous_range_rate_mps, docs/config.md), as does one whose range-rate has the "
                "other sign (radial_mps is positive moving away) or another unit (convert it where "
                "the lines are written, docs/track.md)"
            )
    if stats.wrong_role:
        lines.append(
            f"skipped {stats.wrong_role.total()} measurements of a kind their sensor does not produce "
            f"({_counts(stats.wrong_role)})"
        )
    return lines


def run_track(args: argparse.Namespace) -> int:
    """The `cuas-node track` command: exit 0 once the input is processed (malformed lines are
    reported and skipped), 2 without a config, 66 for an input that cannot be opened, 74 for one
    that fails while being read, 78 (by the CLI's ConfigError handler) for a bad config."""
    prog = "cuas-node track"
    config_arg = args.config or os.environ.get("CUAS_CONFIG")
    if not config_arg:
        print(
            f"{prog}: give --config FILE (a config TOML with the sensors the lines refer to, or a "
            "recording whose config to use), or set $CUAS_CONFIG",
            file=sys.stderr,
        )
        return EX_USAGE
    shown = 0

    def report(number: int, rejected: Rejected) -> None:
        nonlocal shown
        shown += 1
        if shown <= SHOWN_ERRORS:
            print(f"{prog}: line {number}: {str(rejected)[:300]}", file=sys.stderr)

    from cuas_node.track import Tracking

    with tempfile.TemporaryDirectory(prefix="cuas-track-") as tmp:
        config = track_config(Path(config_arg), Path(tmp))
        tracking = Tracking(
            config, sys.stdout, report, lambda text: print(f"{prog}: {text}", file=sys.stderr)
        )
        handle: IO[bytes] = sys.stdin.buffer
        if args.file != "-":
            try:
                handle = open(args.file, "rb")  # noqa: SIM115 (closed below)
            except OSError as exc:
                print(f"{prog}: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
                return EX_NOINPUT
        try:
            stats = tracking.run(handle)
        except BrokenPipeError:  # the reader went away (`| head`): not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except OSError as exc:
            print(f"{prog}: error reading {args.file}: {exc.strerror or exc}", file=sys.stderr)
            return EX_IOERR
        finally:
            if handle is not sys.stdin.buffer:
                handle.close()
    if shown > SHOWN_ERRORS:
        print(f"{prog}: ... and {shown - SHOWN_ERRORS} more malformed lines", file=sys.stderr)
    for line in summary(stats):
        print(f"{prog}: {line}", file=sys.stderr)
    return 0
