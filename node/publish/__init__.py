"""Publishing: the node's MQTT contract (topics and JSON documented in docs/mqtt.md).

`wire` owns the wire format (topics, encoding, envelopes); `mqtt.MqttPublisher` is the facade.
"""
