"""atheris harness for the ASTM F3411 message decoder (drivers/remoteid/messages.py) and the
carrier extractors in front of it (drivers/remoteid/carriers.py).

Checks: `decode_payload` never raises and always reports a message or a named error;
`decode_message` raises only ParseError; the BLE, beacon and NaN extractors never raise.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from _common import capture_files, instrumented, main

with instrumented(__name__):
    from cuas_node.drivers.parsing import ParseError
    from cuas_node.drivers.remoteid.carriers import beacon_odid, ble_odid, nan_odid
    from cuas_node.drivers.remoteid.messages import MESSAGE_SIZE, decode_message, decode_payload
    from cuas_node.drivers.remoteid.pcap import read_capture


def TestOneInput(data: bytes) -> None:
    result = decode_payload(data)
    assert result.messages or result.errors
    with contextlib.suppress(ParseError):
        decode_message(data[:MESSAGE_SIZE])
    ble_odid(data)
    beacon_odid(data)
    nan_odid(data)


def seeds() -> Iterator[bytes]:
    for path in capture_files("remoteid/*.pcap*"):
        for r in list(read_capture(path.read_bytes(), {}))[:20]:
            yield r.payload


if __name__ == "__main__":
    main(TestOneInput)
    sys.exit(0)
