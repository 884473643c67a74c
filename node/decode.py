"""`cuas-node decode KIND FILE`: raw sensor bytes → one JSON object per record (a public contract,
documented per kind in docs/decode-*.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from cuas_node.drivers.acoustic.decode import decode_acoustic
from cuas_node.drivers.nmea.decode import decode_nmea
from cuas_node.drivers.radar.ti_decode import UnsupportedFirmware, decode_ti
from cuas_node.drivers.remoteid.decode import decode_remoteid

Decoder = Callable[[bytes], Iterator[dict[str, Any]]]

DECODERS: dict[str, Decoder] = {
    "nmea": decode_nmea,
    "ti-mmwave": decode_ti,
    "remoteid": decode_remoteid,
    "acoustic": decode_acoustic,
}

DECODE_FAILURES: tuple[type[Exception], ...] = (UnsupportedFirmware,)
"""What a decoder may raise, after yielding every record it could decode, about input it cannot
decode (e.g. a radar firmware version): the message says what was found and what to do, and
`decode` prints it to stderr and exits 1."""
