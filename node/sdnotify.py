"""systemd's readiness and watchdog protocol (sd_notify) in pure Python.

Why not python-systemd: it needs libsystemd headers to build, which a field Pi image may not carry,
and the protocol is one datagram on a Unix socket. Why a `Watchdog` with heartbeats: a watchdog
pinged by a timer thread proves only that the timer thread lives. The node pings only while every
loop that matters (each sensor thread and the fusion thread) has stamped its heartbeat recently,
so a stalled loop stops the pings and systemd restarts the service (`WatchdogSec=`). Loops that
are not plain heartbeats (the MQTT publisher: it can also have *failed*, with its threads alive)
add a `health` predicate that names what is wrong, and the pings stop while it does.

`NOTIFY_SOCKET` is either a filesystem path or, when it starts with `@`, a Linux abstract socket
(the `@` stands for a leading NUL byte). Without `NOTIFY_SOCKET` (not run by systemd, or a unit that
is not `Type=notify`) every call is a silent no-op, so the same code runs in a terminal.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping

log = logging.getLogger(__name__)

MAX_STALE_S = 10.0
"""A loop that made no progress for this long is stalled (driver reads block ≤ 0.1 s, fusion ≤ 0.05 s)."""

Heartbeats = Callable[[], Iterable[tuple[str, float]]]
"""Returns (name, monotonic stamp of the last progress) for every loop that must stay alive."""

HealthCheck = Callable[[], str | None]
"""Returns None while healthy, else what is wrong (a stable text: it is logged when it changes)."""


def socket_address(value: str) -> str | bytes | None:
    """The `NOTIFY_SOCKET` value as an address for `sendto`: abstract names get their NUL byte."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock (`vsock:...`) and relative paths are not used for services on a Pi


class Notifier:
    """Sends sd_notify messages to the service manager; a no-op without `NOTIFY_SOCKET`."""

    def __init__(self, address: str | bytes | None) -> None:
        self.address = address
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Notifier:
        return cls(socket_address(env.get("NOTIFY_SOCKET", "")))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` lines as one datagram; True if the manager got it.

        A send error is logged once and never raised: losing the service manager must not take
        the sensors down (a missed watchdog ping is what systemd acts on anyway)."""
        if self.address is None:
            return False
        message = "\n".join(fields).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(message, self.address)
            except OSError as exc:
                if not self._warned:
                    log.warning("sd_notify to %r failed: %s", self.address, exc)
                    self._warned = True
                return False
        return True

    def ready(self, status: str = "") -> bool:
        fields = ["READY=1", f"MAINPID={os.getpid()}"]
        if status:
            fields.append(f"STATUS={status}")
        return self.send(*fields)

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def watchdog_period(env: Mapping[str, str] = os.environ, pid: int | None = None) -> float | None:
    """The watchdog timeout in seconds from `WATCHDOG_USEC`, or None when no watchdog is armed.

    `WATCHDOG_PID`, when set, names the process that must ping; a child that inherited the
    environment must stay silent."""
    usec = env.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner.isdigit() and int(owner) != (os.getpid() if pid is None else pid):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None


class Watchdog:
    """Pings `WATCHDOG=1` every half watchdog period, but only while all heartbeats are fresh and
    the `health` predicate (if any) reports no problem.

    A heartbeat is fresh when it was stamped less than `stale_after_s` ago. The first stale loop
    is logged once (with its name, so the journal says which loop hung before systemd's restart);
    when every loop recovers, pings resume and that is logged too. A problem named by `health`
    (e.g. `MqttPublisher.health_problem`: the publisher failed or its outbox stopped turning) is
    handled the same way; a predicate that raises counts as a problem. `check()` is the decision,
    usable with a fake clock; `start()` runs it on a daemon thread."""

    def __init__(
        self,
        notifier: Notifier,
        period_s: float,
        heartbeats: Heartbeats,
        stale_after_s: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
        health: HealthCheck | None = None,
    ) -> None:
        if period_s <= 0:
            raise ValueError("watchdog period must be positive")
        self.notifier = notifier
        self.period_s = period_s
        self.interval_s = period_s / 2.0
        self.heartbeats = heartbeats
        self.stale_after_s = stale_after_s
        self.monotonic = monotonic
        self.health = health
        self.pings = 0
        self.stale: list[str] = []
        self.problem: str | None = None  # what `health` last reported
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_env(
        cls,
        notifier: Notifier,
        heartbeats: Heartbeats,
        env: Mapping[str, str] = os.environ,
        stale_after_s: float | None = None,
        health: HealthCheck | None = None,
    ) -> Watchdog | None:
        """A watchdog for this process if systemd armed one (`WatchdogSec=`), else None.

        By default a loop is stale after the whole watchdog period, capped at `MAX_STALE_S`: with
        `WatchdogSec=30s` a loop silent for 10 s stops the pings and systemd restarts the node at
        most 30 s later."""
        period = watchdog_period(env)
        if period is None or not notifier.enabled:
            return None
        stale = stale_after_s if stale_after_s is not None else min(MAX_STALE_S, period)
        return cls(notifier, period, heartbeats, stale_after_s=stale, health=health)

    def check(self, now: float | None = None) -> bool:
        """Ping if every heartbeat is fresh and `health` names no problem; return whether a ping
        was sent."""
        now = self.monotonic() if now is None else now
        stale = sorted(name for name, stamp in self.heartbeats() if now - stamp > self.stale_after_s)
        problem = self._problem()
        if problem is not None:
            if problem != self.problem:
                log.error(
                    "watchdog: %s; not pinging systemd (the service will be restarted if this lasts %.0f s)",
                    problem,
                    self.period_s,
                )
            self.problem = problem
            return False
        if self.problem is not None:
            log.warning("watchdog: resolved: %s", self.problem)
            self.problem = None
        if stale:
            if stale != self.stale:
                log.error(
                    "watchdog: no progress for more than %.0f s in %s; not pinging systemd "
                    "(the service will be restarted if this lasts %.0f s)",
                    self.stale_after_s,
                    ", ".join(stale),
                    self.period_s,
                )
            self.stale = stale
            return False
        if self.stale:
            log.warning("watchdog: all loops make progress again; pinging systemd")
            self.stale = []
        self.pings += 1
        self.notifier.watchdog()
        return True

    def _problem(self) -> str | None:
        if self.health is None:
            return None
        try:
            return self.health()
        except Exception as exc:  # a broken check must not feed the watchdog
            return f"health check raised {type(exc).__name__}"

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def _run(self) -> None:
        while True:
            self.check()
            if self._stop.wait(self.interval_s):
                return


class ServiceNotifications:
    """What `cuas-node run` tells systemd: READY=1 once the node runs, the guarded watchdog, and
    STOPPING=1 on the way out. Built from the environment, so outside systemd it does nothing."""

    def __init__(
        self,
        heartbeats: Heartbeats,
        env: Mapping[str, str] = os.environ,
        stale_after_s: float | None = None,
        health: HealthCheck | None = None,
    ) -> None:
        self.notifier = Notifier.from_env(env)
        self.watchdog = Watchdog.from_env(
            self.notifier, heartbeats, env, stale_after_s=stale_after_s, health=health
        )

    def ready(self, status: str = "") -> None:
        """Call once the config is valid and the sensor loops and fusion run (not the broker)."""
        self.notifier.ready(status)
        if self.watchdog is not None:
            self.watchdog.start()

    def stopping(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
        self.notifier.stopping()
        self.notifier.close()
