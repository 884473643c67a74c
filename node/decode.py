"""`cuas-node decode KIND FILE`: raw sensor bytes → one JSON object per record (a public contract,
documented per kind in docs/decode-*.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from drivers.acoustic.decode import decode_acoustic
from drivers.nmea import decode_nmea
from drivers.remoteid.decode import decode_remoteid
from drivers.ti_mmwave import decode_ti

Decoder = Callable[[bytes], Iterator[dict[str, Any]]]

DECODERS: dict[str, Decoder] = {
    "nmea": decode_nmea,
    "ti-mmwave": decode_ti,
    "remoteid": decode_remoteid,
    "acoustic": decode_acoustic,
}
