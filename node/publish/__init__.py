"""Publishing: the node's MQTT contract (topics and JSON documented in docs/mqtt.md)."""

from node.publish.mqtt import MqttPublisher, topic

__all__ = ["MqttPublisher", "topic"]
