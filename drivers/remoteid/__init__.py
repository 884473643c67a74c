"""Remote ID (ASTM F3411 / ASD-STAN EN 4709-002 Open Drone ID): codec, carriers, inputs, driver.

Layers, each usable alone: `messages` (decode the 25-byte messages and the pack) and `encode`,
`carriers` (find the messages in BLE adverts, Wi-Fi beacons and NaN frames), `pcap` and `lines`
(the inputs), `driver` (per-drone assembly into `RemoteIdReport`), `decode` (`cuas-node decode`).
"""

from drivers.remoteid.carriers import OdidFrame
from drivers.remoteid.decode import decode_remoteid
from drivers.remoteid.driver import RemoteIdAssembler, RemoteIdDriver
from drivers.remoteid.encode import encode_message, encode_pack
from drivers.remoteid.messages import (
    Auth,
    BasicId,
    Location,
    OdidMessage,
    OperatorId,
    SelfId,
    System,
    decode_message,
    decode_payload,
)

__all__ = [
    "Auth", "BasicId", "Location", "OdidFrame", "OdidMessage", "OperatorId", "RemoteIdAssembler",
    "RemoteIdDriver", "SelfId", "System", "decode_message", "decode_payload", "decode_remoteid",
    "encode_message", "encode_pack",
]  # fmt: skip
