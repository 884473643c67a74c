"""The connector thread: connect to the broker in the background, and again after every loss.

Start-up never waits for the broker: this thread connects and retries with exponential back-off;
each attempt uses a fresh paho client, so nothing paho queued on a dead connection is ever resent
behind our back (the outbox decides what is resent, from the spool, in order). MQTT v5 first,
3.1.1 when the broker refuses v5. Broker faults each give **one** clear log line and a
`health.broker` state: `auth_refused` (bad user or password, not authorised), `tls_error`
(certificate verification, handshake), or `disconnected`.

paho's callbacks run on paho's network thread: they only post events to the outbox's queue (and
commands to the rate-limited command inbox) and never block.

The loop is supervised (`link.Supervisor`): an unexpected exception restarts it with a fresh
client; repeated ones mark the publisher failed. Under MQTT 5 the CONNECT carries a Maximum
Packet Size, so the broker never hands the node a command larger than the parser would accept.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cuas_node.command_input import MAX_PAYLOAD
from cuas_node.config import MqttSection
from cuas_node.publish.link import Backoff, LinkState, Supervisor

# The publisher's log lines keep the logger name they always had (operators filter on it).
log = logging.getLogger("cuas_node.publish.mqtt")

_UNSUPPORTED_PROTOCOL = 0x84  # MQTT v5 CONNACK reason "Unsupported protocol version"
_AUTH_REFUSED = {0x86, 0x87, 0x8C}  # bad user name or password, not authorised, bad auth method
_DISCONNECT_WITH_WILL = 0x04  # MQTT 5 DISCONNECT reason: "publish my Will anyway"
# The largest packet the node accepts (MQTT 5 CONNECT property): a command payload at the parser's
# limit plus room for its topic and properties. The broker drops larger ones for this client.
MAX_PACKET_BYTES = MAX_PAYLOAD + 8 * 1024

CommandSink = Callable[[int, paho.MQTTMessage], None]


class Connector:
    """Owns the current paho client and the thread that (re)connects it."""

    def __init__(
        self,
        mqtt: MqttSection,
        link: LinkState,
        events: queue.SimpleQueue[tuple[Any, ...]],
        backoff: Backoff,
        new_client: Callable[[MQTTProtocolVersion], paho.Client],
        command_prefix: str,
        on_command: CommandSink | None = None,
    ) -> None:
        self._cfg = mqtt
        self._link = link
        self._events = events
        self._backoff = backoff
        self._new_client = new_client
        self._command_prefix = command_prefix
        self._on_command = on_command  # None: commands are off, a stray message is ignored
        self.protocol = MQTTProtocolVersion.MQTTv5
        self._stop_event = threading.Event()
        self._ended = threading.Event()  # the current attempt or connection is over
        self.commands_subscribed = threading.Event()  # the broker acknowledged the cmd/ subscription
        self._session_ok = False
        self._gen = 1  # the generation of the current client
        self.client = self._build(1)  # the client of the current attempt
        self._thread = threading.Thread(target=self._run, name="mqtt-connect", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop retrying, disconnect the current client and wait briefly for both threads."""
        self._stop_event.set()
        self._ended.set()
        client = self.client
        with contextlib.suppress(Exception):
            client.disconnect()
        self._thread.join(timeout=1.0)
        with contextlib.suppress(Exception):
            client.loop_stop()

    def abandon(self) -> None:
        """The publisher has failed: stop reconnecting and end the connection so that the broker
        publishes the Last Will (the retained `offline`), since the node cannot say so itself:
        MQTT 5 "disconnect with Will message", else (3.1.1) the socket closed without DISCONNECT."""
        self._stop_event.set()
        self._ended.set()
        client = self.client
        with contextlib.suppress(Exception):
            if self.protocol == MQTTProtocolVersion.MQTTv5:
                client.disconnect(
                    reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=_DISCONNECT_WITH_WILL)
                )
            else:
                sock = client.socket()
                if isinstance(sock, socket.socket):  # ssl.SSLSocket too
                    sock.shutdown(socket.SHUT_RDWR)

    def _build(self, gen: int) -> paho.Client:
        """A fresh client whose callbacks tag every event with the attempt's generation `gen`, so
        the outbox ignores late events of an older connection."""
        client = self._new_client(self.protocol)
        client.on_connect = lambda c, u, f, reason, p: self._on_connect(gen, c, reason)
        client.on_disconnect = lambda c, u, f, reason, p: self._on_disconnect(gen, reason)
        client.on_publish = lambda c, u, mid, reason, p: self._events.put(("ack", gen, mid, reason))
        client.on_message = lambda c, u, msg: self._command(gen, msg)
        client.on_subscribe = lambda c, u, mid, reasons, p: self._on_subscribe(reasons)
        return client

    # -- the connector thread ------------------------------------------------------------------

    def _run(self) -> None:
        Supervisor("mqtt-connect", self._link, wait=self._stop_event.wait).run(
            self._loop, self._after_fault, self._fail, stopping=self._stop_event.is_set
        )

    def _after_fault(self) -> None:
        """Before the supervised loop restarts: drop the client of the interrupted attempt and
        start over with a fresh one (a new generation, so its late events are ignored)."""
        old = self.client
        with contextlib.suppress(Exception):
            old.disconnect()
        with contextlib.suppress(Exception):
            old.loop_stop()
        self._gen += 1
        client = self._build(self._gen)
        with self._link.lock:
            self.client = client

    def _fail(self, reason: str) -> None:
        self.abandon()

    def _loop(self) -> None:
        backoff = self._backoff.min_s
        client = self.client
        cfg = self._cfg
        while not self._stop_event.is_set():
            self._ended.clear()
            self._link.fault = None
            self._session_ok = False
            try:
                if self.protocol == MQTTProtocolVersion.MQTTv5:
                    limits = Properties(PacketTypes.CONNECT)
                    limits.MaximumPacketSize = MAX_PACKET_BYTES
                    client.connect(cfg.host, cfg.port, cfg.keepalive_s, clean_start=True, properties=limits)
                else:
                    client.connect(cfg.host, cfg.port, cfg.keepalive_s)
            except ssl.SSLCertVerificationError as exc:
                self._set_fault(
                    "tls_error",
                    f"TLS certificate of {cfg.host}:{cfg.port} failed verification "
                    f"({exc.verify_message}): check mqtt.ca_file",
                )
            except ssl.SSLError as exc:
                self._set_fault(
                    "tls_error",
                    f"TLS handshake with {cfg.host}:{cfg.port} failed ({exc.reason or exc}): "
                    "check mqtt.tls, mqtt.port and the certificates",
                )
            except (OSError, ValueError) as exc:
                self._set_fault(
                    "disconnected",
                    f"broker {cfg.host}:{cfg.port} unreachable ({getattr(exc, 'strerror', None) or exc})",
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
                if self._session_ok and self._link.fault is None:
                    backoff = self._backoff.min_s
            if self._stop_event.is_set():
                return
            downgrade = self._link.fault == "downgrade"
            if not downgrade:
                self._stop_event.wait(backoff)
                backoff = min(backoff * 2, self._backoff.max_s)
            self._gen += 1
            client = self._build(self._gen)
            with self._link.lock:
                self.client = client

    def _set_fault(self, state: str, message: str) -> None:
        """One clear log line per kind of fault (repeats at DEBUG), and the health state."""
        link = self._link
        link.fault = state
        with link.lock:
            link.broker_state = state
        retry = f"spooling and retrying with back-off up to {self._backoff.max_s:g} s"
        if link.fault_logged != message:
            link.fault_logged = message
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
        cfg = self._cfg
        if reason == _UNSUPPORTED_PROTOCOL and self.protocol == MQTTProtocolVersion.MQTTv5:
            log.warning("MQTT: broker refuses MQTT v5, falling back to MQTT 3.1.1")
            self.protocol = MQTTProtocolVersion.MQTTv311
            self._link.fault = "downgrade"
        elif reason.value in _AUTH_REFUSED:
            user = f"user {cfg.username!r}" if cfg.username else "an anonymous client"
            self._set_fault(
                "auth_refused",
                f"broker {cfg.host}:{cfg.port} refused the login of {user} ({reason.getName()}): "
                "check mqtt.username, the password file and the broker's password file",
            )
        else:
            self._set_fault(
                "disconnected",
                f"broker {cfg.host}:{cfg.port} refused the connection ({reason.getName()})",
            )
        self._ended.set()

    def _command(self, gen: int, msg: paho.MQTTMessage) -> None:
        if self._on_command is not None:
            self._on_command(gen, msg)

    def _on_disconnect(self, gen: int, reason: ReasonCode) -> None:
        self.commands_subscribed.clear()
        self._events.put(("disconnected", gen, reason))
        self._ended.set()

    def _on_subscribe(self, reasons: list[ReasonCode]) -> None:
        if not any(r.is_failure for r in reasons):
            self.commands_subscribed.set()
        if any(r.is_failure for r in reasons):
            log.error(
                "MQTT: broker refused the subscription to %s# (%s): commands cannot reach this node; "
                "check the broker ACL",
                self._command_prefix,
                ", ".join(r.getName() for r in reasons),
            )
