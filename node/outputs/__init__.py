"""The node's standard outputs beside MQTT: Cursor-on-Target for TAK, SAPIENT (BSI Flex 335 v2.0)
as an ASM, Home Assistant MQTT discovery (docs/outputs.md).

Each output runs on its own thread (`worker.OutputWorker`) behind a bounded queue and maps the
same typed track reports the MQTT publisher gets (`cuas_node.kernel.reports`), one module per
standard (`cot`, `sapient`), with its mapping tables as data (`cot_map`, `sapient_map`). Like
`cuas_node.publish`, this package knows no fusion internals (tests/test_architecture.py). The
Home Assistant output (`homeassistant`, `ha_discovery`, `ha_state`) has its own thread and queue
but no connection of its own (it publishes through the node's MQTT link), so it is no
`OutputWorker`; it reads the documents the publisher sends.
"""
