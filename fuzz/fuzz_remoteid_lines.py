"""atheris harness for the Remote ID serial line parsers (drivers/remoteid/lines.py): the node's
`ODID,...` protocol and drone-mesh-mapper JSON lines (the first byte's parity picks the format).

Checks: nothing raises (a RecursionError from deeply nested JSON was found this way), the line
buffer stays within MAX_LINE_BYTES, and split feeding equals whole feeding.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from _common import capture_files, instrumented, main, split

with instrumented(__name__):
    from cuas_node.drivers.parsing import ParseError
    from cuas_node.drivers.remoteid.lines import MAX_LINE_BYTES, MeshMapperLineParser, OdidLineParser
    from cuas_node.drivers.remoteid.pcap import read_capture


def _parse(odid: bool, chunks: list[bytes]) -> tuple[list[object], dict[str, int]]:
    parser = OdidLineParser() if odid else MeshMapperLineParser()
    out: list[object] = []
    for chunk in chunks:
        out += parser.feed(chunk)
        assert len(parser._lines._buf) <= MAX_LINE_BYTES
    out += parser.flush()
    return out, parser.counters


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    odid = data[0] % 2 == 0
    try:
        chunks = split(data)
        assert _parse(odid, chunks) == _parse(odid, [b"".join(chunks)])
    except ParseError:
        pass


def seeds() -> Iterator[bytes]:
    """ODID lines made from the real pcaps' payloads, and a few drone-mesh-mapper lines."""
    lines = []
    for path in capture_files("remoteid/*.pcap*"):
        for r in read_capture(path.read_bytes(), {}):
            rssi = "" if r.rssi_dbm is None else f"{r.rssi_dbm:g}"
            lines.append(
                f"ODID,{r.carrier},{r.mac or ''},{rssi},0d{r.counter:02x}{r.payload.hex()}\n".encode()
            )
    for start in range(0, len(lines), 16):
        yield b"\x00" + b"".join(lines[start : start + 16])
    yield (
        b"\x01"
        + b'{"heartbeat":"Device is active and running."}\n'
        + b'{"mac":"60:60:1f:aa:bb:cc","rssi":-67,"drone_lat":51.501234,"drone_long":-0.141234,'
        + b'"drone_altitude":143,"pilot_lat":51.5,"pilot_long":-0.14,"basic_id":"1581F5FHC23A00001"}\n'
    )


if __name__ == "__main__":
    main(TestOneInput)
    sys.exit(0)
