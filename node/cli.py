"""`cuas-node`: the one command a technician and a developer use.

Exit codes: 0 success, 1 runtime failure, 2 usage error (argparse), 78 configuration error
(EX_CONFIG: systemd's `RestartPreventExitStatus=78` stops a restart loop on a bad file).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cuas_node import __version__
from cuas_node.acoustic_cli import add_acoustic_parser, cmd_acoustic
from cuas_node.config import (
    EX_CONFIG,
    Config,
    ConfigError,
    build_config,
    deep_merge,
    load_config,
    read_toml,
    resolve_config_path,
)
from cuas_node.logs import setup_logging
from cuas_node.track_cli import add_track_parser, run_track

log = logging.getLogger(__name__)


def _speed(text: str) -> float:
    """A usage error (exit 2 with the usage line), not a configuration error, for a bad --speed."""
    try:
        speed = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
    if not speed > 0 or speed == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return speed


def _speed_or_max(text: str) -> str:
    if text != "max":
        _speed(text)
    return text


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cuas-node", description="Counter-drone sensor node")
    p.add_argument("--version", action="version", version=f"cuas-node {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the node on its configured sensors")
    run.add_argument("--config", help="config file (default: $CUAS_CONFIG or /etc/cuas-node/config.toml)")

    sim = sub.add_parser("sim", help="run the whole node on a simulated scenario")
    sim.add_argument("scenario", help="built-in scenario name (e.g. demo) or a scenario TOML file")
    sim.add_argument("--speed", type=_speed, default=1.0, help="scenario seconds per wall second (default 1)")
    sim.add_argument("--duration", type=float, help="stop after this many scenario seconds")
    sim.add_argument("--seed", type=int, help="override the scenario's random seed")
    sim.add_argument("--truth", type=Path, help="write ground truth as JSON lines to this file")
    sim.add_argument("--config", help="config file overriding mqtt/fusion/logging/outputs/node.state_dir")

    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    check = cfg_sub.add_parser("check", help="validate a config file and its files, as `run` does")
    check.add_argument("file", help="config TOML file")
    check.add_argument("--keys-only", action="store_true", help="skip the files and directories it names")

    watch = sub.add_parser("watch", help="show a node's live tracks and health in the terminal")
    watch.add_argument("--config", help="take broker settings from this config file")
    watch.add_argument("--host", help="broker host (default: config, else localhost)")
    watch.add_argument("--port", type=int, help="broker port (default: config, else 1883)")
    watch.add_argument("--node", default="+", help="node id to watch (default: all)")
    watch.add_argument("--topic-root", help="topic root (default: config, else cuas/v1)")
    watch.add_argument("--duration", type=float, help="exit after this many seconds")
    watch.add_argument("--plain", action="store_true", help="print lines instead of redrawing the screen")
    watch.add_argument("--until-offline", action="store_true", help="exit when the watched node goes offline")

    doctor = sub.add_parser("doctor", help="check this node's setup: PASS/WARN/FAIL per line, with the fix")
    doctor.add_argument("--config", help="config file (default: $CUAS_CONFIG or /etc/cuas-node/config.toml)")
    doctor.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="seconds to wait for frames, GPS fix and broker (default 5)",
    )

    evaluation = sub.add_parser("eval", help="score the whole pipeline on a scenario in virtual time (JSON)")
    evaluation.add_argument("scenario", help="built-in scenario name (e.g. demo) or a scenario TOML file")
    evaluation.add_argument("--seeds", type=int, default=1, help="number of seeds to run (default 1)")
    evaluation.add_argument("--seed", type=int, help="first seed (default: the scenario's seed)")

    add_acoustic_parser(sub)

    decode = sub.add_parser("decode", help="decode a file of raw sensor bytes into JSON lines")
    decode.add_argument("kind", help="sensor kind: nmea, ti-mmwave, remoteid, acoustic")
    decode.add_argument("file", type=Path, help="raw capture ('-' for standard input)")

    record = sub.add_parser("record", help="run the node and record every sensor's raw bytes into pcapng")
    record.add_argument("out", type=Path, help="output pcapng file")
    record.add_argument("--config", help="config file (default: $CUAS_CONFIG or /etc/cuas-node/config.toml)")
    record.add_argument("--duration", type=float, help="stop after this many seconds")
    record.add_argument(
        "--rotate-bytes",
        type=int,
        default=0,
        help="start OUT-00001.pcapng, ... past this size (default: one file)",
    )

    replay = sub.add_parser("replay", help="feed a recording through the drivers and fusion; JSON lines out")
    replay.add_argument(
        "file", type=Path, help="a pcapng recording made by `record` (or [record] beside run)"
    )
    replay.add_argument(
        "--speed",
        type=_speed_or_max,
        default="max",
        help="recording seconds per wall second, or max (default)",
    )
    replay.add_argument("--publish", action="store_true", help="also publish through MQTT")
    replay.add_argument(
        "--config", help="config overriding the recorded one (mqtt, node id, fusion; not sensors)"
    )

    from cuas_node.calibration.cli import add_calibrate_parser

    add_track_parser(sub)
    add_calibrate_parser(sub)
    return p


def _cmd_config_check(args: argparse.Namespace) -> int:
    """The same checks as `run` before it connects (`cuas_node.preflight`), so a file that passes
    here starts; only the warnings differ in where they go (here stderr, in `run` the log)."""
    config = load_config(Path(args.file))
    if not args.keys_only:
        from cuas_node.preflight import preflight

        for warning in preflight(config, args.file):
            print(f"warning: {warning}", file=sys.stderr)
    print(
        f"{args.file}: OK: node {config.node.id}, {len(config.sensors)} sensor(s), "
        f"broker {config.mqtt.host}:{config.mqtt.port}"
    )
    return 0


def _start_node(
    config: Config,
    clock: Any,
    until: threading.Event | None = None,
    on_ready: Callable[[], None] | None = None,
    hardware: dict[str, tuple[Any, Any]] | None = None,
    notify_systemd: bool = False,
    recorder: Any = None,
) -> int:
    from cuas_node.driver_factory import UnsupportedSensor, build_driver
    from cuas_node.gpio import build_gpio
    from cuas_node.outputs.outputs import Outputs
    from cuas_node.publish.mqtt import MqttPublisher
    from cuas_node.runtime import Runtime
    from cuas_node.sdnotify import ServiceNotifications
    from cuas_node.web import start_web

    try:
        drivers = [build_driver(s, clock, hardware) for s in config.sensors if s.enabled]
    except UnsupportedSensor as exc:
        raise ConfigError([str(exc)], "sensors") from None
    if recorder is None and config.record.enabled:
        recorder = _recorder(
            config, clock, config.record.path, config.record.rotate_bytes, config.record.keep_files
        )
    if recorder is not None:
        from cuas_node.drivers.record import tap_driver

        drivers = [tap_driver(d, recorder) for d in drivers]
        recorder.start()
    from cuas_node.publish.state_dir import check_state_dirs

    check_state_dirs(config.node.state_dir, config.node.spool_dir)  # exit 78 naming the path and the fix
    publisher = MqttPublisher(
        config.mqtt,
        config.node.id,
        config.node.state_dir,
        clock,
        [(s.id, s.kind) for s in config.sensors],
        spool_dir=config.node.spool_dir,
    )
    outputs = Outputs.from_config(config, publisher.session, clock.now, publisher)
    runtime = Runtime(
        config, clock, drivers, publisher, publisher.session, build_gpio(config.gpio), outputs=outputs
    )
    web = start_web(config, publisher, runtime.health_blocks, runtime.zone_listeners)  # the live view
    # READY=1 once the sensor loops and fusion run (never waiting for the broker); the watchdog
    # pings only while every loop's heartbeat is fresh and the publisher makes progress (a broker
    # outage is progress: the outbox keeps turning). Outside systemd both are no-ops.
    service = (
        ServiceNotifications(runtime.heartbeats, health=publisher.health_problem) if notify_systemd else None
    )

    def ready() -> None:
        if on_ready is not None:
            on_ready()
        if service is not None:
            service.ready(f"running with {len(drivers)} sensor(s)")

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        runtime.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        runtime.run(until=until, on_ready=ready)
    finally:
        if service is not None:
            service.stopping()
        if web is not None:
            web.stop()
        if recorder is not None:
            recorder.close()
            log.info("recorded %d packets into %s", recorder.packets, ", ".join(map(str, recorder.files)))
    return 1 if runtime.failure else 0  # not 78: the unit restarts the node after a failure


def _load_for_run(config_arg: str | None) -> Config:
    """The config, logging set up, and what `config check` refuses refused (ConfigError, exit 78)
    before anything starts; each warning (a loose secret, a password without TLS) logged once."""
    from cuas_node.preflight import preflight

    path = resolve_config_path(config_arg)
    config = load_config(path)
    setup_logging(config.logging.level)
    for warning in preflight(config, str(path)):
        log.warning("config: %s", warning)
    return config


def _recorder(config: Config, clock: Any, path: Path, rotate_bytes: int = 0, keep_files: int = 0) -> Any:
    from cuas_node.drivers.record import Recorder
    from cuas_node.recording_config import recording_header

    return Recorder(path, clock, recording_header(config), rotate_bytes=rotate_bytes, keep_files=keep_files)


def _cmd_record(args: argparse.Namespace) -> int:
    from cuas_node.kernel.clock import SystemClock

    config = _load_for_run(args.config)
    clock = SystemClock()
    until = threading.Event()
    if args.duration is not None:
        timer = threading.Timer(args.duration, until.set)
        timer.daemon = True
        timer.start()
    recorder = _recorder(config, clock, args.out, max(0, args.rotate_bytes))
    return _start_node(config, clock, until=until, recorder=recorder)


def _cmd_replay(args: argparse.Namespace) -> int:
    from cuas_node.replay import run_replay

    return run_replay(args)


def _cmd_run(args: argparse.Namespace) -> int:
    from cuas_node.kernel.clock import SystemClock

    config = _load_for_run(args.config)
    return _start_node(config, SystemClock(), notify_systemd=True)


def _sim_state_dir(node_id: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "cuas-node" / "sim" / node_id


def _cmd_sim(args: argparse.Namespace) -> int:
    import time

    from cuas_node.drivers.sim.runner import Simulation, open_truth
    from cuas_node.drivers.sim.scenario import load_scenario
    from cuas_node.kernel.clock import ScaledClock

    scenario = load_scenario(args.scenario)
    if args.duration is not None:
        scenario = scenario.model_copy(update={"duration_s": args.duration})
    start = scenario.start_utc if scenario.start_utc is not None else float(int(time.time()))
    clock = ScaledClock(start, args.speed)
    simulation = Simulation(scenario, clock, seed=args.seed)
    data: dict[str, Any] = simulation.node_config()
    # (the spool follows the state directory, also one that CUAS_NODE__STATE_DIR gives: a fresh
    # state directory is then a fresh spool too)
    data["node"]["state_dir"] = str(_sim_state_dir(scenario.node.id))
    if args.config:
        overrides = read_toml(Path(args.config))
        overrides.pop("sensors", None)  # the scenario defines the sensors
        data = deep_merge(data, overrides)
    config = build_config(data, args.config or f"scenario {scenario.name}")
    setup_logging(config.logging.level)
    from cuas_node.config import FpvRx5808Sensor
    from cuas_node.driver_factory import fpv_receivers

    simulation.build_hardware(
        {s.id: fpv_receivers(s) for s in config.sensors if isinstance(s, FpvRx5808Sensor)}
    )
    truth = open_truth(args.truth)
    simulation.start_devices()

    def begin() -> None:
        clock.start(None if scenario.start_utc is not None else time.time())  # sim time = UTC, not 2 s behind
        simulation.start(truth)

    try:
        return _start_node(
            config, clock, until=simulation.finished, on_ready=begin, hardware=simulation.hardware
        )
    finally:
        simulation.stop()
        if truth is not None:
            truth.close()


def _cmd_watch(args: argparse.Namespace) -> int:
    from cuas_node.watch import watch

    host, port, root, section = "localhost", 1883, "cuas/v1", None
    if args.config or os.environ.get("CUAS_CONFIG"):
        config = load_config(resolve_config_path(args.config))
        host, port, root = config.mqtt.host, config.mqtt.port, config.mqtt.topic_root
        section = config.mqtt  # (its credentials and TLS)
    host = args.host or os.environ.get("CUAS_MQTT__HOST", host)
    try:
        port = args.port or int(os.environ.get("CUAS_MQTT__PORT", port))
    except ValueError:
        raise ConfigError(["mqtt.port (env CUAS_MQTT__PORT): not a whole number"], "environment") from None
    root = args.topic_root or os.environ.get("CUAS_MQTT__TOPIC_ROOT", root)
    if section is not None and (host, port) != (section.host, section.port):
        # The config's credentials and TLS are for its broker: never sent to another one.
        print(
            f"cuas-node watch: {host}:{port} is not the config's broker ({section.host}:{section.port}): "
            "its credentials and TLS are not used",
            file=sys.stderr,
        )
        section = None
    return watch(
        host,
        port,
        root,
        args.node,
        duration=args.duration,
        plain=args.plain,
        until_offline=args.until_offline,
        mqtt_section=section,
    )


def _cmd_decode(args: argparse.Namespace) -> int:
    from cuas_node.decode import run_decode

    return run_decode(args)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from cuas_node.doctor import run_doctor

    return run_doctor(resolve_config_path(args.config), timeout_s=args.timeout)


def _cmd_eval(args: argparse.Namespace) -> int:
    from cuas_node.evaluation.cli import cmd_eval

    return cmd_eval(args)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from cuas_node.calibration.cli import run

    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {
        "run": _cmd_run,
        "sim": _cmd_sim,
        "watch": _cmd_watch,
        "decode": _cmd_decode,
        "acoustic": cmd_acoustic,
        "eval": _cmd_eval,
        "doctor": _cmd_doctor,
        "record": _cmd_record,
        "replay": _cmd_replay,
        "track": run_track,
        "calibrate": _cmd_calibrate,
    }
    try:
        if args.command == "config":
            return _cmd_config_check(args)
        return commands[args.command](args)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
