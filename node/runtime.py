"""The running node: driver threads → one queue → fusion → publisher, with health beside the data.

Each sensor has its own thread so a slow or vanished port never stalls the others; fusion runs on
one thread so the tracker needs no locks. Every loop records a heartbeat: the systemd watchdog is
fed only while they all make progress.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import serial
from cuas_node.commands import AlertAckArgs, Command, Result, SetLogLevelArgs, ZoneUpdateArgs
from cuas_node.config import Config
from cuas_node.drivers.driver import SensorDriver
from cuas_node.fusion.engine import FusionEngine
from cuas_node.fusion.tracks import Status
from cuas_node.gpio import GpioController, NodeStatus, status_for
from cuas_node.kernel.clock import Clock
from cuas_node.kernel.measurement import AnyMeasurement, GpsFix, SensorState
from cuas_node.system_health import SystemMonitor

log = logging.getLogger(__name__)

_QUEUE_CAPACITY = 20000
_BATCH_MAX = 2000
_BACKOFF_MIN_S = 0.5
_BACKOFF_MAX_S = 30.0
_GPS_FIX_MAX_AGE_S = 5.0  # a receiver that reported no valid fix for this long has lost it
_LED_UPDATE_S = 0.25


class TrackSink(Protocol):
    """What the runtime needs from a publisher (MQTT, or stdout for replay)."""

    def start(self) -> None: ...
    def update_info(self, position: dict[str, Any] | None) -> None: ...
    def publish_tracks(self, t: float, tracks: list[dict[str, Any]]) -> None: ...
    def publish_health(self, payload: dict[str, Any]) -> None: ...
    def publish_alert(self, event: dict[str, Any]) -> None: ...
    def stop(self) -> None: ...

    @property
    def connected(self) -> bool: ...


@dataclass
class LoopStats:
    heartbeat: float = 0.0
    dropped: int = 0
    last_count: int = 0
    rate_hz: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


class DriverLoop:
    """Keeps one driver open and reading; a vanished port is logged once and reopened with back-off."""

    def __init__(
        self,
        driver: SensorDriver,
        out: queue.Queue[AnyMeasurement],
        stop: threading.Event,
        *,
        backoff_min_s: float = _BACKOFF_MIN_S,
        backoff_max_s: float = _BACKOFF_MAX_S,
    ) -> None:
        """The back-off bounds are injectable so that fault tests unplug and replug in milliseconds."""
        self.driver = driver
        self.out = out
        self.stop = stop
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.stats = LoopStats(heartbeat=time.monotonic())
        self.thread = threading.Thread(target=self._run, name=f"driver-{driver.sensor_id}", daemon=True)

    def _fail(self, what: str, exc: Exception, backoff: float, announced: bool) -> bool:
        self.stats.errors[what] = self.stats.errors.get(what, 0) + 1
        self.driver.state = SensorState.DOWN
        self.driver.detail = f"{what}: {exc}"
        if not announced:
            log.error(
                "sensor %s unavailable (%s: %s); retrying with back-off", self.driver.sensor_id, what, exc
            )
        return True

    def _back_off(self, seconds: float) -> None:
        """Wait out a back-off in short slices, stamping the heartbeat: waiting to reopen a port is
        progress, not a stall, and must not starve the systemd watchdog (back-off reaches 30 s)."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set():
            self.stats.heartbeat = time.monotonic()
            remaining = deadline - self.stats.heartbeat
            if remaining <= 0:
                return
            self.stop.wait(min(1.0, remaining))

    def _run(self) -> None:
        drv = self.driver
        backoff = self.backoff_min_s
        announced = False
        is_open = False
        while not self.stop.is_set():
            self.stats.heartbeat = time.monotonic()
            if not is_open:
                try:
                    drv.open()
                except (serial.SerialException, OSError) as exc:
                    announced = self._fail("open", exc, backoff, announced)
                    self._back_off(backoff)
                    backoff = min(backoff * 2, self.backoff_max_s)
                    continue
                is_open = True
                backoff = self.backoff_min_s
                log.info("sensor %s (%s) %s", drv.sensor_id, drv.kind, "is back" if announced else "opened")
                announced = False
            try:
                measurements = drv.read()
            except (serial.SerialException, OSError) as exc:
                announced = self._fail("read", exc, backoff, announced)
                drv.close()
                drv.state = SensorState.DOWN
                is_open = False
                continue
            for m in measurements:
                try:
                    self.out.put_nowait(m)
                except queue.Full:
                    self.stats.dropped += 1
        drv.close()


