"""pcap and pcapng files → Remote ID payloads: Wi-Fi (radiotap or bare 802.11) and nRF-sniffer BLE.

Plain `struct` code rather than a library: the node needs four link types and two file formats,
all of them a few fixed headers deep, and a dependency (scapy, dpkt) would be bigger than this
module, slower to import on a Pi, and would still need the nRF sniffer header done by hand.

Robustness is the point: a capture file is input from the world. A truncated block ends the file
(counted as `truncated`), a packet the sniffer marks as received with a bad CRC/FCS is skipped
(`bad_crc`: the nRF sniffer captures about one in ten long-range adverts that way, with corrupted
fields), an unknown link type is counted (`unsupported_linktype`), and nothing raises.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

from cuas_node.drivers.remoteid.carriers import beacon_odid, ble_odid, format_mac, nan_odid

PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"

LINKTYPE_IEEE802_11 = 105
LINKTYPE_RADIOTAP = 127
LINKTYPE_BLUETOOTH_LE_LL = 251
LINKTYPE_NORDIC_BLE = 272

_BLE_ADV_ACCESS_ADDRESS = 0x8E89BED6
_PHY_CODED = 2
# Radiotap fields before "dBm antenna signal" (bit 5): (alignment, size) for bits 0..4.
_RADIOTAP_FIELDS = ((8, 8), (1, 1), (1, 1), (2, 4), (1, 2))
_RADIOTAP_FLAG_FCS, _RADIOTAP_FLAG_BAD_FCS = 0x10, 0x40


class RawOdid(NamedTuple):
    carrier: str
    mac: str | None
    rssi_dbm: float | None
    counter: int
    payload: bytes
    t: float | None


class Packet(NamedTuple):
    linktype: int
    t: float
    data: bytes


def _count(counts: dict[str, int], key: str, n: int = 1) -> None:
    counts[key] = counts.get(key, 0) + n


def iter_pcap(data: bytes, counts: dict[str, int]) -> Iterator[Packet]:
    """Packets of a classic pcap file (either byte order, microsecond or nanosecond stamps)."""
    magic = data[:4]
    endian = "<" if magic in (PCAP_MAGICS[0], PCAP_MAGICS[2]) else ">"
    scale = 1e-9 if magic in PCAP_MAGICS[2:] else 1e-6
    if len(data) < 24:
        _count(counts, "truncated")
        return
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    record = struct.Struct(endian + "IIII")
    pos = 24
    while pos < len(data):
        if pos + 16 > len(data):
            _count(counts, "truncated")
            return
        sec, frac, caplen, _ = record.unpack_from(data, pos)
        if pos + 16 + caplen > len(data):
            _count(counts, "truncated")
            return
        yield Packet(linktype, sec + frac * scale, data[pos + 16 : pos + 16 + caplen])
        pos += 16 + caplen


def iter_pcapng(data: bytes, counts: dict[str, int]) -> Iterator[Packet]:
    """Packets of a pcapng file: Enhanced, Simple and obsolete Packet blocks, any section byte order."""
    endian = "<"
    interfaces: list[tuple[int, float]] = []  # (linktype, seconds per timestamp unit)
    pos = 0
    while pos + 12 <= len(data):
        if data[pos : pos + 4] == PCAPNG_MAGIC:
            endian = "<" if data[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            interfaces = []
        btype, blen = struct.unpack_from(endian + "II", data, pos)
        if blen < 12 or blen % 4 or pos + blen > len(data):
            _count(counts, "truncated")
            return
        body = data[pos + 8 : pos + blen - 4]
        pos += blen
        if btype == 1 and len(body) >= 8:
            linktype = struct.unpack_from(endian + "H", body, 0)[0]
            interfaces.append((linktype, _tsresol(body[8:], endian)))
        elif btype in (2, 6) and len(body) >= 20:
            if btype == 6:
                iface, hi, lo, caplen, _ = struct.unpack_from(endian + "IIIII", body, 0)
            else:
                iface, _, hi, lo, caplen, _ = struct.unpack_from(endian + "HHIIII", body, 0)
            if iface >= len(interfaces) or 20 + caplen > len(body):
                _count(counts, "truncated")
                continue
            linktype, unit = interfaces[iface]
            yield Packet(linktype, ((hi << 32) | lo) * unit, body[20 : 20 + caplen])
        elif btype == 3 and len(body) >= 4 and interfaces:
            yield Packet(interfaces[0][0], 0.0, body[4:])
    if pos < len(data):
        _count(counts, "truncated")


def _tsresol(options: bytes, endian: str) -> float:
    pos = 0
    while pos + 4 <= len(options):
        code, length = struct.unpack_from(endian + "HH", options, pos)
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = options[pos + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0**-v
        pos += 4 + (length + 3) // 4 * 4
    return 1e-6


def read_capture(data: bytes, counts: dict[str, int]) -> Iterator[RawOdid]:
    """Every Remote ID payload in a pcap or pcapng file, in file order."""
    packets = iter_pcapng(data, counts) if data[:4] == PCAPNG_MAGIC else iter_pcap(data, counts)
    for packet in packets:
        _count(counts, "packets")
        skipped = counts.get("bad_crc", 0) + counts.get("unsupported_linktype", 0)
        try:
            found = list(_extract(packet, counts))
        except (struct.error, IndexError):
            _count(counts, "malformed_packets")
            continue
        if not found and skipped == counts.get("bad_crc", 0) + counts.get("unsupported_linktype", 0):
            _count(counts, "non_odid_packets")
        yield from found


def _extract(packet: Packet, counts: dict[str, int]) -> Iterator[RawOdid]:
    if packet.linktype == LINKTYPE_RADIOTAP:
        yield from _radiotap(packet.data, packet.t, counts)
    elif packet.linktype == LINKTYPE_IEEE802_11:
        yield from _dot11(packet.data, None, packet.t)
    elif packet.linktype == LINKTYPE_NORDIC_BLE:
        yield from _nordic(packet.data, packet.t, counts)
    elif packet.linktype == LINKTYPE_BLUETOOTH_LE_LL:
        yield from _ble_ll(packet.data, False, None, packet.t)
    else:
        _count(counts, "unsupported_linktype")


def _radiotap(data: bytes, t: float, counts: dict[str, int]) -> Iterator[RawOdid]:
    length, present = struct.unpack_from("<HI", data, 2)
    # Skip the extended presence words (bit 31 chains another 32-bit word).
    offset, word = 8, present
    while word & 0x80000000:
        (word,) = struct.unpack_from("<I", data, offset)
        offset += 4
    flags, rssi = 0, None
    for bit, (align, size) in enumerate(_RADIOTAP_FIELDS):
        if present & (1 << bit):
            offset += -offset % align
            if bit == 1:
                flags = data[offset]
            offset += size
    if present & (1 << 5) and offset < length:
        rssi = float(struct.unpack_from("<b", data, offset)[0])
    if flags & _RADIOTAP_FLAG_BAD_FCS:
        _count(counts, "bad_crc")
        return
    frame = data[length:]
    if flags & _RADIOTAP_FLAG_FCS:
        frame = frame[:-4]
    yield from _dot11(frame, rssi, t)


def _dot11(frame: bytes, rssi: float | None, t: float) -> Iterator[RawOdid]:
    if len(frame) < 24:
        return
    fc = frame[0]
    mac = format_mac(frame[10:16])  # the transmitter address
    if fc == 0x80:  # beacon: 12 fixed bytes, then the element list
        for counter, payload in beacon_odid(frame[36:]):
            yield RawOdid("wifi-beacon", mac, rssi, counter, payload, t)
    elif fc == 0xD0:  # action frame: NaN service discovery
        for counter, payload in nan_odid(frame[24:]):
            yield RawOdid("wifi-nan", mac, rssi, counter, payload, t)


def _nordic(data: bytes, t: float, counts: dict[str, int]) -> Iterator[RawOdid]:
    """nRF Sniffer for Bluetooth LE (LINKTYPE_NORDIC_BLE): board id, a 6-byte header, the event packet.

    Header v1: header length, payload length, protocol version, counter u16, packet id; v2 and v3:
    payload length u16, protocol version, counter u16, packet id. Both keep the protocol version at
    byte 3. The event packet starts with its own header length, then flags (bit 0 CRC ok, bits 4-6
    PHY), channel, RSSI (negated), event counter u16, timestamp u32, and the on-air packet.
    """
    protover = data[3]
    if protover == 0 or data[0:2] == b"\xbe\xef":
        _count(counts, "unsupported_linktype")
        return
    event = data[7:]
    flags, rssi = event[1], -float(event[3])
    if not flags & 0x01:
        _count(counts, "bad_crc")
        return
    coded = protover >= 2 and (flags >> 4) & 0x07 == _PHY_CODED
    yield from _ble_ll(event[event[0] :], coded, rssi, t)


def _ble_ll(packet: bytes, coded: bool, rssi: float | None, t: float) -> Iterator[RawOdid]:
    """An advertising-channel link-layer packet: access address, [coding indicator], PDU, CRC."""
    (aa,) = struct.unpack_from("<I", packet, 0)
    if aa != _BLE_ADV_ACCESS_ADDRESS:
        return
    pos = 5 if coded else 4
    pdu_type, length = packet[pos] & 0x0F, packet[pos + 1]
    pdu = packet[pos + 2 : pos + 2 + length]
    if pdu_type in (0, 2, 4, 6):  # ADV_IND, ADV_NONCONN_IND, SCAN_RSP, ADV_SCAN_IND: AdvA + AdvData
        mac: str | None = format_mac(pdu[5::-1])
        adv_data, carrier = pdu[6:], "bt4"
    elif pdu_type == 7:  # extended advertising (AUX_ADV_IND, AUX_CHAIN_IND): common extended header
        ext_len = pdu[0] & 0x3F
        header = pdu[1 : 1 + ext_len]
        mac = format_mac(header[6:0:-1]) if ext_len and header[0] & 0x01 else None
        adv_data, carrier = pdu[1 + ext_len :], "bt5"
    else:
        return
    found = ble_odid(adv_data)
    if found is not None:
        yield RawOdid(carrier, mac, rssi, found[0], found[1], t)
