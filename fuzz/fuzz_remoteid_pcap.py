"""atheris harness for the pcap/pcapng reader (drivers/remoteid/pcap.py).

A capture file is input from the world. Checks: nothing raises, and every prefix of the input
decodes to a prefix of the whole input's records (the reader never invents a record from a
truncated block).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from _common import capture_files, instrumented, main

with instrumented(__name__):
    from cuas_node.drivers.remoteid.pcap import read_capture


def TestOneInput(data: bytes) -> None:
    whole = list(read_capture(data, {}))
    if data:
        cut = data[-1] * len(data) // 256
        part = list(read_capture(data[:cut], {}))
        assert part == whole[: len(part)]


def seeds() -> Iterator[bytes]:
    for path in capture_files("remoteid/*.pcap*"):
        yield path.read_bytes()[:16384]


if __name__ == "__main__":
    main(TestOneInput)
    sys.exit(0)
