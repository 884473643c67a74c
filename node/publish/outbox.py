"""The outbox thread: the one owner of the outgoing stream.

Producers (fusion, health) only encode a message and put it on the outbox's queue; paho callbacks
only post events to the same queue. A single thread means no lock is ever held across a paho call.

Write-ahead (docs/reliability.md): every message with a `seq` is appended to the spool first and
sent from there, oldest first, at most `DRAIN_WINDOW` in flight; it leaves the spool when the
broker acknowledges it (PUBACK/PUBCOMP; with QoS 0 when paho has written it to the socket). Each
loop takes everything queued at once (a *group commit*: all of it appended, one fsync, then sent),
so a busy node pays one sync per batch, not per message. When the connection drops, delivery goes
back to the last acknowledged message; after a restart the spool holds what the previous process
had not got acknowledged, sent before anything new. Stale track updates are dropped at delivery
and counted; alerts, health and track deletions are always delivered. A PUBACK saying "not
authorised" (the broker ACL) is `acl_refused`: the message stays spooled and the connection is
retried with back-off. `status` and `info` are republished on every connect and never spooled.

No packet or fault may silence it (issue 14): each event is handled under its own guard, the loop
is supervised (`link`), commands arrive through a bounded inbox and at most `COMMANDS_PER_LOOP` are
served per loop, after the publications; `last_progress` shows the systemd watchdog that it turns.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from cuas_node.config import MqttSection
from cuas_node.kernel.clock import Clock
from cuas_node.publish.client import publish
from cuas_node.publish.command_channel import CommandChannel
from cuas_node.publish.link import Backoff, EventGuard, LinkState, Supervisor
from cuas_node.publish.retained import RetainedSet
from cuas_node.publish.spool import Record, Spool
from cuas_node.publish.wire import encode

# The publisher's log lines keep the logger name they always had (operators filter on it).
log = logging.getLogger("cuas_node.publish.mqtt")

DRAIN_WINDOW = 32  # spooled messages in flight at once
STOP_FLUSH_S = 1.0
_TICK_S = 0.25
_BATCH = 512  # events taken per loop at most (one group commit)
_PUBLISHING = ("connected", "info", "reply", "retain")  # events that publish: queued messages go first
COMMANDS_PER_LOOP = 8  # commands handled per loop at most, after the queued publications


@dataclass
class _Sent:
    """A spooled message handed to paho, in delivery order; `done` once acknowledged (or stale)."""

    token: object
    name: str
    done: bool = False


class Outbox:
    """The outbox thread and its state; everything but `events` is touched by that thread only."""

    def __init__(
        self,
        mqtt: MqttSection,
        clock: Clock,
        link: LinkState,
        events: queue.SimpleQueue[tuple[Any, ...]],
        spool: Spool,
        topics: dict[str, str],
        first_client: paho.Client,
        status: Callable[[str], dict[str, Any]],
        info: Callable[[], dict[str, Any]],
        commands: CommandChannel | None,
        backoff: Backoff,
        on_failed: Callable[[str], None],
        retained: RetainedSet | None = None,
    ) -> None:
        self._cfg = mqtt
        self._clock = clock
        self._link = link
        self._events = events
        self._spool = spool
        self._topics = topics
        self._status = status
        self._info = info
        self._commands = commands
        self._backoff = backoff
        self._gen = 0  # connection generation: events of older connections are ignored
        self._client_now = first_client  # the client of the live connection
        self._drain: deque[_Sent] = deque()  # handed to paho, in spool order
        self._drain_by_mid: dict[int, _Sent] = {}
        self._control: dict[int, str] = {}  # mid → name, for status/info/responses
        # Other outputs' retained documents (publish/retained.py), sent on every connect and change.
        self._retained = retained if retained is not None else RetainedSet()
        self._stop_mid: int | None = None
        self._refused_logged: set[str] = set()
        # Messages that found the broker away or a backlog ahead of them (`health.spool.spooled`).
        self._held = 0
        self._inbox = commands.inbox if commands is not None else None
        self._stop_deadline: float | None = None
        self._guard = EventGuard(link)  # one event's exception is contained, counted, logged once
        self._on_failed = on_failed
        # Monotonic time of the loop's last turn (the systemd watchdog's evidence of progress).
        self.last_progress = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="mqtt-outbox", daemon=True)

    def start(self) -> None:
        self.last_progress = time.monotonic()
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout=timeout)

    def _run(self) -> None:
        Supervisor("mqtt-outbox", self._link).run(self._loop, self._rewind, self._fail)

    def _loop(self) -> None:
        next_tick = time.monotonic() + _TICK_S
        while True:
            now = self.last_progress = time.monotonic()
            timeout = max(0.0, next_tick - now)
            if self._stop_deadline is not None:
                timeout = min(timeout, max(0.0, self._stop_deadline - now))
            elif self._inbox is not None and self._inbox.depth:
                timeout = 0.0  # commands wait: look at the queue, then serve a few more
            try:
                event: tuple[Any, ...] | None = self._events.get(timeout=timeout)
            except queue.Empty:
                event = None
            if event is not None:
                self._take(event)
                self._pump()  # the group commit: one sync for everything appended, then send
                self.update_spool_stats()
            if self._stop_deadline is None:
                self._serve_commands()
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + _TICK_S
                self._spool.tick()
                self.update_spool_stats()
                if self._inbox is not None:
                    self._inbox.report()
            if self._stop_deadline is not None and (
                self._stop_mid is None or time.monotonic() >= self._stop_deadline
            ):
                self._finish_stop()
                return

    def _take(self, event: tuple[Any, ...]) -> None:
        """Handle `event` and whatever else is queued (up to `_BATCH`); sets the stop deadline if
        asked to stop. Messages are only appended here; `_pump` sends them after one sync. Each
        event is handled under its own guard: one that raises is logged and counted, and the
        others, already taken off the queue, are still handled."""
        backlog = not self._gen or self._spool.has_unsent()
        for taken in range(1, _BATCH + 1):
            kind = event[0]
            with self._guard(kind):
                if kind == "msg":
                    self._spool.append(event[1])
                    self._held += int(backlog)
                elif kind == "ack":
                    self._on_ack(event[1], event[2], event[3])
                elif kind == "stop":
                    self._stop_deadline = self._stop_deadline or time.monotonic() + STOP_FLUSH_S
                    with self._guard("stop"):
                        self._pump()  # what was published before the stop goes out before `offline`
                    self._begin_stop()
                else:
                    if kind in _PUBLISHING:
                        self._pump()
                    self._handle(event)
                    backlog = not self._gen or self._spool.has_unsent()
            if taken == _BATCH:
                break  # the rest waits for the next loop (taken off the queue, it would be lost)
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break

    def _serve_commands(self) -> None:
        """At most `COMMANDS_PER_LOOP` commands, each guarded, after this loop's publications: a
        flood of commands can delay other commands, never tracks or health."""
        if self._inbox is None or self._commands is None:
            return
        for gen, msg in self._inbox.take(COMMANDS_PER_LOOP):
            if gen == self._gen:  # a command of an older connection cannot be answered on it
                with self._guard("cmd"):
                    self._commands.handle(msg, self._send_reply, self._post_reply)

    def _rewind(self) -> None:
        """Forget what is in flight and go back to the last acknowledged message, after a lost
        connection or before the supervised loop restarts: what was cut off is sent again."""
        self._drain.clear()
        self._drain_by_mid.clear()
        self._control.clear()
        self._retained.forget_in_flight()
        self._spool.rewind()

    def _fail(self, reason: str) -> None:
        """The loop kept failing: nothing will be published any more. Keep the spool (what it
        holds is delivered after the restart) and let the publisher drop the connection so that
        the broker publishes the Last Will."""
        with contextlib.suppress(Exception):
            self._spool.rewind()
        with contextlib.suppress(Exception):
            self._spool.close()
        self._on_failed(reason)

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "connected":
            self._on_connected(event[1], event[2])
        elif kind == "disconnected":
            self._on_lost(event[1], event[2])
        elif kind == "info":
            if self._gen:
                self._send_control("info", self._info())
        elif kind == "reply":
            self._send_reply(*event[1:])
        elif kind == "retain" and self._gen and self._retained.get(event[1]) == event[2]:
            self._send_retained(event[1], event[2])  # (a newer value for the topic has its own event)

    # -- connection events ---------------------------------------------------------------------

    def _on_connected(self, gen: int, client: paho.Client) -> None:
        link = self._link
        with link.lock:
            if link.ever_connected:
                link.counts["reconnects"] += 1
            link.ever_connected = True
            link.connected = True
            link.broker_state = "connected"
        self._gen = gen
        self._client_now = client
        link.fault_logged = None
        log.info(
            "MQTT: connected to %s:%d (%s)%s",
            self._cfg.host,
            self._cfg.port,
            "v5" if client.protocol == MQTTProtocolVersion.MQTTv5 else "v3.1.1",
            f"; delivering {self._spool.pending} spooled message(s)" if self._spool.pending else "",
        )
        self._send_control("status", self._status("online"))
        self._send_control("info", self._info())
        for retained_topic, data in self._retained.items():
            self._send_retained(retained_topic, data)
        if self._commands is not None:
            client.subscribe(self._commands.prefix + "#", qos=1)

    def _on_lost(self, gen: int, reason: ReasonCode) -> None:
        if gen != self._gen:
            return
        self._gen = 0
        link = self._link
        with link.lock:
            link.connected = False
            stopping = link.stopped
            if link.broker_state == "connected":
                link.broker_state = "disconnected"
        if not stopping:
            log.warning(
                "MQTT: lost connection to broker (%s); %d message(s) in flight stay spooled, reconnecting",
                reason.getName(),
                len(self._drain_by_mid),
            )
        self._rewind()

    def _on_ack(self, gen: int, mid: int, reason: ReasonCode) -> None:
        if gen != self._gen:
            return
        if reason.is_failure:
            self._on_refused(mid, reason)
            return
        with self._link.lock:
            self._link.counts["published"] += 1
        if mid == self._stop_mid:
            self._stop_mid = None
        if self._control.pop(mid, None) is not None:
            self._retained.acknowledged(mid)
            return
        sent = self._drain_by_mid.pop(mid, None)
        if sent is not None:
            sent.done = True
            self._commit_drained()

    def _on_refused(self, mid: int, reason: ReasonCode) -> None:
        """The broker took the message but refused it (MQTT 5 PUBACK "not authorised": the ACL).
        Keep it (spooled), say so once, and retry the connection with back-off."""
        if self._retained.refused_mid(mid, reason.getName()):  # its owner reports it; the link is fine
            self._control.pop(mid, None)
            return
        sent = self._drain_by_mid.get(mid)
        name = sent.name if sent is not None else self._control.get(mid, "control")
        link = self._link
        with link.lock:
            link.counts["refused"] += 1
            link.broker_state = "acl_refused"
        link.fault = "acl_refused"
        if name not in self._refused_logged:
            self._refused_logged.add(name)
            log.error(
                "MQTT: broker refused a %s message (%s): check the broker ACL for %s; "
                "keeping messages spooled and retrying with back-off up to %g s",
                name,
                reason.getName(),
                self._cfg.topic_root,
                self._backoff.max_s,
            )
        if sent is not None:
            with contextlib.suppress(Exception):
                self._client_now.disconnect()
            self._on_lost(self._gen, reason)

    # -- delivering ----------------------------------------------------------------------------

    def _commit_drained(self) -> None:
        token = None
        while self._drain and self._drain[0].done:
            token = self._drain.popleft().token
        if token is not None:
            self._spool.commit(token)

    def _pump(self) -> None:
        """Deliver the spool, oldest first, a window at a time; stale track updates are dropped.
        A disk spool syncs what it hands out first (once for everything appended since)."""
        while self._gen and len(self._drain_by_mid) < DRAIN_WINDOW:
            item = self._spool.next_unsent()
            if item is None:
                break
            record, token = item
            sent = _Sent(token, record.name)
            self._drain.append(sent)
            if record.expires and self._clock.now() - record.t > self._cfg.spool_max_age_s:
                sent.done = True
                with self._link.lock:
                    self._link.counts["dropped_stale"] += 1
                self._commit_drained()
                continue
            mid = self._publish(record.name, record.payload, False, self._expiry(record))
            if mid is None:
                break  # the connection is dying: the coming `disconnected` rewinds to this record
            self._drain_by_mid[mid] = sent

    def _expiry(self, record: Record) -> int | None:
        if not record.expires:
            return None
        remaining = self._cfg.spool_max_age_s - max(0.0, self._clock.now() - record.t)
        return max(1, math.ceil(remaining))

    def _send_control(self, name: str, payload: dict[str, Any], retain: bool = True) -> int | None:
        mid = self._publish(name, encode(payload), retain, None)
        if mid is not None:
            self._control[mid] = name
        return mid

    def _send_retained(self, to: str, data: bytes) -> None:
        """Publish `data` retained on topic `to` (empty: remove the broker's copy)."""
        mid = self._publish("retained", data, True, None, to=to)
        if mid is not None:
            self._control[mid] = "retained"
            self._retained.in_flight(mid, to, data)

    def _send_reply(self, to: str, correlation: bytes | None, body: dict[str, Any]) -> None:
        if not self._gen:
            return  # the commander times out and retries; responses are not spooled
        mid = self._publish("response", encode(body), False, None, to=to, correlation=correlation)
        if mid is not None:
            self._control[mid] = "response"

    def _post_reply(self, to: str, correlation: bytes | None, body: dict[str, Any]) -> None:
        """A command handler's reply, from any thread: queued, sent by the outbox thread."""
        self._events.put(("reply", to, correlation, body))

    def _publish(
        self,
        name: str,
        data: bytes,
        retain: bool,
        expiry: int | None,
        to: str | None = None,
        correlation: bytes | None = None,
    ) -> int | None:
        """The mid, or None if the connection died under us (the caller keeps the message)."""
        topic = to or self._topics[name]
        return publish(self._client_now, topic, data, self._cfg.qos, retain, expiry, correlation)

    # -- stopping ------------------------------------------------------------------------------

    def _begin_stop(self) -> None:
        if self._gen and self._stop_mid is None:
            self._stop_mid = self._send_control("status", self._status("offline"))

    def _finish_stop(self) -> None:
        if self._stop_mid is not None:
            log.warning("MQTT: offline status not confirmed within %g s", STOP_FLUSH_S)
        # Whatever the broker has not acknowledged stays spooled: delivered after the next start.
        with self._guard("stop"):
            self._spool.rewind()
            self._spool.close()
            self.update_spool_stats()

    def update_spool_stats(self) -> None:
        spool = self._spool
        stats = {
            "spooled": self._held,
            "pending": spool.pending,
            "spool_bytes": spool.size_bytes,
            "dropped_full": spool.dropped_full,
            "quarantined": spool.quarantined,
            **spool.health(),
        }
        with self._link.lock:
            self._link.spool_stats = stats
