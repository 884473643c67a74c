"""The on-disk spool on its own: order, acknowledgement, the size bound, restarts, torn and damaged
files. The publisher's use of it against a real broker is in test_broker_faults.py; cards that
fail (full, read-only) and damage in detail in test_state_faults.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from cuas_node.publish.spool import EXPIRES, QUARANTINE, DiskSpool, MemorySpool, Record


def rec(seq: int, name: str = "tracks", size: int = 100, flags: int = EXPIRES) -> Record:
    return Record(name, seq, 1000.0 + seq, flags, b'{"seq":%d,"pad":"%s"}' % (seq, b"x" * size))


def drain(spool: DiskSpool | MemorySpool, commit: bool = True) -> list[int]:
    """Hand out everything unsent (and acknowledge it, like a broker would)."""
    seqs = []
    while (item := spool.next_unsent()) is not None:
        record, token = item
        seqs.append(record.seq)
        if commit:
            spool.commit(token)
    return seqs


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("seg-*.log"))


def test_records_round_trip_in_order_and_the_spool_empties(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20, segment_bytes=2048)
    for seq in range(1, 51):
        spool.append(rec(seq, flags=EXPIRES if seq % 2 else 0))
    assert spool.pending == 50 and spool.spooled == 50
    assert len(segments(tmp_path)) > 2  # rotated
    first = spool.next_unsent()
    assert first is not None and first[0] == rec(1)
    spool.commit(first[1])
    assert drain(spool) == list(range(2, 51))
    assert spool.pending == 0
    # Delivered segments are deleted; the newest stays: the write-ahead log appends to it.
    (newest,) = segments(tmp_path)
    assert spool.size_bytes == newest.stat().st_size
    spool.append(rec(51))  # and it starts again
    assert drain(spool) == [51]
    spool.close()


def test_rewind_resends_everything_not_acknowledged(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20, segment_bytes=1024)
    for seq in range(1, 21):
        spool.append(rec(seq))
    tokens = []
    for _ in range(10):
        item = spool.next_unsent()
        assert item is not None
        tokens.append(item[1])
    spool.commit(tokens[3])  # acked 1..4, 5..10 in flight when the link drops
    spool.rewind()
    assert drain(spool) == list(range(5, 21))
    spool.close()


def test_full_spool_drops_oldest_first_and_counts(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=64 * 1024, segment_bytes=16 * 1024)
    for seq in range(1, 1001):
        spool.append(rec(seq, size=200))
    assert spool.size_bytes <= 64 * 1024
    assert spool.dropped_full > 0
    delivered = drain(spool)
    assert delivered == list(range(1001 - len(delivered), 1001))  # the newest survive, in order
    assert spool.dropped_full + len(delivered) == 1000  # every message accounted for
    spool.close()


def test_restart_resumes_after_the_last_acknowledged_message(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20, segment_bytes=1024, cursor_interval_s=0)
    for seq in range(1, 31):
        spool.append(rec(seq))
    for _ in range(12):
        item = spool.next_unsent()
        assert item is not None
        spool.commit(item[1])
    spool.close()  # clean stop: exact position saved
    again = DiskSpool(tmp_path, max_bytes=1 << 20, segment_bytes=1024)
    assert again.pending == 18
    assert drain(again) == list(range(13, 31))
    again.close()


def test_crash_without_close_delivers_at_least_once(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20, segment_bytes=4096, cursor_interval_s=3600)
    for seq in range(1, 31):
        spool.append(rec(seq))
    for _ in range(5):
        item = spool.next_unsent()
        assert item is not None
        spool.commit(item[1])
    del spool  # crash: no close, the cursor was never saved (interval 1 h)
    again = DiskSpool(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    seqs = drain(again)
    assert seqs[-25:] == list(range(6, 31))  # nothing lost; 1..5 may come again (same seq)
    assert set(seqs) <= set(range(1, 31))


def test_torn_tail_after_power_cut_is_cut_off(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20)
    for seq in range(1, 6):
        spool.append(rec(seq))
    spool.close()
    (path,) = segments(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data + rec(6).encode()[:-7])  # the last write only half made it
    again = DiskSpool(tmp_path, max_bytes=1 << 20)
    assert drain(again) == [1, 2, 3, 4, 5]
    assert again.quarantined == 0
    assert not path.exists() or path.stat().st_size == len(data)


def test_damaged_segment_is_quarantined_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20, segment_bytes=1024)
    for seq in range(1, 31):
        spool.append(rec(seq))
    spool.close()
    paths = segments(tmp_path)
    assert len(paths) >= 3
    middle = paths[1]
    data = bytearray(middle.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped bit in the middle of the second segment
    middle.write_bytes(bytes(data))
    (tmp_path / "cursor.json").write_text("{garbage")
    again = DiskSpool(tmp_path, max_bytes=1 << 20, segment_bytes=1024)
    seqs = drain(again)
    assert again.quarantined == 2  # the segment (its intact records kept) and the cursor file
    assert len(list((tmp_path / QUARANTINE).iterdir())) == 2
    assert seqs == sorted(seqs) and len(seqs) == 29  # only the damaged record is lost, order kept
    assert again.skipped_records == 1 and again.health()["skipped_records"] == 1
    assert "damaged" in caplog.text
    again.append(rec(31))
    assert drain(again) == [31]
    again.close()


def test_memory_spool_is_bounded_oldest_first() -> None:
    spool = MemorySpool(max_records=5)
    for seq in range(1, 9):
        spool.append(rec(seq))
    assert spool.dropped_full == 3
    assert drain(spool) == [4, 5, 6, 7, 8]
    assert spool.pending == 0
