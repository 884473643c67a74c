"""An in-process stand-in for the MQTT publisher: the runtime's sink, serialised by the real wire
module (`cuas_node.publish.wire`) exactly as `MqttPublisher` does, minus the broker. For tests
that drive a `Runtime` without a network."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cuas_node.kernel.reports import AlertEvent, GeoPoint, NodePosition, TrackReport
from cuas_node.publish import wire


class RecordingSink:
    def __init__(self, node_id: str = "t", session: int = 1) -> None:
        self.node_id = node_id
        self.session = session
        self.tracks: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []
        self.health: list[dict[str, Any]] = []
        self.info: list[tuple[NodePosition | None, GeoPoint | None]] = []
        self.started = False
        self.stopped = False
        self.connected = False  # as reported to health and the status LED: no broker by default

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def update_info(self, position: NodePosition | None, origin: GeoPoint | None) -> None:
        self.info.append((position, origin))

    def publish_tracks(self, t: float, tracks: Sequence[TrackReport]) -> None:
        records = [wire.track_record(r, self.session) for r in tracks]
        self.tracks.append(wire.tracks_message(self.node_id, self.session, len(self.tracks) + 1, t, records))

    def publish_alert(self, event: AlertEvent) -> None:
        record = wire.alert_record(event, self.session)
        self.alerts.append(wire.alert_message(self.node_id, self.session, len(self.alerts) + 1, record))

    def publish_health(self, payload: dict[str, Any]) -> None:
        self.health.append(payload)
