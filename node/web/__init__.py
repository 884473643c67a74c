"""The technician's live view: a read-only page and JSON API served by the node (docs/web.md).

An output beside MQTT, with the same layering rules as `cuas_node.publish`: it shows the documents
the MQTT publisher builds (`MqttPublisher.add_listener` hands over the very bytes it sends), so
the page and `GET /api/tracks` can never disagree with what consumers receive, and nothing is
encoded twice. The HTTP server (Tornado) runs on its own thread and event loop: fusion only
hands bytes over, and each browser has its own bounded queue (a slow one is dropped and counted).
"""
