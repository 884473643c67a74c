"""Building paho clients: verified TLS and one fresh, fully configured client per connection attempt.

A fresh client per attempt (rather than paho's own reconnect) means nothing paho queued on a dead
connection is ever resent behind our back: the publisher decides what is resent, from the spool.
The callbacks are wired by the connector, which knows the attempt's generation.
"""

from __future__ import annotations

import logging
import ssl

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cuas_node.config import ConfigError, MqttSection

CONNECT_TIMEOUT_S = 5.0

log = logging.getLogger("cuas_node.publish.mqtt")


class NotConnectedNoiseFilter(logging.Filter):
    """paho 2.x's loop thread logs "Client is not connected" at ERROR once more after every clean
    disconnect; our own logging already reports real losses, so that line is only noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Client is not connected")


# The logger every paho client of the publisher writes to (`Client.enable_logger`).
paho_log = logging.getLogger("cuas_node.publish.paho")
paho_log.addFilter(NotConnectedNoiseFilter())


def publish_properties(expiry: int | None, correlation: bytes | None) -> Properties:
    """MQTT 5 PUBLISH properties: JSON payload, message expiry (stale track updates) and the
    correlation data a commander matches its response with."""
    properties = Properties(PacketTypes.PUBLISH)
    properties.PayloadFormatIndicator = 1
    properties.ContentType = "application/json"
    if expiry is not None:
        properties.MessageExpiryInterval = expiry
    if correlation is not None:
        properties.CorrelationData = correlation
    return properties


def publish(
    client: paho.Client,
    topic: str,
    data: bytes,
    qos: int,
    retain: bool,
    expiry: int | None = None,
    correlation: bytes | None = None,
) -> int | None:
    """Hand one message to paho (with the MQTT 5 properties under v5): its mid, or None if the
    connection is dying. paho may keep a copy then, but a client is never reused after its
    connection: the caller keeps the message (the spool delivers it after the reconnect)."""
    properties: Properties | None = None
    if client.protocol == MQTTProtocolVersion.MQTTv5:
        properties = publish_properties(expiry, correlation)
    info = client.publish(topic, data, qos=qos, retain=retain, properties=properties)
    if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
        log.debug("MQTT: message to %s not sent: %s", topic, paho.error_string(info.rc))
        return None
    return info.mid


def will_properties() -> Properties:
    """MQTT 5 properties of the Last Will: the same JSON tagging as every published message."""
    properties = Properties(PacketTypes.WILLMESSAGE)
    properties.PayloadFormatIndicator = 1
    properties.ContentType = "application/json"
    return properties


def client_id(mqtt: MqttSection, node_id: str) -> str:
    """The configured client id, else one derived from the node id (what the broker ACL names)."""
    return mqtt.client_id or f"cuas-node-{node_id}"


def tls_context(mqtt: MqttSection) -> ssl.SSLContext:
    """Verified TLS: the broker's certificate and host name are always checked (system CAs
    unless `ca_file`); a client certificate when `cert_file`/`key_file` are set."""
    try:
        context = ssl.create_default_context(cafile=str(mqtt.ca_file) if mqtt.ca_file else None)
        if mqtt.cert_file:
            context.load_cert_chain(str(mqtt.cert_file), str(mqtt.key_file) if mqtt.key_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            [f"mqtt.ca_file / cert_file / key_file (env CUAS_MQTT__*): cannot load TLS files: {exc}"],
            "mqtt",
        ) from None
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def build_client(
    mqtt: MqttSection,
    identity: str,
    protocol: MQTTProtocolVersion,
    password: str | None,
    tls: ssl.SSLContext | None,
    will: tuple[str, bytes],
    max_inflight: int,
) -> paho.Client:
    """A paho client that never reconnects or queues on its own, with the retained Last Will
    `will` = (topic, payload) (tagged as JSON under MQTT 5); callbacks are left to the caller."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=identity,
        protocol=protocol,
        reconnect_on_failure=False,  # the connector thread owns reconnecting
    )
    client.enable_logger(paho_log)
    # An exception in one of our callbacks must not end paho's network thread (the connection
    # would die with it): paho logs it and goes on. Ours never raise on purpose (issue 14).
    client.suppress_exceptions = True
    client.max_inflight_messages_set(max_inflight)
    client.max_queued_messages_set(0)
    client.connect_timeout = min(CONNECT_TIMEOUT_S, float(mqtt.keepalive_s))
    if mqtt.username is not None:
        client.username_pw_set(mqtt.username, password)
    if tls is not None:
        client.tls_set_context(tls)
    will_topic, will_payload = will
    properties = will_properties() if protocol == MQTTProtocolVersion.MQTTv5 else None
    client.will_set(will_topic, will_payload, qos=mqtt.qos, retain=True, properties=properties)
    return client
