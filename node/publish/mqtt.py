"""The node's only way out: tracks, health, alerts, status and info as JSON over MQTT, and commands in.

Design choices, each for a field node on a flaky link:

* **Start-up never waits for the broker.** A connector thread connects in the background and
  retries with exponential back-off (`RECONNECT_MIN_S` … `RECONNECT_MAX_S`); each attempt uses a
  fresh paho client, so nothing paho queued on a dead connection is ever resent behind our back
  (we decide what is resent, from the spool, in order).
* **One outbox thread owns the outgoing stream.** Producers (fusion, health) only encode a
  message and put it on a queue; paho callbacks only post events to the same queue. A single
  thread deciding "send now" vs "spool" means no lock is ever held across a paho call (paho calls
  `on_publish` with its own lock held, so a lock shared with producers would deadlock).
* **Store and forward** (`spool.py`, docs/reliability.md): while connected with an empty spool
  a message goes straight out and is kept in memory until its PUBACK. When the connection drops,
  the unacknowledged ones are written to the spool, and so is everything published until the
  spool has been delivered again, in order, before newer messages. Stale track updates (older
  than `mqtt.spool_max_age_s`, without deletions) are dropped at delivery and counted; alerts,
  health and track deletions are always delivered. Delivery is at least once: consumers drop a
  repeated `(node_id, topic, seq)`.
* A retained `status` with a retained Last Will, `online` on every connect; retained `info`.
  Both are republished on every connect (a broker restarted without persistence gets them back)
  and are never spooled.
* MQTT v5 first (message expiry, response topics, reason codes), 3.1.1 fallback for old brokers.
* Broker faults each give **one** clear log line and a `health.broker` state: `auth_refused`
  (bad user or password, not authorised), `tls_error` (certificate verification, handshake),
  `acl_refused` (a PUBACK saying "not authorised": the ACL refuses a topic; the message stays
  spooled and the connection is retried with back-off).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import ssl
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from node import SCHEMA_VERSION, __version__
from node.clock import Clock
from node.commands import Command, CommandHandler, CommandProcessor, Refused, Result, read_key, response
from node.config import ConfigError, MqttSection, read_password
from node.publish.seqstore import SequenceStore
from node.publish.spool import EXPIRES, DiskSpool, MemorySpool, Record, Spool

log = logging.getLogger(__name__)


class _NoSocketNoise(logging.Filter):
    """paho 2.x's loop thread logs "Client is not connected" at ERROR once more after every clean
    disconnect; our own logging already reports real losses, so that line is only noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Client is not connected")


_paho_log = logging.getLogger("node.publish.paho")
_paho_log.addFilter(_NoSocketNoise())

MAX_PENDING = 1000  # messages held in memory while disconnected when there is no spool directory
DRAIN_WINDOW = 32  # spooled messages in flight at once while delivering a backlog
RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 30.0
CONNECT_TIMEOUT_S = 5.0
STOP_FLUSH_S = 1.0
_TICK_S = 0.25
_UNSUPPORTED_PROTOCOL = 0x84  # MQTT v5 CONNACK reason "Unsupported protocol version"
_AUTH_REFUSED = {0x86, 0x87, 0x8C}  # bad user name or password, not authorised, bad auth method
BROKER_STATES = ("connected", "disconnected", "auth_refused", "tls_error", "acl_refused")


def topic(root: str, node_id: str, name: str) -> str:
    """`cuas/v1` + `mast-1` + `tracks` → `cuas/v1/mast-1/tracks`."""
    return f"{root.rstrip('/')}/{node_id}/{name}"


