"""How Remote ID rides on Bluetooth and Wi-Fi: finding the messages in a frame, and wrapping them.

Every carrier puts the same thing on the air after its own header: an application code 0x0D (on
Wi-Fi the vendor OUI type), a message counter, then one message (Bluetooth 4 legacy adverts) or a
message pack (Bluetooth 5 long range, Wi-Fi beacon, Wi-Fi NaN). The extractors below return
`(counter, payload)` pairs, and `FrameDecoder` turns a pair into an `OdidFrame` of decoded messages
while counting everything that did not decode, so that every input (serial lines, pcap files) has
the same counters and the same records.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cuas_node.drivers.remoteid.messages import OdidMessage, decode_payload

CARRIERS = ("bt4", "bt5", "wifi-beacon", "wifi-nan")
ODID_APP_CODE = 0x0D
BLE_SERVICE_UUID = 0xFFFA
ASTM_OUI = bytes.fromhex("fa0bbc")
WFA_OUI = bytes.fromhex("506f9a")
NAN_SERVICE_ID = bytes.fromhex("8869199d9209")
"""First 6 bytes of SHA-256("org.opendroneid.remoteid")."""

_AD_SERVICE_DATA_16 = 0x16
_IE_VENDOR = 221
_NAN_ACTION_HEADER = b"\x04\x09" + WFA_OUI + b"\x13"
_NAN_SDA = 0x03
_U16 = struct.Struct("<H")


@dataclass(frozen=True, slots=True)
class OdidFrame:
    """One received Remote ID frame and the messages decoded from it."""

    carrier: str | None
    mac: str | None
    rssi_dbm: float | None
    counter: int | None
    messages: tuple[OdidMessage, ...]
    t: float | None = None
    """Capture time (Unix s) when the input knows it (pcap), else None."""
    source: str = "odid"
    """`odid` for real messages; `drone-mesh-mapper` for fields relayed by that firmware as JSON."""


def format_mac(raw: bytes) -> str:
    return raw.hex(":")


def ble_odid(adv_data: bytes) -> tuple[int, bytes] | None:
    """(counter, payload) from BLE advertising data, walking the AD structures (Flags etc. may precede)."""
    pos, end = 0, len(adv_data)
    while pos < end:
        length = adv_data[pos]
        if length == 0 or pos + 1 + length > end:
            return None
        if (
            adv_data[pos + 1] == _AD_SERVICE_DATA_16
            and length >= 5
            and adv_data[pos + 2 : pos + 5] == b"\xfa\xff" + bytes((ODID_APP_CODE,))
        ):
            return adv_data[pos + 5], bytes(adv_data[pos + 6 : pos + 1 + length])
        pos += 1 + length
    return None


def beacon_odid(ies: bytes) -> list[tuple[int, bytes]]:
    """(counter, pack) of every ASTM vendor element (FA:0B:BC type 0x0D) in an 802.11 IE list."""
    out: list[tuple[int, bytes]] = []
    pos, end = 0, len(ies)
    while pos + 2 <= end:
        ie_id, length = ies[pos], ies[pos + 1]
        body = ies[pos + 2 : pos + 2 + length]
        if len(body) < length:
            break
        if ie_id == _IE_VENDOR and length >= 5 and body[:4] == ASTM_OUI + bytes((ODID_APP_CODE,)):
            out.append((body[4], bytes(body[5:])))
        pos += 2 + length
    return out


def nan_odid(action_body: bytes) -> list[tuple[int, bytes]]:
    """(counter, pack) from a NaN service discovery frame body (after the 24-byte 802.11 header).

    The service info of a Service Descriptor Attribute for the Remote ID service ID is a counter and
    a pack. The optional fields before it are skipped as the service control byte announces them.
    """
    if action_body[:6] != _NAN_ACTION_HEADER:
        return []
    out: list[tuple[int, bytes]] = []
    pos, end = 6, len(action_body)
    while pos + 3 <= end:
        attr_id = action_body[pos]
        (length,) = _U16.unpack_from(action_body, pos + 1)
        attr = action_body[pos + 3 : pos + 3 + length]
        pos += 3 + length
        if len(attr) < length:
            break
        if attr_id != _NAN_SDA or len(attr) < 9 or attr[:6] != NAN_SERVICE_ID:
            continue
        control, p = attr[8], 9
        if control & 0x40:  # binding bitmap
            p += 2
        for present in (control & 0x04, control & 0x08):  # matching filter, service response filter
            if present and p < len(attr):
                p += 1 + attr[p]
        if control & 0x10 and p < len(attr):
            info = attr[p + 1 : p + 1 + attr[p]]
            if len(info) >= 1:
                out.append((info[0], bytes(info[1:])))
    return out


def ble_legacy_adv_data(counter: int, message: bytes) -> bytes:
    """The 31-byte BT4 advertising data carrying one 25-byte message."""
    return bytes((30, _AD_SERVICE_DATA_16, 0xFA, 0xFF, ODID_APP_CODE, counter & 0xFF)) + message


def ble_ext_adv_data(counter: int, pack: bytes) -> bytes:
    """BT5 extended advertising data carrying a message pack."""
    return bytes((len(pack) + 5, _AD_SERVICE_DATA_16, 0xFA, 0xFF, ODID_APP_CODE, counter & 0xFF)) + pack


def beacon_vendor_ie(counter: int, pack: bytes) -> bytes:
    """The vendor-specific element (221) of a Wi-Fi beacon carrying a message pack."""
    return bytes((_IE_VENDOR, len(pack) + 5)) + ASTM_OUI + bytes((ODID_APP_CODE, counter & 0xFF)) + pack


def nan_action_body(counter: int, pack: bytes) -> bytes:
    """A NaN service discovery frame body (publish, service info present) carrying a message pack."""
    info = bytes((counter & 0xFF,)) + pack
    sda = NAN_SERVICE_ID + bytes((1, 0, 0x10, len(info))) + info
    sdea = bytes((1,)) + _U16.pack(0x0200) + bytes((counter & 0xFF,))
    return (
        _NAN_ACTION_HEADER
        + bytes((_NAN_SDA,)) + _U16.pack(len(sda)) + sda
        + bytes((0x0E,)) + _U16.pack(len(sdea)) + sdea
    )  # fmt: skip


class FrameDecoder:
    """Payload → `OdidFrame`, with counters shared by every input.

    Counters: `frames` (frames with at least one message), `messages`, and one counter per problem
    named as `messages.decode_payload` names it (`empty_pack`, `truncated_pack`, ...).
    """

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts
        counts.setdefault("frames", 0)
        counts.setdefault("messages", 0)

    def frame(
        self,
        carrier: str | None,
        mac: str | None,
        rssi_dbm: float | None,
        counter: int | None,
        payload: bytes,
        t: float | None = None,
    ) -> OdidFrame | None:
        result = decode_payload(payload)
        for error in result.errors:
            self.counts[error] = self.counts.get(error, 0) + 1
        if not result.messages:
            return None
        self.counts["frames"] += 1
        self.counts["messages"] += len(result.messages)
        return OdidFrame(carrier, mac, rssi_dbm, counter, tuple(result.messages), t)
