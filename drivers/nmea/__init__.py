"""GNSS over NMEA 0183: `fields` (checksum, field decoders), `parser` (sans-IO epochs), `encode`
(sentences for the simulator), `driver` (the node's receiver), `decode` (`cuas-node decode nmea`)."""