def encode(payload: dict[str, Any]) -> bytes:
    """Compact JSON; NaN/Infinity are refused because they are not JSON (consumers would choke)."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


@dataclass
class _Sent:
    """A spooled message handed to paho, in delivery order; `done` once acknowledged (or stale)."""

    token: object
    done: bool = False


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
        self._position: dict[str, Any] | None = None
        # Guards the small shared state below; never held over paho calls. Re-entrant because a
        # health message is built (reading the counters) while its `seq` is being assigned.
        self._lock = threading.RLock()
        self._connected = False
        self._ever_connected = False
        self._broker_state = "disconnected"
        self._stopped = False
        self._started = False
        self._counts = {"published": 0, "unencodable": 0, "reconnects": 0, "dropped_stale": 0, "refused": 0}
        self._spool_stats = {
            "spooled": 0,
            "pending": 0,
            "spool_bytes": 0,
            "dropped_full": 0,
            "quarantined": 0,
        }
        self._seq = SequenceStore(state_dir)
        self.session = self._seq.session
        self._topics = {
            n: topic(mqtt.topic_root, node_id, n) for n in ("status", "info", "tracks", "health", "alerts")
        }
        self._cmd_prefix = topic(mqtt.topic_root, node_id, "cmd") + "/"
        self._password = read_password(mqtt) if mqtt.username is not None else None
        self._tls = self._tls_context() if mqtt.tls else None
        cmd = mqtt.commands
        self._commands: CommandProcessor | None = None
        if cmd.enabled:
            key = read_key(cmd.hmac_key_file) if cmd.hmac_key_file is not None else None
            self._commands = CommandProcessor(node_id, cmd, clock.now, clock.now(), key)
        self._handler: CommandHandler | None = None
        self._spool: Spool = (
            DiskSpool(spool_dir, mqtt.spool_max_bytes) if spool_dir is not None else MemorySpool(MAX_PENDING)
        )
        self._update_spool_stats()
        # Outbox state (touched only by the outbox thread once started).
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._gen = 0  # connection generation: events of older connections are ignored
        self._live: OrderedDict[int, Record] = OrderedDict()
        self._drain: deque[_Sent] = deque()
        self._drain_by_mid: dict[int, _Sent] = {}
        self._control: dict[int, str] = {}  # mid → name, for status/info/responses
        self._stop_mid: int | None = None
        self._refused_logged: set[str] = set()
        # Connector state.
        self._protocol = MQTTProtocolVersion.MQTTv5
        self._stop_event = threading.Event()
        self._ended = threading.Event()
        self._fault: str | None = None
        self._fault_logged: str | None = None
        self._session_ok = False
        self._client = self._build_client(self._protocol, 1)
        self._client_now = self._client  # the client of the live connection (outbox thread)
        self._outbox = threading.Thread(target=self._outbox_main, name="mqtt-outbox", daemon=True)
        self._connector = threading.Thread(target=self._connector_main, name="mqtt-connect", daemon=True)

    # -- public API ----------------------------------------------------------------------------

    def start(self) -> None:
        """Begin connecting in the background; returns at once even if the broker is unreachable."""
        with self._lock:
            if self._started or self._stopped:
                return
            self._started = True
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
        self._handler = handler

    def update_info(self, position: dict[str, Any] | None) -> None:
        """Record the node's position ({lat, lon, alt_m, source}); republish `info` if it changed."""
        with self._lock:
            if position == self._position:
                return
            self._position = dict(position) if position is not None else None
        self._events.put(("info",))

    def publish_tracks(self, t: float, tracks: list[dict[str, Any]]) -> None:
        """Publish one `tracks` message (the envelope and `seq` are added here).

        A message without a deleted track is a mere position update: it may expire (MQTT 5
        message expiry, and the stale-drop rule of the spool). One with a deletion never does."""
        deletion = any(tr.get("status") == "deleted" for tr in tracks)

        def build(seq: int) -> dict[str, Any]:
            return {"type": "tracks", "node_id": self._node_id, "seq": seq, "t": t, "tracks": tracks}

        self._submit("tracks", 0 if deletion else EXPIRES, build)

    def publish_alert(self, event: dict[str, Any]) -> None:
        """Publish one zone alert event on `alerts` (envelope and its own `seq` added here)."""

        def build(seq: int) -> dict[str, Any]:
            message: dict[str, Any] = {"type": "alert", "node_id": self._node_id, "seq": seq}
            message.update(event)
            return message

        self._submit("alerts", 0, build)

    def publish_health(self, payload: dict[str, Any]) -> None:
        """Publish one `health` message: `payload` minus type/node_id/seq, which are added here.

        `t` and `broker` default to now and this publisher's state (a fault state such as
        `auth_refused` always wins over a plain `connected`/`disconnected` from the caller); the
        `mqtt`, `spool` and (when enabled) `commands` blocks hold this publisher's counters.
        """
        now = self._clock.now()

        def build(seq: int) -> dict[str, Any]:
            message: dict[str, Any] = {"type": "health", "node_id": self._node_id, "seq": seq}
            message.update(payload)
            message.setdefault("t", now)
            state = self.broker_state
            if "broker" not in message or state not in ("connected", "disconnected"):
                message["broker"] = state
            message.setdefault("mqtt", self.counters)
            message.setdefault("spool", self.spool_counters)
            if self._commands is not None:
                message.setdefault("commands", self._commands.counters.as_dict())
            return message

        self._submit("health", 0, build)

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    @property
    def broker_state(self) -> str:
        """`connected`, `disconnected`, or why not: `auth_refused`, `tls_error`, `acl_refused`."""
        with self._lock:
            return self._broker_state

    @property
    def counters(self) -> dict[str, int]:
        """`published` (acknowledged by the broker), `dropped` (never delivered: unencodable, stale,
        spool full), `reconnects`."""
        with self._lock:
            c = self._counts
            dropped = c["unencodable"] + c["dropped_stale"] + self._spool_stats["dropped_full"]
            return {"published": c["published"], "dropped": dropped, "reconnects": c["reconnects"]}

    @property
    def spool_counters(self) -> dict[str, int]:
        """`spooled` (written to the spool since start), `pending` (waiting now), `spool_bytes`,
        `dropped_stale`, `dropped_full` and `quarantined` (damaged spool files moved aside)."""
        with self._lock:
            out = dict(self._spool_stats)
            out["dropped_stale"] = self._counts["dropped_stale"]
            return out

    def stop(self) -> None:
        """Say goodbye (retained offline), flush briefly, disconnect, and record the state.

        Unacknowledged messages go to the spool (delivered after the next start). A clean
        DISCONNECT makes the broker discard the Will, so the explicit offline status is what
        consumers see.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            started = self._started
        if started:
            self._events.put(("stop",))
            self._outbox.join(timeout=STOP_FLUSH_S + 2.0)
            self._stop_event.set()
            self._ended.set()
            client = self._client
            with contextlib.suppress(Exception):
                client.disconnect()
            self._connector.join(timeout=1.0)
            with contextlib.suppress(Exception):
                client.loop_stop()
        else:
            self._spool.close()
        with self._lock:
            self._connected = False
        self._seq.close()
        log.info("MQTT: stopped (%s, spool %s)", self.counters, self.spool_counters)

    # -- producers -----------------------------------------------------------------------------

    def _submit(self, name: str, flags: int, build: Callable[[int], dict[str, Any]]) -> None:
        """Give the message its `seq` and hand it to the outbox, in `seq` order per topic.

        The record is stamped with the node clock's time of publishing: its age decides whether a
        spooled track update is stale (the message's own `t` is the same time in the runtime)."""
        with self._lock:
            if self._stopped:
                return
            try:
                seq = self._seq.next(name)
            except RuntimeError:  # closed between the check and the call
                return
            try:
                data = encode(build(seq))
            except (TypeError, ValueError) as exc:
                self._counts["unencodable"] += 1
                log.error("MQTT: cannot encode %s message %d (%s); dropped", name, seq, exc)
                return
            self._events.put(("msg", Record(name, seq, self._clock.now(), flags, data)))

    # -- building clients ----------------------------------------------------------------------

    @property
    def _client_id(self) -> str:
        return self._cfg.client_id or f"cuas-node-{self._node_id}"

    def _tls_context(self) -> ssl.SSLContext:
        """Verified TLS: the broker's certificate and host name are always checked (system CAs
        unless `ca_file`); a client certificate when `cert_file`/`key_file` are set."""
        cfg = self._cfg
        try:
            context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
            if cfg.cert_file:
                context.load_cert_chain(str(cfg.cert_file), str(cfg.key_file) if cfg.key_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                [f"mqtt.ca_file / cert_file / key_file (env CUAS_MQTT__*): cannot load TLS files: {exc}"],
                "mqtt",
            ) from None
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    def _build_client(self, protocol: MQTTProtocolVersion, gen: int) -> paho.Client:
        cfg = self._cfg
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=protocol,
            reconnect_on_failure=False,  # the connector thread owns reconnecting
        )
        client.enable_logger(_paho_log)
        client.max_inflight_messages_set(DRAIN_WINDOW * 4)
        client.max_queued_messages_set(0)
        client.connect_timeout = min(CONNECT_TIMEOUT_S, float(cfg.keepalive_s))
        if cfg.username is not None:
            client.username_pw_set(cfg.username, self._password)
        if self._tls is not None:
            client.tls_set_context(self._tls)
        client.will_set(self._topics["status"], encode(self._status("offline")), qos=cfg.qos, retain=True)
        client.on_connect = lambda c, u, f, reason, p: self._on_connect(gen, c, reason)
        client.on_disconnect = lambda c, u, f, reason, p: self._on_disconnect(gen, reason)
        client.on_publish = lambda c, u, mid, reason, p: self._events.put(("ack", gen, mid, reason))
        client.on_message = lambda c, u, msg: self._events.put(("cmd", gen, msg))
        client.on_subscribe = lambda c, u, mid, reasons, p: self._on_subscribe(reasons)
        return client

    def _status(self, state: str) -> dict[str, Any]:
        return {"type": "status", "state": state, "t": self._clock.now(), "session": self.session}

    def _info(self) -> dict[str, Any]:
        with self._lock:
            position = dict(self._position) if self._position is not None else None
        info: dict[str, Any] = {
            "type": "info",
            "node_id": self._node_id,
            "software_version": __version__,
            "schema_version": SCHEMA_VERSION,
            "t": self._clock.now(),
        }
        if position is not None:
            info["position"] = position
        info["sensors"] = list(self._sensors)
        return info

    # -- the connector thread ------------------------------------------------------------------

    def _connector_main(self) -> None:
        backoff = RECONNECT_MIN_S
        gen = 1
        client = self._client
        while not self._stop_event.is_set():
            self._ended.clear()
            self._fault = None
            self._session_ok = False
            try:
                if self._protocol == MQTTProtocolVersion.MQTTv5:
                    client.connect(self._cfg.host, self._cfg.port, self._cfg.keepalive_s, clean_start=True)
                else:
                    client.connect(self._cfg.host, self._cfg.port, self._cfg.keepalive_s)
            except ssl.SSLCertVerificationError as exc:
                self._set_fault(
                    "tls_error",
                    f"TLS certificate of {self._cfg.host}:{self._cfg.port} failed verification "
                    f"({exc.verify_message}): check mqtt.ca_file",
                )
            except ssl.SSLError as exc:
                self._set_fault(
                    "tls_error",
                    f"TLS handshake with {self._cfg.host}:{self._cfg.port} failed ({exc.reason or exc}): "
                    "check mqtt.tls, mqtt.port and the certificates",
                )
            except (OSError, ValueError) as exc:
                self._set_fault(
                    "disconnected",
                    f"broker {self._cfg.host}:{self._cfg.port} unreachable "
                    f"({getattr(exc, 'strerror', None) or exc})",
                )
            else:
                if self._stop_event.is_set():
                    client.disconnect()
                    return
                client.loop_start()
                while not self._ended.wait(0.2):
                    if self._stop_event.is_set() or getattr(client, "_thread", None) is None:
                        break
                if self._stop_event.is_set():
                    return
                client.loop_stop()
                if self._session_ok and self._fault is None:
                    backoff = RECONNECT_MIN_S
            if self._stop_event.is_set():
                return
            downgrade = self._fault == "downgrade"
            if not downgrade:
                self._stop_event.wait(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX_S)
            gen += 1
            client = self._build_client(self._protocol, gen)
            with self._lock:
                self._client = client

    def _set_fault(self, state: str, message: str) -> None:
        """One clear log line per kind of fault (repeats at DEBUG), and the health state."""
        self._fault = state
        with self._lock:
            self._broker_state = state
        retry = f"spooling and retrying with back-off up to {RECONNECT_MAX_S:g} s"
        if self._fault_logged != message:
            self._fault_logged = message
            level = logging.WARNING if state == "disconnected" else logging.ERROR
            log.log(level, "MQTT: %s; %s", message, retry)
        else:
            log.debug("MQTT: %s", message)

    # -- paho callbacks (paho's network thread: post events, do not block) ----------------------

    def _on_connect(self, gen: int, client: paho.Client, reason: ReasonCode) -> None:
        if not reason.is_failure:
            self._session_ok = True
            self._events.put(("connected", gen, client))
            return
        if reason == _UNSUPPORTED_PROTOCOL and self._protocol == MQTTProtocolVersion.MQTTv5:
            log.warning("MQTT: broker refuses MQTT v5, falling back to MQTT 3.1.1")
            self._protocol = MQTTProtocolVersion.MQTTv311
            self._fault = "downgrade"
        elif reason.value in _AUTH_REFUSED:
            user = f"user {self._cfg.username!r}" if self._cfg.username else "an anonymous client"
            self._set_fault(
                "auth_refused",
                f"broker {self._cfg.host}:{self._cfg.port} refused the login of {user} ({reason.getName()}): "
                "check mqtt.username, the password file and the broker's password file",
            )
        else:
            self._set_fault(
                "disconnected",
                f"broker {self._cfg.host}:{self._cfg.port} refused the connection ({reason.getName()})",
            )
        self._ended.set()

    def _on_disconnect(self, gen: int, reason: ReasonCode) -> None:
        self._events.put(("disconnected", gen, reason))
        self._ended.set()

    def _on_subscribe(self, reasons: list[ReasonCode]) -> None:
        if any(r.is_failure for r in reasons):
            log.error(
                "MQTT: broker refused the subscription to %s# (%s): commands cannot reach this node; "
                "check the broker ACL",
                self._cmd_prefix,
                ", ".join(r.getName() for r in reasons),
            )

    # -- the outbox thread ---------------------------------------------------------------------

    def _outbox_main(self) -> None:
        next_tick = time.monotonic() + _TICK_S
        stop_deadline: float | None = None
        while True:
            timeout = max(0.0, next_tick - time.monotonic())
            if stop_deadline is not None:
                timeout = min(timeout, max(0.0, stop_deadline - time.monotonic()))
            try:
                event = self._events.get(timeout=timeout)
            except queue.Empty:
                event = None
            if event is not None:
                if event[0] == "stop":
                    stop_deadline = self._begin_stop()
                else:
                    self._handle(event)
            self._pump()
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + _TICK_S
                self._spool.tick()
                self._update_spool_stats()
            if stop_deadline is not None and (self._stop_mid is None or time.monotonic() >= stop_deadline):
                self._finish_stop()
                return

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "msg":
            record: Record = event[1]
            if self._gen and not self._spool.has_unsent():
                self._send_live(record)
            else:
                self._spool.append(record)
        elif kind == "ack":
            self._on_ack(event[1], event[2], event[3])
        elif kind == "connected":
            self._on_connected(event[1], event[2])
        elif kind == "disconnected":
            self._on_lost(event[1], event[2])
        elif kind == "info":
            if self._gen:
                self._send_control("info", self._info())
        elif kind == "cmd":
            if event[1] == self._gen:
                self._on_command(event[2])
        elif kind == "reply":
            self._send_reply(*event[1:])
        self._update_spool_stats()

    def _on_connected(self, gen: int, client: paho.Client) -> None:
        with self._lock:
            if self._ever_connected:
                self._counts["reconnects"] += 1
            self._ever_connected = True
            self._connected = True
            self._broker_state = "connected"
        self._gen = gen
        self._client_now = client
        self._fault_logged = None
        log.info(
            "MQTT: connected to %s:%d (%s)%s",
            self._cfg.host,
            self._cfg.port,
            "v5" if client.protocol == MQTTProtocolVersion.MQTTv5 else "v3.1.1",
            f"; delivering {self._spool.pending} spooled message(s)" if self._spool.pending else "",
        )
        self._send_control("status", self._status("online"))
        self._send_control("info", self._info())
        if self._commands is not None:
            client.subscribe(self._cmd_prefix + "#", qos=1)

    def _on_lost(self, gen: int, reason: ReasonCode) -> None:
        if gen != self._gen:
            return
        self._gen = 0
        with self._lock:
            self._connected = False
            stopping = self._stopped
            if self._broker_state == "connected":
                self._broker_state = "disconnected"
        if not stopping:
            log.warning(
                "MQTT: lost connection to broker (%s); spooling %d unacknowledged message(s), reconnecting",
                reason.getName(),
                len(self._live),
            )
        self._drain.clear()
        self._drain_by_mid.clear()
        self._control.clear()
        self._spool.rewind()
        for record in self._live.values():
            self._spool.append(record)
        self._live.clear()

    def _on_ack(self, gen: int, mid: int, reason: ReasonCode) -> None:
        if gen != self._gen:
            return
        if reason.is_failure:
            self._on_refused(mid, reason)
            return
        with self._lock:
            self._counts["published"] += 1
        if mid == self._stop_mid:
            self._stop_mid = None
        if self._live.pop(mid, None) is not None or self._control.pop(mid, None) is not None:
            return
        sent = self._drain_by_mid.pop(mid, None)
        if sent is not None:
            sent.done = True
            self._commit_drained()

    def _on_refused(self, mid: int, reason: ReasonCode) -> None:
        """The broker took the message but refused it (MQTT 5 PUBACK "not authorised": the ACL).
        Keep it (spooled), say so once, and retry the connection with back-off."""
        record = self._live.get(mid)
        sent = self._drain_by_mid.get(mid)
        name = record.name if record is not None else self._control.get(mid, "spooled message")
        with self._lock:
            self._counts["refused"] += 1
            self._broker_state = "acl_refused"
        self._fault = "acl_refused"
        if name not in self._refused_logged:
            self._refused_logged.add(name)
            log.error(
                "MQTT: broker refused a %s message (%s): check the broker ACL for %s; "
                "keeping messages spooled and retrying with back-off up to %g s",
                name,
                reason.getName(),
                self._cfg.topic_root,
                RECONNECT_MAX_S,
            )
        if record is not None or sent is not None:
            with contextlib.suppress(Exception):
                self._client_now.disconnect()
            self._on_lost(self._gen, reason)

    def _commit_drained(self) -> None:
        token = None
        while self._drain and self._drain[0].done:
            token = self._drain.popleft().token
        if token is not None:
            self._spool.commit(token)

    def _pump(self) -> None:
        """Deliver the spool, oldest first, a window at a time; stale track updates are dropped."""
        while self._gen and len(self._drain_by_mid) < DRAIN_WINDOW:
            item = self._spool.next_unsent()
            if item is None:
                break
            record, token = item
            sent = _Sent(token)
            self._drain.append(sent)
            if record.expires and self._clock.now() - record.t > self._cfg.spool_max_age_s:
                sent.done = True
                with self._lock:
                    self._counts["dropped_stale"] += 1
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

    def _send_live(self, record: Record) -> None:
        mid = self._publish(record.name, record.payload, False, self._expiry(record))
        if mid is None:
            self._spool.append(record)
        else:
            self._live[mid] = record

    def _send_control(self, name: str, payload: dict[str, Any], retain: bool = True) -> int | None:
        mid = self._publish(name, encode(payload), retain, None)
        if mid is not None:
            self._control[mid] = name
        return mid

    def _publish(
        self,
        name: str,
        data: bytes,
        retain: bool,
        expiry: int | None,
        to: str | None = None,
        correlation: bytes | None = None,
    ) -> int | None:
        client = self._client_now
        properties: Properties | None = None
        if client.protocol == MQTTProtocolVersion.MQTTv5:
            properties = Properties(PacketTypes.PUBLISH)
            properties.PayloadFormatIndicator = 1
            properties.ContentType = "application/json"
            if expiry is not None:
                properties.MessageExpiryInterval = expiry
            if correlation is not None:
                properties.CorrelationData = correlation
        info = client.publish(
            to or self._topics[name], data, qos=self._cfg.qos, retain=retain, properties=properties
        )
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            # The connection died under us. paho may keep a copy, but this client is never
            # reused: the caller keeps the message and the spool delivers it after the reconnect.
            log.debug("MQTT: %s not sent: %s", name, paho.error_string(info.rc))
            return None
        return info.mid

    # -- commands ------------------------------------------------------------------------------

    def _on_command(self, msg: paho.MQTTMessage) -> None:
        assert self._commands is not None
        suffix = msg.topic[len(self._cmd_prefix) :] if msg.topic.startswith(self._cmd_prefix) else ""
        name = suffix.split("/")[0] or "?"
        props = getattr(msg, "properties", None)
        reply_to = getattr(props, "ResponseTopic", None) or topic(
            self._cfg.topic_root, self._node_id, f"response/{name}"
        )
        correlation = getattr(props, "CorrelationData", None)
        outcome = self._commands.process(suffix, bytes(msg.payload))
        if isinstance(outcome, Refused):
            log.warning("MQTT: command %r refused: %s (%s)", name, outcome.reason, outcome.detail)
            reason = outcome.reason
            body = response(
                self._node_id, name, self._clock.now(), "rejected", outcome.detail, outcome.request_id, reason
            )
            self._send_reply(reply_to, correlation, body)
            return
        command = outcome
        log.info("MQTT: command %s from %s", command.name, command.identity)
        handler = self._handler

        def reply(result: Result) -> None:
            body = response(
                self._node_id,
                command.name,
                self._clock.now(),
                result.status,
                result.detail,
                command.request_id,
                None,
                result.result,
            )
            self._events.put(("reply", reply_to, correlation, body))

        if handler is None:
            reply(Result("error", "this node has no command handler"))
            return
        try:
            handler.handle_command(command, reply)
        except Exception as exc:  # a handler bug must not kill the outbox
            log.exception("MQTT: command %s failed", command.name)
            reply(Result("error", f"internal error: {type(exc).__name__}"))

    def _send_reply(self, to: str, correlation: bytes | None, body: dict[str, Any]) -> None:
        if not self._gen:
            return  # the commander times out and retries; responses are not spooled
        mid = self._publish("response", encode(body), False, None, to=to, correlation=correlation)
        if mid is not None:
            self._control[mid] = "response"

    # -- stopping ------------------------------------------------------------------------------

    def _begin_stop(self) -> float:
        if self._gen:
            self._stop_mid = self._send_control("status", self._status("offline"))
        return time.monotonic() + STOP_FLUSH_S

    def _finish_stop(self) -> None:
        if self._stop_mid is not None:
            log.warning("MQTT: offline status not confirmed within %g s", STOP_FLUSH_S)
        # Whatever the broker has not acknowledged is delivered after the next start.
        self._spool.rewind()
        for record in self._live.values():
            self._spool.append(record)
        self._live.clear()
        self._spool.close()
        self._update_spool_stats()

    def _update_spool_stats(self) -> None:
        spool = self._spool
        stats = {
            "spooled": spool.spooled,
            "pending": spool.pending,
            "spool_bytes": spool.size_bytes,
            "dropped_full": spool.dropped_full,
            "quarantined": spool.quarantined,
        }
        with self._lock:
            self._spool_stats = stats


__all__ = ["BROKER_STATES", "Command", "MqttPublisher", "encode", "topic"]