class Runtime:
    def __init__(
        self,
        config: Config,
        clock: Clock,
        drivers: list[SensorDriver],
        sink: TrackSink,
        session: int,
        gpio: GpioController | None = None,
        system: SystemMonitor | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.sink = sink
        self.stop_event = threading.Event()
        self.queue: queue.Queue[AnyMeasurement] = queue.Queue(maxsize=_QUEUE_CAPACITY)
        self.loops = [DriverLoop(d, self.queue, self.stop_event) for d in drivers]
        self.fusion = FusionEngine(config, session)
        self.fusion_heartbeat = time.monotonic()
        self.started_at = clock.now()
        self._last_tracks = -1e18
        self._last_health = clock.now()
        self._position: dict[str, Any] | None = None
        self.ready = threading.Event()
        self.gpio = gpio
        self.system = system or SystemMonitor(config.node.state_dir, getattr(config.node, "spool_dir", None))
        self._gps_sensor = next((d.sensor_id for d in drivers if d.kind == "nmea"), None)
        self._gps_last: GpsFix | None = None
        self._last_led = -1e18
        # Commands (node/commands.py) arrive on the MQTT thread and run here, on the fusion thread.
        self._commands: queue.SimpleQueue[tuple[Command, Callable[[Result], None]]] = queue.SimpleQueue()
        self._acks: dict[str, dict[str, Any]] = {}
        self._health_now = False
        self.calibration: Callable[[Command], Result] | None = None  # set by the calibration feature

    def heartbeats(self) -> list[tuple[str, float]]:
        """(name, monotonic stamp) of every loop the systemd watchdog guards."""
        beats = [("fusion", self.fusion_heartbeat)]
        beats += [(f"sensor {loop.driver.sensor_id}", loop.stats.heartbeat) for loop in self.loops]
        return beats

    def request_stop(self) -> None:
        self.stop_event.set()

    def run(self, until: threading.Event | None = None, on_ready: Callable[[], None] | None = None) -> None:
        """Run until `request_stop()` (signals) or until `until` is set (end of a scenario).

        `on_ready` is called once the sensor loops and fusion run (the simulator starts its clock
        there; the systemd notifier sends READY=1 there)."""
        attach = getattr(self.sink, "set_command_handler", None)
        if attach is not None:
            attach(self)
        self.sink.start()
        self.system.start()
        if self.gpio is not None:
            self.gpio.start()
        self._position = self.fusion.node_position()
        self.sink.update_info(self._position)
        for loop in self.loops:
            loop.thread.start()
        self.ready.set()
        if on_ready is not None:
            on_ready()
        log.info("node %s running with %d sensor(s)", self.config.node.id, len(self.loops))
        try:
            while not self.stop_event.is_set() and not (until is not None and until.is_set()):
                self._cycle()
        finally:
            self.stop_event.set()
            for loop in self.loops:
                loop.thread.join(timeout=1.0)
            if self.gpio is not None:
                self.gpio.stop()
            self.system.stop()
            self.sink.stop()
            log.info("node %s stopped", self.config.node.id)

    def _cycle(self) -> None:
        self.fusion_heartbeat = time.monotonic()
        batch: list[AnyMeasurement] = []
        try:
            batch.append(self.queue.get(timeout=0.05))
            while len(batch) < _BATCH_MAX:
                batch.append(self.queue.get_nowait())
        except queue.Empty:
            pass
        started = time.perf_counter()
        if batch:
            self.fusion.process(batch)
            for m in batch:
                if isinstance(m, GpsFix) and m.sensor_id == self._gps_sensor:
                    self._gps_last = m
        now = self.clock.now()
        self.fusion.tick(now)
        self.fusion.counters.cycle_ms = (time.perf_counter() - started) * 1000.0
        self._run_commands(now)
        position = self.fusion.node_position()
        if position != self._position:
            self._position = position
            self.sink.update_info(position)
        min_interval = 1.0 / self.config.mqtt.tracks_max_rate_hz
        if self.fusion.has_changes() and now - self._last_tracks >= min_interval:
            self._last_tracks = now
            self.sink.publish_tracks(now, self.fusion.drain_tracks(now))
            for event in self.fusion.drain_alerts():
                self.sink.publish_alert(self._with_ack(event))
            if self.gpio is not None and self.fusion.zones is not None:
                self.gpio.set_alert(self.fusion.zones.critical_active, "zones")
        tamper_event = False
        if self.gpio is not None:
            tamper_event = self.gpio.take_event()
            mono = time.monotonic()
            if mono - self._last_led >= _LED_UPDATE_S:
                self._last_led = mono
                self.gpio.set_status(self.led_status(now))
        if tamper_event or self._health_now or now - self._last_health >= self.config.mqtt.health_interval_s:
            self._health_now = False
            self.sink.publish_health(self.health(now, now - self._last_health))
            self._last_health = now

    # -- commands (see node/commands.py; authorised and validated before they get here) ---------

    def handle_command(self, command: Command, reply: Callable[[Result], None]) -> None:
        """Queue a command for the fusion thread (the tracker and zones have no locks)."""
        self._commands.put((command, reply))

    def _run_commands(self, now: float) -> None:
        while True:
            try:
                command, reply = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                reply(self._execute(command, now))
            except Exception as exc:  # a bad command must never stop fusion
                log.exception("command %s failed", command.name)
                reply(Result("error", f"internal error: {type(exc).__name__}"))

    def _execute(self, command: Command, now: float) -> Result:
        args = command.args
        if command.name == "status":
            self._health_now = True  # published at the end of this cycle
            return Result("ok", "health published")
        if isinstance(args, SetLogLevelArgs):
            logging.getLogger(args.logger or "").setLevel(args.level)
            log.warning(
                "log level of %s set to %s by %s", args.logger or "root", args.level, command.identity
            )
            return Result("ok", result={"logger": args.logger or "root", "level": args.level})
        if isinstance(args, ZoneUpdateArgs):
            self.fusion.replace_zones(list(args.zones))
            log.warning("zones replaced by %s: %s", command.identity, [z.id for z in args.zones] or "none")
            return Result("ok", result={"zones": [z.id for z in args.zones]})
        if isinstance(args, AlertAckArgs):
            zones = self.fusion.zones
            active = {state.alert_id for state in zones.active.values()} if zones is not None else set()
            if args.alert_id not in active:
                return Result("error", f"no active alert {args.alert_id!r}")
            ack: dict[str, Any] = {"by": args.by or command.identity, "t": round(now, 3)}
            if args.note:
                ack["note"] = args.note
            self._acks[args.alert_id] = ack
            return Result("ok", result={"alert_id": args.alert_id})
        if command.name == "calibrate":
            if self.calibration is None:
                return Result("not_available", "calibration is not available in this version")
            return self.calibration(command)
        return Result("error", f"command {command.name!r} is not handled by this node")

    def _with_ack(self, event: dict[str, Any]) -> dict[str, Any]:
        """An acknowledged alert carries its `ack` on every later event; forgotten once cleared."""
        ack = self._acks.get(event.get("alert_id", ""))
        if ack is None:
            return event
        if event.get("state") == "cleared":
            self._acks.pop(event["alert_id"], None)
        return dict(event, ack=ack)

    def led_status(self, now: float) -> NodeStatus:
        states = []
        for loop in self.loops:
            h = loop.driver.health()
            silent = h.last_seen is None or now - h.last_seen > 5.0
            states.append("degraded" if h.state == SensorState.OK and silent else str(h.state))
        return status_for(self.ready.is_set(), self.sink.connected, states)

    def _gps_health(self) -> dict[str, Any] | None:
        if self._gps_sensor is None:
            return None
        out: dict[str, Any] = {"sensor": self._gps_sensor, "fix": False}
        fix = self._gps_last
        if fix is not None:
            age = max(0.0, self.clock.monotonic() - fix.t_receive)
            out["fix"] = fix.quality > 0 and age <= _GPS_FIX_MAX_AGE_S
            out["quality"] = fix.quality
            out["fix_age_s"] = round(age, 1)
            if fix.num_sats is not None:
                out["satellites"] = fix.num_sats
            if fix.hdop is not None:
                out["hdop"] = fix.hdop
        return out

    def health(self, now: float, interval: float) -> dict[str, Any]:
        sensors = []
        for loop in self.loops:
            h = loop.driver.health()
            rate = (h.measurements - loop.stats.last_count) / interval if interval > 0 else 0.0
            loop.stats.last_count = h.measurements
            state = h.state
            if state == SensorState.OK and (h.last_seen is None or now - h.last_seen > 5.0):
                state = SensorState.DEGRADED  # open but silent: a technician must look at it
            counters = dict(h.counters)
            counters.update({f"{k}_errors": v for k, v in loop.stats.errors.items()})
            counters["queue_dropped"] = loop.stats.dropped
            entry: dict[str, Any] = {
                "id": h.sensor_id,
                "kind": h.kind,
                "state": str(state),
                "rate_hz": round(rate, 2),
                "measurements": h.measurements,
                "counters": counters,
                "detail": h.detail if state != SensorState.OK else "",
            }
            if h.last_seen is not None:
                entry["last_seen"] = round(h.last_seen, 3)
                entry["age_s"] = round(max(0.0, now - h.last_seen), 3)
            sensors.append(entry)
        table = self.fusion.tracker.table
        payload: dict[str, Any] = {
            "t": round(now, 3),
            "uptime_s": round(now - self.started_at, 1),
            "broker": "connected" if self.sink.connected else "disconnected",
            "sensors": sensors,
            "fusion": {
                "tracks": int((table.status != Status.FREE).sum()),
                "confirmed": int(
                    ((table.status == Status.CONFIRMED) | (table.status == Status.COASTING)).sum()
                ),
                "queue_depth": self.queue.qsize(),
                "cycle_ms": round(self.fusion.counters.cycle_ms, 3),
            },
        }
        system = self.system.snapshot()
        if system:
            payload["system"] = system
        gps = self._gps_health()
        if gps is not None:
            payload["gps"] = gps
        if self.gpio is not None:
            payload["gpio"] = self.gpio.health()
        return payload
