"""`cuas-node replay`: a recording's bytes through the same drivers and fusion, in timestamp order.

The loop itself (and why it is single-threaded and deterministic) is `cuas_node.replay_loop`; what
stands in for the clock, the ports and the FPV bus is `cuas_node.replay_sources`. This module is the
command line, the golden-file regeneration and the names other code imports from `cuas_node.replay`.
`--speed X` only adds wall-clock waits between cycles; the output does not depend on it.

Output (stdout): one JSON line per measurement `{"type":"measurement","kind":...,<fields>}` in
the order the drivers produced them, one per tracks message (the MQTT `tracks` envelope with a
replay-local `seq`) and one per zone alert, interleaved as they happen.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from cuas_node.config import ConfigError
from cuas_node.drivers.record import read_recording
from cuas_node.recording_config import replay_config
from cuas_node.replay_loop import CYCLE_S as CYCLE_S
from cuas_node.replay_loop import Replay, ReplayStats
from cuas_node.replay_sources import ReplayAdc as ReplayAdc
from cuas_node.replay_sources import ReplayClock
from cuas_node.replay_sources import ReplayExhausted as ReplayExhausted
from cuas_node.replay_sources import ReplayPins as ReplayPins
from cuas_node.replay_sources import ReplayTransport as ReplayTransport

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "tests" / "data" / "recordings"


def replay_file(
    path: Path,
    out: IO[str] | None,
    *,
    overrides: Mapping[str, Any] | None = None,
    speed: float | None = None,
    sink: Any = None,
) -> ReplayStats:
    recording = read_recording(path)
    with tempfile.TemporaryDirectory(prefix="cuas-replay-") as tmp:
        config = replay_config(recording, overrides, Path(tmp), str(path))
        return Replay(recording, config, out, sink=sink, speed=speed).run()


def replay_to_string(path: Path) -> str:
    """The output of a max-speed replay, as text (golden tests)."""
    import io

    buffer = io.StringIO()
    replay_file(path, buffer)
    return buffer.getvalue()


def regenerate_golden(directory: Path = GOLDEN_DIR) -> list[Path]:
    """Rewrite `<name>.expected.jsonl` beside every `<name>.pcapng` (after an intended change)."""
    written = []
    for recording in sorted(directory.glob("*.pcapng")):
        target = recording.with_name(recording.name.removesuffix(".pcapng") + ".expected.jsonl")
        target.write_text(replay_to_string(recording))
        written.append(target)
    return written


def _replay_state_dir(node_id: str) -> Path:
    import os

    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "cuas-node" / "replay" / node_id


def run_replay(args: argparse.Namespace) -> int:
    """The `cuas-node replay` command."""
    from cuas_node.config import read_toml

    speed: float | None
    if args.speed in (None, "max"):
        speed = None
    else:
        try:
            speed = float(args.speed)
        except ValueError:
            raise ConfigError(
                [f"--speed must be a number or 'max', not {args.speed!r}"], "command line"
            ) from None
        if not speed > 0:
            raise ConfigError(["--speed must be positive"], "command line")
    overrides = read_toml(Path(args.config)) if getattr(args, "config", None) else None
    try:
        recording = read_recording(args.file)
    except OSError as exc:
        print(f"cuas-node replay: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"cuas-node replay: {exc}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="cuas-replay-") as tmp:
        config = replay_config(recording, overrides, Path(tmp), str(args.file))
        sink = None
        if args.publish:
            from cuas_node.logs import setup_logging
            from cuas_node.publish.mqtt import MqttPublisher

            setup_logging(config.logging.level)
            state_dir = _replay_state_dir(config.node.id)
            t0 = min((p.t for p in recording.packets), default=0.0)
            sink = MqttPublisher(
                config.mqtt,
                config.node.id,
                state_dir,
                ReplayClock(t0),
                [(s.id, s.kind) for s in config.sensors],
            )
            sink.start()
            deadline = time.monotonic() + 5.0
            while not sink.connected and time.monotonic() < deadline:
                time.sleep(0.02)
            if not sink.connected:
                print(
                    f"cuas-node replay: broker {config.mqtt.host}:{config.mqtt.port} not reachable yet; "
                    "publishing anyway (messages may be dropped)",
                    file=sys.stderr,
                )
        replay = Replay(recording, config, sys.stdout, sink=sink, speed=speed)
        try:
            stats = replay.run()
        except BrokenPipeError:
            return 0
        finally:
            if sink is not None:
                sink.stop()
    print(
        f"cuas-node replay: {stats.packets} packets, {stats.measurements} measurements, "
        f"{stats.tracks_messages} tracks messages, {stats.alerts} alerts",
        file=sys.stderr,
    )
    if stats.fpv_mismatches:
        print(
            f"cuas-node replay: {stats.fpv_mismatches} FPV SPI transactions differ from the recorded ones "
            "(the config's channels or receivers changed since the recording?)",
            file=sys.stderr,
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m cuas_node.replay FILE` or `python -m cuas_node.replay --regenerate-golden`."""
    p = argparse.ArgumentParser(prog="python -m cuas_node.replay", description=__doc__.split("\n")[0])
    p.add_argument("file", nargs="?", type=Path, help="recording to replay at max speed")
    p.add_argument(
        "--regenerate-golden",
        nargs="?",
        const=GOLDEN_DIR,
        type=Path,
        metavar="DIR",
        help=f"rewrite the expected output of every recording in DIR (default {GOLDEN_DIR})",
    )
    args = p.parse_args(argv)
    if args.regenerate_golden is not None:
        for path in regenerate_golden(args.regenerate_golden):
            print(f"wrote {path}")
        return 0
    if args.file is None:
        p.error("give a recording, or --regenerate-golden")
    replay_file(args.file, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
