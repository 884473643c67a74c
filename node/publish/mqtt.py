"""The node's only way out: tracks, health, status and info as JSON over MQTT.

Design choices, each for a field node on a flaky link:

* `connect_async` + `loop_start`: the broker may be down or unreachable when the Pi boots; the
  sensors and fusion must still start, and the node must catch up on its own (paho's automatic
  reconnect, back-off 1..30 s).
* A retained `status` with a retained Last Will: any consumer, even one that subscribes later,
  sees whether the node is online, and the broker flips it to `offline` if the node dies without
  saying goodbye. `session` (from the state dir) tells a consumer the node restarted.
* `seq` per topic, persisted in blocks (see `seqstore.py`), so consumers can detect gaps and
  duplicates across reconnects and restarts.
* MQTT v5 first (message properties, reason codes), with a fallback to 3.1.1 for old brokers.
* A bounded in-memory queue: while the broker is away, tracks and health pile up in paho; past
  `MAX_PENDING` new ones are dropped and counted (`dropped`), so a long outage cannot eat the
  Pi's RAM. The headroom above that bound keeps room for `status`/`info`, which must get through.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from node import SCHEMA_VERSION, __version__
from node.clock import Clock
from node.config import ConfigError, MqttSection, read_password
from node.publish.seqstore import SequenceStore

log = logging.getLogger(__name__)


class _NoSocketNoise(logging.Filter):
    """paho 2.x's loop thread logs "Client is not connected" at ERROR once more after every clean
    disconnect; our own on_disconnect already reports real losses, so that line is only noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Client is not connected")


_paho_log = logging.getLogger("node.publish.paho")
_paho_log.addFilter(_NoSocketNoise())

MAX_PENDING = 1000  # tracks/health messages held in memory while disconnected (~3 min at 5 Hz)
_HEADROOM = 32  # extra paho queue slots reserved for status/info
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
STOP_FLUSH_S = 1.0
_UNSUPPORTED_PROTOCOL = 0x84  # MQTT v5 CONNACK reason "Unsupported protocol version"


def topic(root: str, node_id: str, name: str) -> str:
    """`cuas/v1` + `mast-1` + `tracks` → `cuas/v1/mast-1/tracks`."""
    return f"{root.rstrip('/')}/{node_id}/{name}"


