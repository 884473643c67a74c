"""Remote ID (ASTM F3411 / ASD-STAN EN 4709-002 Open Drone ID): codec, carriers, inputs, driver.

Layers, each usable alone: `messages` (decode the 25-byte messages and the pack) and `encode`,
`carriers` (find the messages in BLE adverts, Wi-Fi beacons and NaN frames), `pcap` and `lines`
(the inputs), `driver` (per-drone assembly into `RemoteIdReport`), `decode` (`cuas-node decode`).
"""
