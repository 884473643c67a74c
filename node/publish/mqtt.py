"""The node's only way out: tracks, health, alerts, status and info as JSON over MQTT, and commands in.

Design choices, each for a field node on a flaky link (the why of each lives with its module):

* **Start-up never waits for the broker.** A connector thread (`connector.py`) connects in the
  background and retries with exponential back-off (`RECONNECT_MIN_S` … `RECONNECT_MAX_S`), a
  fresh paho client (`client.py`) per attempt.
* **One outbox thread owns the outgoing stream** (`outbox.py`). Producers (fusion, health) only
  encode a message and put it on a queue; paho callbacks only post events to the same queue, so
  no lock is ever held across a paho call.
* **Write-ahead spool** (`spool.py`, docs/reliability.md): every `tracks`, `health` and `alerts`
  message is written to the spool before it is sent and leaves it when the broker acknowledges
  it, so an outage or a `kill -9` loses nothing: it is delivered in order after the reconnect or
  restart, stale track updates (older than `mqtt.spool_max_age_s`, without deletions) dropped and
  counted, and `seq` continues from the spool's log without a gap. Delivery is at least once:
  consumers drop a repeated `(node_id, topic, seq)`.
* A retained `status` with a retained Last Will, `online` on every connect; retained `info`. The
  Will carries the same MQTT 5 properties as every message (JSON, UTF-8).
  Both are republished on every connect (a broker restarted without persistence gets them back)
  and are never spooled (`wire.py` builds them).
* MQTT v5 first (message expiry, response topics, reason codes), 3.1.1 fallback for old brokers.
* Broker faults each give **one** clear log line and a `health.broker` state: `auth_refused`,
  `tls_error`, `acl_refused` (`link.py` holds the state the threads share).
* Commands arrive on `cmd/`, pass a rate limit and a bounded queue (`command_inbox.py`) and are
  answered by `command_channel.py`; no packet may stop the outbox (issue 14).
* The outbox and connector threads are supervised (`link.Supervisor`): a fault restarts the loop
  with back-off; repeated faults mark the publisher `failed` (the runtime exits non-zero) and
  drop the connection so that the broker publishes the Last Will. `health_problem` feeds the
  systemd watchdog only while the outbox loop makes progress.

This module is the facade: the public `MqttPublisher` API, `seq` assignment, start and stop.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTProtocolVersion

from cuas_node.commands import Command, CommandHandler
from cuas_node.config import MqttSection, read_password
from cuas_node.kernel.clock import Clock
from cuas_node.kernel.reports import AlertEvent, GeoPoint, NodePosition, TrackReport
from cuas_node.publish import wire
from cuas_node.publish.client import CONNECT_TIMEOUT_S, build_client, client_id, tls_context
from cuas_node.publish.command_channel import CommandChannel, command_prefix
from cuas_node.publish.command_inbox import CommandInbox
from cuas_node.publish.connector import Connector
from cuas_node.publish.link import RECONNECT_MAX_S, RECONNECT_MIN_S, Backoff, LinkState
from cuas_node.publish.outbox import DRAIN_WINDOW, STOP_FLUSH_S, Outbox
from cuas_node.publish.retained import RetainedSet
from cuas_node.publish.seqstore import SequenceStore
from cuas_node.publish.spool import EXPIRES, DiskSpool, MemorySpool, Record, Spool
from cuas_node.publish.wire import BROKER_STATES, encode, info_payload, status_payload, topic

log = logging.getLogger(__name__)

MAX_PENDING = 1000  # messages held in memory while disconnected when there is no spool directory


class MqttPublisher:
    """Publishes the node's topics; all methods are safe to call from any thread and never block
    on the broker (except `stop`, which waits at most `STOP_FLUSH_S` for the goodbye)."""

    def __init__(
        self,
        mqtt: MqttSection,
        node_id: str,
        state_dir: Path,
        clock: Clock,
        sensors: list[tuple[str, str]],
        spool_dir: Path | None = None,
    ) -> None:
        self._cfg = mqtt
        self._node_id = node_id
        self._clock = clock
        self._sensors = [{"id": sid, "kind": kind} for sid, kind in sensors]
        self._position: NodePosition | None = None
        self._origin: GeoPoint | None = None
        # Shared with the outbox and connector threads; its lock is never held over paho calls.
        self._link = LinkState()
        self._lock = self._link.lock
        # The spool first: its write-ahead log knows where each topic's `seq` continues.
        self._spool: Spool = (
            DiskSpool(spool_dir, mqtt.spool_max_bytes) if spool_dir is not None else MemorySpool(MAX_PENDING)
        )
        self._seq = SequenceStore(
            state_dir, resume=self._spool.last_seqs(), wal=spool_dir is not None, seen=self._spool.seen_seqs()
        )
        self._spool.begin(self._seq.next_values())
        self.session = self._seq.session
        self._topics = {
            n: topic(mqtt.topic_root, node_id, n) for n in ("status", "info", "tracks", "health", "alerts")
        }
        self._client_id = client_id(mqtt, node_id)
        self._password = read_password(mqtt) if mqtt.username is not None else None
        self._tls = tls_context(mqtt) if mqtt.tls else None
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._commands = CommandChannel.from_config(node_id, mqtt, clock, self._wake_for_commands)
        # Read here, at construction, so tests can shorten the back-off on this module.
        backoff = Backoff(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self._connector = Connector(
            mqtt,
            self._link,
            self._events,
            backoff,
            self._new_client,
            command_prefix(mqtt.topic_root, node_id),
            self._commands.inbox.offer if self._commands is not None else None,
        )
        self._retained = RetainedSet()  # other outputs' retained documents (Home Assistant)
        self._outbox = Outbox(
            mqtt,
            clock,
            self._link,
            self._events,
            self._spool,
            self._topics,
            self._connector.client,
            self._status,
            self._info,
            self._commands,
            backoff,
            self._on_failed,
            self._retained,
        )
        self._outbox.update_spool_stats()
        self._listeners: list[Callable[[str, bytes], None]] = []

    # -- public API ----------------------------------------------------------------------------

    def start(self) -> None:
        """Begin connecting in the background; returns at once even if the broker is unreachable."""
        link = self._link
        with link.lock:
            if link.started or link.stopped:
                return
            link.started = True
        log.info(
            "MQTT: connecting to %s:%d as %s (session %d)",
            self._cfg.host,
            self._cfg.port,
            self._client_id,
            self.session,
        )
        self._outbox.start()
        self._connector.start()

    def set_command_handler(self, handler: CommandHandler) -> None:
        """Who executes authorised commands (the runtime); without one, commands answer `error`."""
        if self._commands is not None:
            self._commands.handler = handler

    def update_info(self, position: NodePosition | None, origin: GeoPoint | None) -> None:
        """Record the node's position and the origin of the tracks' ENU frame; republish `info`
        if either changed (the core step reports only material changes)."""
        with self._lock:
            if (position, origin) == (self._position, self._origin):
                return
            self._position, self._origin = position, origin
        self._events.put(("info",))
        if self._listeners:
            self._tell("info", encode(self._info()))

    def publish_tracks(self, t: float, tracks: Sequence[TrackReport]) -> None:
        """Publish one `tracks` message (records, envelope and `seq` by `wire`).

        A message without a deleted track is a mere position update: it may expire (MQTT 5
        message expiry, and the stale-drop rule of the spool). One with a deletion never does."""
        deletion = any(tr.status == "deleted" for tr in tracks)
        records = [wire.track_record(tr, self.session) for tr in tracks]

        def build(seq: int) -> dict[str, Any]:
            return wire.tracks_message(self._node_id, self.session, seq, t, records)

        self._submit("tracks", 0 if deletion else EXPIRES, build)

    def publish_alert(self, event: AlertEvent) -> None:
        """Publish one zone alert event on `alerts` (record, envelope and its own `seq` by `wire`)."""
        record = wire.alert_record(event, self.session)

        def build(seq: int) -> dict[str, Any]:
            return wire.alert_message(self._node_id, self.session, seq, record)

        self._submit("alerts", 0, build)

    def publish_health(self, payload: dict[str, Any]) -> None:
        """Publish one `health` message: `payload` minus type/node_id/seq, which are added here.

        `t` and `broker` default to now and this publisher's state (a fault state such as
        `auth_refused` always wins over a plain `connected`/`disconnected` from the caller); the
        `mqtt`, `spool` and (when enabled) `commands` blocks hold this publisher's counters.
        """
        now = self._clock.now()

        def build(seq: int) -> dict[str, Any]:
            message: dict[str, Any] = {
                "type": "health", "node_id": self._node_id, "session": self.session, "seq": seq
            }  # fmt: skip
            message.update(payload)
            message.setdefault("t", now)
            state = self.broker_state
            if "broker" not in message or state not in ("connected", "disconnected"):
                message["broker"] = state
            message.setdefault("mqtt", self.counters)
            message.setdefault("spool", self.spool_counters)
            if self._commands is not None:
                message.setdefault("commands", self._commands.counters)
            return message

        self._submit("health", 0, build)

    def retain(self, topic: str, data: bytes) -> None:
        """Keep `data` as the retained message of `topic` (any topic: Home Assistant's discovery
        prefix lies outside the node's tree), published now when connected and again on every
        connect, like `status`; empty `data` removes the broker's copy (publish/retained.py)."""
        if self._retained.put(topic, data):
            self._events.put(("retain", topic, data))

    def retained_confirmed(self, topic: str, data: bytes) -> bool:
        """Whether the broker acknowledged `data` as `topic`'s retained message."""
        return self._retained.confirmed(topic, data)

    def retained_refused(self) -> dict[str, str]:
        """Topic → reason for `retain`ed messages the broker refused (its ACL)."""
        return self._retained.refused()

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._link.connected

    @property
    def failed(self) -> str | None:
        """Why this publisher can no longer publish (a supervised thread kept failing), else None.
        Permanent: the runtime should stop and exit non-zero so that systemd restarts the node."""
        with self._lock:
            return self._link.failed

    @property
    def commands_ready(self) -> bool:
        """Whether the broker has acknowledged the subscription to `cmd/` (a command published
        before that is not delivered to this node: MQTT keeps no unretained message for it)."""
        return self._connector.commands_subscribed.is_set()

    @property
    def last_progress(self) -> float:
        """`time.monotonic()` of the outbox loop's last turn (it turns at least 4 times a second,
        connected or not)."""
        return self._outbox.last_progress

    def health_problem(self, stale_after_s: float = 10.0) -> str | None:
        """None while the publisher works, else why not: for the systemd watchdog, which must stop
        pinging when nothing can be published (failed, or the outbox loop stuck for
        `stale_after_s`). None before `start` and after `stop` (nothing is expected then)."""
        with self._lock:
            failed, started, stopped = self._link.failed, self._link.started, self._link.stopped
        if failed is not None:
            return f"MQTT publisher failed ({failed})"
        if not started or stopped:
            return None
        if time.monotonic() - self._outbox.last_progress > stale_after_s:
            return f"mqtt-outbox made no progress for more than {stale_after_s:g} s"
        return None

    @property
    def command_counters(self) -> dict[str, int] | None:
        """`health.commands` (None when commands are disabled)."""
        return self._commands.counters if self._commands is not None else None

    @property
    def command_inbox(self) -> CommandInbox | None:
        """The bounded queue of incoming commands (None when commands are disabled)."""
        return self._commands.inbox if self._commands is not None else None

    @property
    def broker_state(self) -> str:
        """`connected`, `disconnected`, or why not: `auth_refused`, `tls_error`, `acl_refused`."""
        with self._lock:
            return self._link.broker_state

    @property
    def counters(self) -> dict[str, int]:
        """`published` (acknowledged by the broker), `dropped` (never delivered: unencodable, stale,
        spool full), `reconnects`, `thread_restarts`, `internal_errors`."""
        return self._link.counters()

    @property
    def spool_counters(self) -> dict[str, int | str]:
        """`spooled` (written to the spool since start), `pending` (waiting now), `spool_bytes`,
        `dropped_stale`, `dropped_full` and `quarantined` (damaged spool files moved aside)."""
        return self._link.spool_counters()

    def stop(self) -> None:
        """Say goodbye (retained offline), flush briefly, disconnect, and record the state.

        Unacknowledged messages go to the spool (delivered after the next start). A clean
        DISCONNECT makes the broker discard the Will, so the explicit offline status is what
        consumers see.
        """
        link = self._link
        with link.lock:
            if link.stopped:
                return
            link.stopped = True
            started = link.started
        if started:
            self._events.put(("stop",))
            self._outbox.join(timeout=STOP_FLUSH_S + 2.0)
            self._connector.stop()
        else:
            self._spool.close()
        with link.lock:
            link.connected = False
        self._seq.close()
        log.info("MQTT: stopped (%s, spool %s)", self.counters, self.spool_counters)

    # -- producers -----------------------------------------------------------------------------

    def _submit(self, name: str, flags: int, build: Callable[[int], dict[str, Any]]) -> None:
        """Give the message its `seq` and hand it to the outbox, in `seq` order per topic.

        The record is stamped with the node clock's time of publishing: its age decides whether a
        spooled track update is stale (the message's own `t` is the same time in the runtime)."""
        with self._lock:
            if self._link.stopped or self._link.failed is not None:
                return  # failed: nobody would take it off the queue
            try:
                seq = self._seq.next(name)
            except RuntimeError:  # closed between the check and the call
                return
            try:
                data = encode(build(seq))
            except (TypeError, ValueError) as exc:
                self._link.counts["unencodable"] += 1
                log.error("MQTT: cannot encode %s message %d (%s); dropped", name, seq, exc)
                return
            self._events.put(("msg", Record(name, seq, self._clock.now(), flags, data)))
        self._tell(name, data)

    def add_listener(self, listener: Callable[[str, bytes], None]) -> None:
        """Also hand every document this publisher builds (`tracks`, `health`, `alerts`, and `info`
        now and on every change) to `listener(topic name, encoded JSON)`, e.g. the web view, so it
        shows exactly what MQTT consumers get without encoding anything twice.

        The listener runs on the producer's thread (fusion), outside this publisher's lock: it
        must only hand the bytes over (O(1), never blocking). Its exceptions are logged, not raised."""
        self._listeners.append(listener)
        listener("info", encode(self._info()))

    def _tell(self, name: str, data: bytes) -> None:
        for listener in self._listeners:
            try:
                listener(name, data)
            except Exception:  # a listener's bug must never cost the MQTT output
                log.exception("listener of %s messages failed", name)

    # -- what the outbox and connector need from the publisher --------------------------------

    def _wake_for_commands(self) -> None:
        """The command inbox is no longer empty (paho's thread): the outbox looks at it."""
        self._events.put(("cmd",))

    def _on_failed(self, reason: str) -> None:
        """The outbox gave up: stop reconnecting and let the broker publish the Last Will."""
        self._connector.abandon()

    @property
    def _client(self) -> paho.Client:
        """The paho client of the current connection attempt."""
        return self._connector.client

    def _new_client(self, protocol: MQTTProtocolVersion) -> paho.Client:
        """A fresh client for the next attempt, its Last Will the retained `offline` status."""
        will = (self._topics["status"], encode(self._status("offline")))
        return build_client(
            self._cfg, self._client_id, protocol, self._password, self._tls, will, DRAIN_WINDOW * 4
        )

    def _status(self, state: str) -> dict[str, Any]:
        return status_payload(state, self._clock.now(), self.session)

    def _info(self) -> dict[str, Any]:
        with self._lock:
            position, origin = self._position, self._origin
        return info_payload(self._node_id, self._clock.now(), position, origin, self._sensors)


__all__ = [
    "BROKER_STATES",
    "CONNECT_TIMEOUT_S",
    "DRAIN_WINDOW",
    "MAX_PENDING",
    "RECONNECT_MAX_S",
    "RECONNECT_MIN_S",
    "STOP_FLUSH_S",
    "Command",
    "CommandHandler",
    "MqttPublisher",
    "encode",
    "topic",
]
