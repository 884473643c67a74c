"""The technician's live view: a read-only page and JSON API served by the node (docs/web.md).

An output beside MQTT, with the same layering rules as `cuas_node.publish`: it shows the documents
the MQTT publisher builds (`MqttPublisher.add_listener` hands over the very bytes it sends), so
the page and `GET /api/tracks` can never disagree with what consumers receive, and nothing is
encoded twice. The HTTP server (Tornado) runs on its own thread and event loop: fusion only
hands bytes over, and each browser has its own bounded queue (a slow one is dropped and counted).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from cuas_node.config import Config
from cuas_node.config_sections import ZoneSection


class DocumentSource(Protocol):
    """What the live view needs of the publisher (`MqttPublisher`): to be handed its documents."""

    def add_listener(self, listener: Callable[[str, bytes], None]) -> None: ...


def start_web(
    config: Config,
    source: DocumentSource,
    health_blocks: dict[str, Callable[[], dict[str, Any]]],
    zone_listeners: list[Callable[[Sequence[ZoneSection]], None]],
) -> Any:
    """The running `WebServer` when `[web]` is enabled (`server.serve`), else None; the server and
    Tornado are imported only then, so a node without the page does not pay for them (nor asks
    anything of the publisher)."""
    if not config.web.enabled:
        return None
    from cuas_node.web.server import serve

    return serve(config, source.add_listener, health_blocks, zone_listeners)