def encode(payload: dict[str, Any]) -> bytes:
    """Compact JSON; NaN/Infinity are refused because they are not JSON (consumers would choke)."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


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
    ) -> None:
        self._cfg = mqtt
        self._node_id = node_id
        self._clock = clock
        self._sensors = [{"id": sid, "kind": kind} for sid, kind in sensors]
        self._position: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._connected = False
        self._ever_connected = False
        self._stopped = False
        self._started = False
        self._counts = {"published": 0, "dropped": 0, "reconnects": 0}
        self._seq = SequenceStore(state_dir)
        self.session = self._seq.session
        self._topics = {
            n: topic(mqtt.topic_root, node_id, n) for n in ("status", "info", "tracks", "health", "alerts")
        }
        self._client = self._build_client(MQTTProtocolVersion.MQTTv5)

    # -- public API ----------------------------------------------------------------------------

    def start(self) -> None:
        """Begin connecting in the background; returns at once even if the broker is unreachable."""
        with self._lock:
            if self._started or self._stopped:
                return
            self._started = True
        self._client.connect_async(self._cfg.host, self._cfg.port, keepalive=self._cfg.keepalive_s)
        self._client.loop_start()
        log.info(
            "MQTT: connecting to %s:%d as %s (session %d)",
            self._cfg.host,
            self._cfg.port,
            self._client_id,
            self.session,
        )

    def update_info(self, position: dict[str, Any] | None) -> None:
        """Record the node's position ({lat, lon, alt_m, source}); republish `info` if it changed."""
        with self._lock:
            if position == self._position:
                return
            self._position = dict(position) if position is not None else None
            connected = self._connected
        # While disconnected, the next connect publishes the new info anyway.
        if connected:
            self._publish_info()

    def publish_tracks(self, t: float, tracks: list[dict[str, Any]]) -> None:
        """Publish one `tracks` message (the envelope and `seq` are added here)."""
        seq = self._next_seq("tracks")
        if seq is None:
            return
        envelope = {"type": "tracks", "node_id": self._node_id, "seq": seq, "t": t, "tracks": tracks}
        self._publish_bounded("tracks", envelope)

    def publish_alert(self, event: dict[str, Any]) -> None:
        """Publish one zone alert event on `alerts` (envelope and its own `seq` added here)."""
        seq = self._next_seq("alerts")
        if seq is None:
            return
        message: dict[str, Any] = {"type": "alert", "node_id": self._node_id, "seq": seq}
        message.update(event)
        self._publish_bounded("alerts", message)

    def publish_health(self, payload: dict[str, Any]) -> None:
        """Publish one `health` message: `payload` minus type/node_id/seq, which are added here.

        `t` and `broker` default to now and this publisher's state; an `mqtt` block with this
        publisher's counters is added unless the caller supplied one.
        """
        seq = self._next_seq("health")
        if seq is None:
            return
        message: dict[str, Any] = {"type": "health", "node_id": self._node_id, "seq": seq}
        message.update(payload)
        message.setdefault("t", self._clock.now())
        message.setdefault("broker", "connected" if self.connected else "disconnected")
        message.setdefault("mqtt", self.counters)
        self._publish_bounded("health", message)

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    @property
    def counters(self) -> dict[str, int]:
        """`published` (acknowledged by the broker), `dropped` (never sent), `reconnects`."""
        with self._lock:
            return dict(self._counts)

    def stop(self) -> None:
        """Say goodbye (retained offline), flush briefly, disconnect, and record the sequence state.

        A clean DISCONNECT means the broker discards the Will, so the explicit offline status is
        what consumers see.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            started, connected, client = self._started, self._connected, self._client
        if started:
            if connected:
                info = self._publish("status", self._status("offline"), retain=True)
                if info is not None:
                    try:
                        info.wait_for_publish(timeout=STOP_FLUSH_S)
                    except (RuntimeError, ValueError) as exc:
                        log.warning("MQTT: offline status not confirmed: %s", exc)
            client.disconnect()
            client.loop_stop()
        self._seq.close()
        log.info("MQTT: stopped (%s)", self.counters)

    # -- building the client -------------------------------------------------------------------

    @property
    def _client_id(self) -> str:
        return self._cfg.client_id or f"cuas-node-{self._node_id}"

    def _build_client(self, protocol: MQTTProtocolVersion) -> paho.Client:
        cfg = self._cfg
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self._client_id, protocol=protocol)
        client.enable_logger(_paho_log)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.max_queued_messages_set(MAX_PENDING + _HEADROOM)
        if cfg.username is not None:
            client.username_pw_set(cfg.username, read_password(cfg))
        if cfg.tls:
            self._configure_tls(client)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._arm_will(client)
        return client

    def _configure_tls(self, client: paho.Client) -> None:
        """Verified TLS: the broker's certificate is always checked (system CAs unless ca_file)."""
        cfg = self._cfg
        try:
            client.tls_set(
                ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                certfile=str(cfg.cert_file) if cfg.cert_file else None,
                keyfile=str(cfg.key_file) if cfg.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                [f"mqtt.ca_file / cert_file / key_file (env CUAS_MQTT__*): cannot load TLS files: {exc}"],
                "mqtt",
            ) from None
        client.tls_insecure_set(False)

    def _arm_will(self, client: paho.Client) -> None:
        """The Will's `t` is the time this connection attempt was made (paho sends it in CONNECT)."""
        client.will_set(
            self._topics["status"], encode(self._status("offline")), qos=self._cfg.qos, retain=True
        )

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

    # -- paho callbacks (run on paho's network thread) -----------------------------------------

    def _on_pre_connect(self, client: paho.Client, userdata: Any) -> None:
        self._arm_will(client)

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            if reason == _UNSUPPORTED_PROTOCOL and client.protocol == MQTTProtocolVersion.MQTTv5:
                log.warning("MQTT: broker refuses MQTT v5, falling back to MQTT 3.1.1")
                # Not on this (paho's) thread: replacing the client means joining this thread.
                threading.Thread(
                    target=self._downgrade, args=(client,), name="mqtt-downgrade", daemon=True
                ).start()
            else:
                log.error(
                    "MQTT: broker %s:%d refused the connection: %s",
                    self._cfg.host,
                    self._cfg.port,
                    reason.getName(),
                )
            return
        with self._lock:
            self._connected = True
            if self._ever_connected:
                self._counts["reconnects"] += 1
            self._ever_connected = True
        log.info(
            "MQTT: connected to %s:%d (%s)",
            self._cfg.host,
            self._cfg.port,
            "v5" if client.protocol == MQTTProtocolVersion.MQTTv5 else "v3.1.1",
        )
        self._publish("status", self._status("online"), retain=True)
        self._publish_info()

    def _downgrade(self, old: paho.Client) -> None:
        """Replace the v5 client by a 3.1.1 one (paho cannot switch an existing client's version).

        Only happens before the first successful connect, so the only casualties are messages
        queued while the broker was refusing us; they are counted as dropped.
        """
        old.disconnect()
        old.loop_stop()
        new = self._build_client(MQTTProtocolVersion.MQTTv311)
        with self._lock:
            if self._stopped:
                return
            self._counts["dropped"] += len(old._out_messages)
            self._client = new
            # Inside the lock so that a concurrent stop() sees either no client thread or this one.
            new.connect_async(self._cfg.host, self._cfg.port, keepalive=self._cfg.keepalive_s)
            new.loop_start()

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            was_connected = self._connected
            self._connected = False
            stopping = self._stopped
        if was_connected and not stopping:
            log.warning("MQTT: lost connection to broker (%s); reconnecting", reason.getName())

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Properties
    ) -> None:
        with self._lock:
            self._counts["published"] += 1

    # -- publishing ----------------------------------------------------------------------------

    def _publish_info(self) -> None:
        self._publish("info", self._info(), retain=True)

    def _next_seq(self, name: str) -> int | None:
        """The next `seq`, or None once stopped (a late call from another thread is ignored)."""
        try:
            return None if self._stopped else self._seq.next(name)
        except RuntimeError:  # closed between the check and the call
            return None

    def _publish_bounded(self, name: str, payload: dict[str, Any]) -> None:
        """Publish a tracks/health message unless too many are already waiting for the broker.

        A dropped message has used its `seq`, so consumers see the loss as a gap.
        """
        with self._lock:
            if self._stopped:
                return
            backlog = len(self._client._out_messages)  # paho exposes no public queue length
            if backlog >= MAX_PENDING:
                self._counts["dropped"] += 1
                if self._counts["dropped"] == 1 or self._counts["dropped"] % 100 == 0:
                    log.warning(
                        "MQTT: %d messages waiting for the broker; dropped %d so far",
                        backlog,
                        self._counts["dropped"],
                    )
                return
        self._publish(name, payload, retain=False)

    def _publish(self, name: str, payload: dict[str, Any], retain: bool) -> paho.MQTTMessageInfo | None:
        try:
            data = encode(payload)
        except (TypeError, ValueError) as exc:
            log.error("MQTT: cannot encode %s message (%s); dropped", name, exc)
            self._count_drop()
            return None
        client = self._client
        properties: Properties | None = None
        if client.protocol == MQTTProtocolVersion.MQTTv5:
            properties = Properties(PacketTypes.PUBLISH)
            properties.PayloadFormatIndicator = 1
            properties.ContentType = "application/json"
        info = client.publish(
            self._topics[name], data, qos=self._cfg.qos, retain=retain, properties=properties
        )
        # NO_CONN with QoS>0 means "queued until connected"; with QoS 0 the message is gone.
        queued = info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and self._cfg.qos > 0
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS and not queued:
            log.debug("MQTT: %s not sent: %s", name, paho.error_string(info.rc))
            self._count_drop()
            return None
        return info

    def _count_drop(self) -> None:
        with self._lock:
            self._counts["dropped"] += 1
