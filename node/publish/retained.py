"""Retained messages the node keeps on its broker beside its own `status` and `info`.

Why here and not in a second client: another output that lives on the same broker (Home
Assistant's MQTT discovery, docs/outputs.md) needs retained documents that survive a broker
restart without persistence and reach the broker whenever the node is connected, which is exactly
what `status`/`info` already get from the outbox. A second MQTT client would need its own
credentials and ACL entry, its own reconnect loop and a client id of its own, and would still not
share the node's Last Will. So the publisher holds these documents in this registry and the outbox
publishes every one on each connect and each change, retained, with the node's QoS.

An empty payload removes the broker's retained message (MQTT). Once the broker has acknowledged
an empty one, the topic leaves the registry (nothing to repeat on later connects).
`confirmed(topic, data)` tells the owner that the broker acknowledged exactly that payload, so
that a caller can forget a topic it cleared only once the broker really dropped it.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("cuas_node.publish.mqtt")


class RetainedSet:
    """Thread-safe: owners call `put`/`confirmed`/`refused` from any thread; the outbox thread
    calls the rest (`items`, `get`, and what is in flight by MQTT message id)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, bytes] = {}
        self._confirmed: dict[str, bytes] = {}
        self._refused: dict[str, str] = {}
        self._in_flight: dict[int, tuple[str, bytes]] = {}  # mid → (topic, payload); outbox only
        self._logged: set[str] = set()

    def put(self, topic: str, data: bytes) -> bool:
        """Hold `data` as `topic`'s retained message; False when it is already held (nothing to send)."""
        with self._lock:
            if self._held.get(topic) == data:
                return False
            self._held[topic] = data
            return True

    def get(self, topic: str) -> bytes | None:
        with self._lock:
            return self._held.get(topic)

    def items(self) -> list[tuple[str, bytes]]:
        """Everything held, in the order it was first put (discovery configs before states)."""
        with self._lock:
            return list(self._held.items())

    def in_flight(self, mid: int, topic: str, data: bytes) -> None:
        self._in_flight[mid] = (topic, data)

    def forget_in_flight(self) -> None:
        """The connection is gone: what was in flight is sent again on the next connect."""
        self._in_flight.clear()

    def acknowledged(self, mid: int) -> None:
        """The broker acknowledged message `mid` (PUBACK/PUBCOMP; written, with QoS 0)."""
        held = self._in_flight.pop(mid, None)
        if held is None:
            return
        topic, data = held
        with self._lock:
            self._confirmed[topic] = data
            self._refused.pop(topic, None)
            if data == b"" and self._held.get(topic) == b"":
                del self._held[topic]  # cleared for good: nothing to repeat on the next connect

    def refused_mid(self, mid: int, reason: str) -> bool:
        """The broker refused message `mid` (MQTT 5 "not authorised": its ACL); False when `mid`
        is not one of these documents. Logged once per topic; the owner reports it in its health."""
        held = self._in_flight.pop(mid, None)
        if held is None:
            return False
        with self._lock:
            self._refused[held[0]] = reason
        if held[0] not in self._logged:
            self._logged.add(held[0])
            log.error("MQTT: broker refused the retained message on %s (%s): check its ACL", held[0], reason)
        return True

    def confirmed(self, topic: str, data: bytes) -> bool:
        with self._lock:
            return self._confirmed.get(topic) == data

    def refused(self) -> dict[str, str]:
        """Topic → the broker's reason, for messages it refused and has not taken since."""
        with self._lock:
            return dict(self._refused)
