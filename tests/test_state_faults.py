"""State that cannot lie (issue 14): a state or spool directory the node cannot write, a full card,
a damaged `mqtt-seq.json` and damaged bytes in a spool segment.

What must hold: an unwritable directory is a clear start-up error (path, problem, fix), never a
traceback; at run time a card that fails degrades the spool (messages in memory, one log line,
`state` `degraded`, no empty files, back on the card by itself) and never stops the outbox; a
session is never used twice, even when the state file is damaged or cannot be written; damaged
bytes in a segment cost the records they hit, not the rest of the segment; state files are 0600.

The faults are real where the machine allows it: a read-only or a full tmpfs (root with
CAP_SYS_ADMIN), an immutable directory (`chattr +i`, root) or a 0500 one (not root). Where it does
not, an ENOSPC is injected instead (a full card is the one fault no test machine has to spare).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import shutil
import stat
import struct
import subprocess
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cuas_node.config import ConfigError, MqttSection
from cuas_node.kernel.clock import SystemClock
from cuas_node.publish import spool_fault
from cuas_node.publish.mqtt import MqttPublisher
from cuas_node.publish.seqstore import STATE_FILE, SequenceStore
from cuas_node.publish.spool import EXPIRES, QUARANTINE, DiskSpool, MemorySpool, Record
from cuas_node.publish.state_dir import check_state_dirs
from tests import reports
from tests.fakes import wait_until

if TYPE_CHECKING:
    from conftest import MosquittoBroker, MqttSubscriber

NODE = "mast-1"
SPOOL_LOG = "cuas_node.publish.spool"
FRAME = struct.Struct("<HII")  # a segment's frame: magic, body length, CRC32 of the body


def rec(seq: int, name: str = "tracks", size: int = 100) -> Record:
    return Record(name, seq, 1000.0 + seq, EXPIRES, b'{"seq":%d,"pad":"%s"}' % (seq, b"x" * size))


def drain(spool: DiskSpool | MemorySpool) -> list[int]:
    """Hand out and acknowledge everything unsent, like a broker would."""
    seqs = []
    while (item := spool.next_unsent()) is not None:
        seqs.append(item[0].seq)
        spool.commit(item[1])
    return seqs


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("seg-*.log"))


def spool_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == SPOOL_LOG and r.levelno >= logging.ERROR]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def frame_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of the whole frames a segment begins with, up to the first bad one."""
    spans: list[tuple[int, int]] = []
    offset = 0
    while offset + FRAME.size <= len(data):
        magic, length, crc = FRAME.unpack_from(data, offset)
        end = offset + FRAME.size + length
        if magic != 0xC5A5 or end > len(data) or zlib.crc32(data[offset + FRAME.size : end]) != crc:
            break
        spans.append((offset, end))
        offset = end
    return spans


# -- real faults: a read-only or full tmpfs, an immutable directory --------------------------------


@functools.cache
def can_mount() -> bool:
    """Root with CAP_SYS_ADMIN (a container may say no): then faults are real file systems."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", tmp], capture_output=True)
        if done.returncode != 0:
            return False
        subprocess.run(["umount", "-l", tmp], check=False)
    return True


@contextlib.contextmanager
def tmpfs(path: Path, size_kib: int = 256, readonly: bool = False) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size_kib}k,mode=0755" + (",ro" if readonly else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def unwritable(directory: Path) -> Iterator[None]:
    """`directory` stays readable but nothing can be created or deleted in it, even by root."""
    if os.geteuid() != 0:
        directory.chmod(0o500)
        try:
            yield
        finally:
            directory.chmod(0o750)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(directory)]).returncode:
        pytest.skip("root, and no way to make a directory unwritable here (chattr +i)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=False)


class FullCard:
    """A card that fills up and empties again: a small tmpfs and a filler file when this machine
    can mount one, else ENOSPC injected into the spool's writes (the only injection here)."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.real = can_mount()
        self._full = False
        self._monkeypatch = monkeypatch
        if not self.real:
            from cuas_node.publish import spool_writer

            real_create, real_write = spool_writer.create_private, os.write
            ours: set[int] = set()

            def create(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
                fd = real_create(path, flags)
                if self._full:  # creating an empty file still works on a full card; writing not
                    ours.add(fd)
                return fd

            def write(fd: int, data: Any) -> int:
                if self._full and (fd in ours or fd == getattr(self, "fd", None)):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return real_write(fd, data)

            monkeypatch.setattr(spool_writer, "create_private", create)
            monkeypatch.setattr(spool_writer.os, "write", write)

    def watch(self, spool: DiskSpool) -> None:
        """(Injection only) fail the writes to the segment `spool` has open as well."""
        if not self.real:
            self.fd = spool._writer._fd

    def fill(self) -> None:
        self._full = True
        if self.real:
            fd = os.open(self.root / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                with contextlib.suppress(OSError):
                    while os.write(fd, b"\0" * 4096):
                        pass
            finally:
                os.close(fd)

    def free(self) -> None:
        self._full = False
        if self.real:
            (self.root / "filler").unlink()


@pytest.fixture
def card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FullCard]:
    root = tmp_path / "card"
    if can_mount():
        with tmpfs(root, size_kib=512):
            yield FullCard(root, monkeypatch)
    else:
        root.mkdir()
        yield FullCard(root, monkeypatch)


@pytest.fixture
def quick_retry(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(spool_fault, "RETRY_S", 0.1)
    return 0.1


# -- the start-up check ------------------------------------------------------------------------------


def test_startup_check_accepts_writable_directories_creates_them_and_leaves_nothing(tmp_path: Path) -> None:
    state, spool = tmp_path / "state", tmp_path / "state" / "spool"
    check_state_dirs(state, spool)
    assert state.is_dir() and spool.is_dir()
    assert list(state.iterdir()) == [spool] and not list(spool.iterdir())  # the probe is gone


def test_startup_check_refuses_a_read_only_file_system_naming_path_problem_and_fix(tmp_path: Path) -> None:
    if not can_mount():
        pytest.skip("cannot mount a read-only tmpfs here (needs root with CAP_SYS_ADMIN)")
    with tmpfs(tmp_path / "ro", readonly=True) as readonly, pytest.raises(ConfigError) as raised:
        check_state_dirs(readonly, readonly / "spool")
    text = raised.value.render()
    assert f"node.state_dir: cannot write in {readonly} (read-only file system)" in text
    assert f"node.spool_dir: cannot create {readonly / 'spool'} (read-only file system)" in text
    assert "use a directory under /var/lib/cuas-node" in text and "ProtectSystem=strict" in text
    assert f"sudo chown -R {pwd_name()}: {readonly}" in text


def test_startup_check_refuses_a_directory_this_user_cannot_write(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with unwritable(state), pytest.raises(ConfigError) as raised:
        check_state_dirs(state, state / "spool")
    (problem, spool_problem) = raised.value.problems
    assert problem.startswith(f"node.state_dir: cannot write in {state} (")
    assert "not writable by" in problem or "read-only" in problem
    assert spool_problem.startswith(f"node.spool_dir: cannot create {state / 'spool'}")
    assert "/var/lib/cuas-node" in problem and "chown" in problem
    assert not list(state.iterdir())


def test_startup_check_refuses_a_file_where_a_directory_is_expected(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a directory")
    with pytest.raises(ConfigError) as raised:
        check_state_dirs(tmp_path / "state", tmp_path / "state" / "spool")
    state_problem, spool_problem = raised.value.problems
    assert "a file is in the way of a directory" in state_problem and "remove or rename" in state_problem
    assert str(tmp_path / "state" / "spool") in spool_problem
    with pytest.raises(ConfigError, match="is not a directory"):
        check_state_dirs(tmp_path / "state", None, create=False)


def test_startup_check_does_not_refuse_a_full_card(card: FullCard, tmp_path: Path) -> None:
    if not card.real:
        pytest.skip("needs a real full file system (a tmpfs)")
    card.fill()
    check_state_dirs(card.root / "state", card.root / "state" / "spool")  # runs, degraded


def test_startup_check_without_create_creates_nothing(tmp_path: Path) -> None:
    check_state_dirs(tmp_path / "a" / "b", tmp_path / "a" / "b" / "spool", create=False)
    assert not (tmp_path / "a").exists()


def pwd_name() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


# -- the spool on a card that fails at run time ----------------------------------------------------


def test_a_full_card_degrades_the_spool_once_without_empty_files_and_recovers(
    card: FullCard, quick_retry: float, caplog: pytest.LogCaptureFixture
) -> None:
    directory = card.root / "spool"
    spool = DiskSpool(directory, max_bytes=1 << 20, segment_bytes=16 * 1024)
    spool.begin({})
    card.watch(spool)
    for seq in range(1, 11):
        spool.append(rec(seq))
    card.fill()
    for seq in range(11, 401):  # some 50 KB: three memory segments, several retries of the card
        spool.append(rec(seq))
        if seq % 40 == 0:
            time.sleep(quick_retry * 1.5)
            spool.tick()
    assert spool.state == "degraded"
    health = spool.health()
    assert health["state"] == "degraded" and "No space left on device" in str(health["error"])
    assert len(spool_errors(caplog)) == 1, spool_errors(caplog)  # one line, not one per message
    files = segments(directory)
    assert all(p.stat().st_size > 0 for p in files), "an empty segment file was left behind"
    assert len(files) == 1  # only the segment written before the card filled
    assert spool.pending == 400 and spool.dropped_full == 0  # accounting holds

    card.free()
    time.sleep(quick_retry * 1.5)
    spool.tick()  # the card is tried again by itself, not only when a memory segment fills
    assert spool.state == "ok" and spool.health() == {"state": "ok", "skipped_records": 0, "skipped_bytes": 0}
    assert any("can be written again" in r.getMessage() for r in caplog.records)
    for seq in range(401, 411):
        spool.append(rec(seq))
    assert drain(spool) == list(range(1, 411))  # in order: card, memory, card
    newest = segments(directory)[-1]
    spool.close()
    again = DiskSpool(directory, max_bytes=1 << 20)
    assert again.torn == 0 and again.quarantined == 0  # what reached the card is whole
    assert newest.exists() and again.last_seqs() == {"tracks": 410}


def test_a_write_cut_short_leaves_no_partial_record(card: FullCard, caplog: pytest.LogCaptureFixture) -> None:
    if not card.real:
        pytest.skip("needs a real file system that fills up mid-write")
    directory = card.root / "spool"
    spool = DiskSpool(directory, max_bytes=1 << 20, segment_bytes=1 << 20)
    spool.begin({})
    card.fill()
    written = 0
    while spool.state == "ok":  # the page left in the file fills, then a write is cut short
        written += 1
        spool.append(rec(written, size=700))
    (path,) = segments(directory)
    data = path.read_bytes()
    spans = frame_spans(data)  # the checkpoint and every record but the cut one, whole
    assert len(spans) == written and spans[-1][1] == len(data)
    spool.append(rec(written + 1))
    assert drain(spool) == list(range(1, written + 2))  # the cut one too, from memory
    spool.close()


def test_a_sync_that_fails_degrades_the_spool_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Some file systems (NFS, thin provisioning) report ENOSPC only at fsync (injected)."""
    spool = DiskSpool(tmp_path, max_bytes=1 << 20, fsync_every=4)
    spool.begin({})

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fdatasync", no_space)
    for seq in range(1, 41):
        spool.append(rec(seq))
    monkeypatch.undo()
    assert spool.state == "degraded" and len(spool_errors(caplog)) == 1
    assert drain(spool) == list(range(1, 41))
    assert all(p.stat().st_size > 0 for p in segments(tmp_path))


class Consumer:
    """A central server: MQTT 5, a persistent session (what the node sends while it is away is
    kept for it across a broker restart), QoS 1; the `seq`s of one topic, in arrival order."""

    def __init__(self, broker: MosquittoBroker, name: str) -> None:
        self.seqs: list[int] = []
        subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"consumer-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.on_connect = lambda c, *a: c.subscribe(f"cuas/v1/{NODE}/{name}", qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = lambda c, u, msg: self.seqs.append(json.loads(msg.payload)["seq"])
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        self.client.connect(broker.host, broker.port, keepalive=5, clean_start=False, properties=props)
        self.client.loop_start()
        assert subscribed.wait(5), "the consumer could not subscribe"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.usefixtures("fast_mqtt_backoff")
def test_an_unwritable_spool_directory_at_run_time_never_stops_the_outbox(
    make_mosquitto: Callable[..., MosquittoBroker],
    broker_files: Path,
    tmp_path: Path,
    quick_retry: float,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The finding: the outbox died at the first broker outage with an unwritable spool
    directory (0 tracks, 0 health from then on). Now: every message arrives, in order."""
    broker = make_mosquitto(f"persistence true\npersistence_location {broker_files}/\n")
    consumer = Consumer(broker, "tracks")
    spool_dir = tmp_path / "spool"
    cfg = MqttSection(host=broker.host, port=broker.port, keepalive_s=5, spool_max_bytes=256 * 1024)
    pub = MqttPublisher(cfg, NODE, tmp_path / "state", SystemClock(), [], spool_dir=spool_dir)
    try:
        pub.start()
        wait_until(lambda: pub.connected, what="connected")
        pub.publish_tracks(time.time(), [reports.track(1)])
        wait_until(lambda: consumer.seqs == [1], what="the first track")
        broker.stop()
        wait_until(lambda: not pub.connected, what="the outage")
        with unwritable(spool_dir):
            for _ in range(80):  # ~1 KB each: several 16 KiB segments while the broker is away
                pub.publish_tracks(time.time(), [reports.track(1)])
            wait_until(lambda: pub.spool_counters["pending"] == 80, what="80 messages held")
            assert pub._spool.health()["state"] == "degraded"
            broker.start()
            wait_until(lambda: len(consumer.seqs) >= 81, what="81 tracks")
            assert consumer.seqs == list(range(1, 82))  # in order, nothing lost
            wait_until(lambda: pub.spool_counters["pending"] == 0, what="all acknowledged")
        errors = spool_errors(caplog)
        assert len(errors) == 1 and str(spool_dir) in errors[0], errors
        assert not [r for r in caplog.records if r.exc_info], "the spool raised into the outbox"
        wait_until(lambda: pub._spool.health()["state"] == "ok", what="back on the card by itself")
        assert any("can be written again" in r.getMessage() for r in caplog.records)
        pub.publish_tracks(time.time(), [reports.track(1)])
        wait_until(lambda: consumer.seqs[-1:] == [82], what="the next track")
        assert len(segments(spool_dir)) == 1  # what was delivered meanwhile is deleted too
    finally:
        pub.stop()
        consumer.close()


def test_a_publisher_on_a_read_only_state_directory_runs_and_delivers(
    mosquitto: MosquittoBroker, mqtt_sub: Callable[..., MqttSubscriber], tmp_path: Path
) -> None:
    """Library use without the start-up check: no traceback at start, tracks still delivered."""
    state = tmp_path / "state"
    state.mkdir()
    sub = mqtt_sub(mosquitto, f"cuas/v1/{NODE}/tracks")
    with unwritable(state):
        cfg = MqttSection(host=mosquitto.host, port=mosquitto.port, keepalive_s=5)
        pub = MqttPublisher(cfg, NODE, state, SystemClock(), [], spool_dir=state / "spool")
        try:
            pub.start()
            for _ in range(3):
                pub.publish_tracks(time.time(), [])
            assert [m.payload["seq"] for m in sub.wait_count("/tracks", 3, timeout=10)] == [1, 2, 3]
            assert pub._spool.health()["state"] == "degraded"
        finally:
            pub.stop()


# -- sessions and sequence numbers -------------------------------------------------------------------


def test_a_damaged_seq_file_is_kept_aside_and_the_session_still_grows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = SequenceStore(tmp_path, clock=lambda: 5000.0)
    assert first.session == 5000
    assert [first.next("tracks") for _ in range(3)] == [1, 2, 3]
    del first  # a crash; then the card damages the file
    path = tmp_path / STATE_FILE
    path.write_bytes(b"\0" * 40)  # nothing legible left
    os.utime(path, (5000.0, 5000.0))
    second = SequenceStore(tmp_path, clock=lambda: 4000.0)  # and the clock is behind
    assert second.session > 5000  # from the damaged file's time: never the crashed run's session
    (kept,) = tmp_path.glob(f"{STATE_FILE}.damaged-*")
    assert kept.read_bytes() == b"\0" * 40 and kept.name == f"{STATE_FILE}.damaged-4000"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "damaged" in errors[0] and kept.name in errors[0]
    assert json.loads(path.read_text())["session"] == second.session  # a good file again
    third = SequenceStore(tmp_path, clock=lambda: 4001.0)
    assert third.session == second.session + 1


def test_a_session_still_legible_in_a_damaged_file_is_a_floor(tmp_path: Path) -> None:
    store = SequenceStore(tmp_path, clock=lambda: 9_000_000.0)
    store.close()
    path = tmp_path / STATE_FILE
    path.write_bytes(path.read_bytes()[:-15])  # cut short: not JSON any more
    os.utime(path, (100.0, 100.0))
    assert SequenceStore(tmp_path, clock=lambda: 200.0).session == 9_000_001


def test_sessions_never_repeat_when_the_state_cannot_be_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The finding: with an unwritable state dir two restarts both used session 2. The start-up
    check refuses that; a card that fills later still never gives a session twice."""
    state = tmp_path / "state"
    first = SequenceStore(state, clock=lambda: 1000.0)
    first.close()
    with unwritable(state):
        runs = [SequenceStore(state, clock=lambda t=t: t) for t in (2000.0, 2001.0)]
        assert not any(run.persistent for run in runs)
    assert runs[0].session > first.session and runs[1].session > runs[0].session
    assert SequenceStore(state, clock=lambda: 3000.0).session > runs[1].session


def test_after_a_power_cut_and_a_damaged_seq_file_seq_never_repeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cuas_node.publish import spool_segment

    spool = DiskSpool(tmp_path / "spool", max_bytes=1 << 20)
    store = SequenceStore(tmp_path / "state", resume=spool.last_seqs(), wal=True)
    spool.begin(store.next_values())
    for _ in range(30):
        spool.append(rec(store.next("tracks")))
    del spool, store  # the power goes; the file is damaged by it
    (tmp_path / "state" / STATE_FILE).write_text('{"seq": {"tracks": ')
    monkeypatch.setattr(spool_segment, "boot_id", lambda: "another-boot")
    spool = DiskSpool(tmp_path / "spool", max_bytes=1 << 20)
    assert spool.last_seqs() is None and spool.seen_seqs() == {"tracks": 30}
    store = SequenceStore(tmp_path / "state", resume=None, wal=True, seen=spool.seen_seqs())
    assert store.next("tracks") > 30  # a gap: what the log lost may have been sent


def test_a_damaged_seq_file_gives_a_new_session_and_seq_continues_from_the_spool(
    mosquitto: MosquittoBroker, mqtt_sub: Callable[..., MqttSubscriber], tmp_path: Path
) -> None:
    """The finding: a damaged `mqtt-seq.json` restarted seq and session at 1, the crashed run's
    session, so consumers threw the new run's tracks away as repeats."""
    sub = mqtt_sub(mosquitto, f"cuas/v1/{NODE}/+")
    cfg = MqttSection(host=mosquitto.host, port=mosquitto.port, keepalive_s=5)

    def run() -> MqttPublisher:
        pub = MqttPublisher(cfg, NODE, tmp_path / "state", SystemClock(), [], spool_dir=tmp_path / "spool")
        pub.start()
        wait_until(lambda: pub.connected, what="connected")
        return pub

    first = run()
    for _ in range(5):
        first.publish_tracks(time.time(), [])
    sub.wait_count("/tracks", 5)
    first.stop()
    (tmp_path / "state" / STATE_FILE).write_bytes(b'{"format": 1, "sess')
    second = run()
    try:
        assert second.session > first.session
        second.publish_tracks(time.time(), [])
        tracks = sub.wait_count("/tracks", 6)
        assert [m.payload["seq"] for m in tracks] == [1, 2, 3, 4, 5, 6]  # no repeat, no gap
        online = [m.payload["session"] for m in sub.snapshot("/status") if m.payload["state"] == "online"]
        assert online == [first.session, second.session]
    finally:
        second.stop()


def test_state_files_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        (tmp_path / STATE_FILE).write_text(json.dumps({"session": 3, "seq": {}}))
        (tmp_path / STATE_FILE).chmod(0o644)  # as an older version left it
        store = SequenceStore(tmp_path)
        store.next("tracks")
        store.close()
        spool = DiskSpool(tmp_path / "spool", max_bytes=1 << 20, cursor_interval_s=0)
        spool.begin({})
        spool.append(rec(1))
        drain(spool)
        spool.close()
    finally:
        os.umask(old)
    assert mode(tmp_path / STATE_FILE) == 0o600
    assert [mode(p) for p in segments(tmp_path / "spool")] == [0o600]
    assert mode(tmp_path / "spool" / "cursor.json") == 0o600


# -- damaged bytes in a segment --------------------------------------------------------------------


def written_segment(directory: Path, count: int = 100, **kwargs: Any) -> tuple[Path, list[tuple[int, int]]]:
    """One segment of `count` records, closed; and (start, end) of each record's frame."""
    spool = DiskSpool(directory, max_bytes=1 << 20, segment_bytes=1 << 20, **kwargs)
    spool.begin({})
    for seq in range(1, count + 1):
        spool.append(rec(seq))
    spool.close()
    (path,) = segments(directory)
    frames = frame_spans(path.read_bytes())[1:]  # after the checkpoint
    return path, frames


def damage(path: Path, offset: int, length: int = 16) -> None:
    data = bytearray(path.read_bytes())
    data[offset : offset + length] = bytes(b ^ 0xA5 for b in data[offset : offset + length])
    path.write_bytes(bytes(data))


def test_16_damaged_bytes_mid_segment_cost_only_the_record_they_hit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The finding: 16 damaged bytes in the middle of a segment dropped the 57 intact records
    after them. Now only record 43 is lost, and health says so."""
    path, frames = written_segment(tmp_path)
    start, end = frames[42]  # record 43
    damage(path, start + 40)  # inside its payload
    spool = DiskSpool(tmp_path, max_bytes=1 << 20)
    assert drain(spool) == [s for s in range(1, 101) if s != 43]
    assert spool.health() == {"state": "ok", "skipped_records": 1, "skipped_bytes": end - start}
    assert spool.quarantined == 1 and len(list((tmp_path / QUARANTINE).iterdir())) == 1
    assert mode(path) == 0o600  # the intact records, rewritten in its place
    assert any("about 1 message(s) lost, the 99 intact one(s) kept" in e for e in spool_errors(caplog))
    assert spool.last_seqs() is None  # damage: where seq continues is not the log's to say
    spool.append(rec(101))
    assert drain(spool) == [101]
    spool.close()


def test_damage_across_a_frame_header_resynchronises_at_the_next_record(tmp_path: Path) -> None:
    path, frames = written_segment(tmp_path)
    damage(path, frames[43][0] - 8)  # the end of 43 and the header of 44
    spool = DiskSpool(tmp_path, max_bytes=1 << 20)
    assert drain(spool) == [s for s in range(1, 101) if s not in (43, 44)]
    assert spool.skipped_records == 2  # from the gap in seq


def test_damage_in_the_newest_segment_and_a_torn_tail_keep_every_whole_record(tmp_path: Path) -> None:
    path, frames = written_segment(tmp_path, count=50)
    damage(path, frames[9][0] + 30)
    with path.open("ab") as handle:
        handle.write(rec(51).encode()[:-9])  # killed mid-write
    spool = DiskSpool(tmp_path, max_bytes=1 << 20)
    assert drain(spool) == [s for s in range(1, 51) if s != 10]
    assert spool.torn == 1 and spool.skipped_records == 1


def test_zeros_at_the_end_of_the_newest_segment_are_a_torn_tail_not_damage(tmp_path: Path) -> None:
    """What some file systems leave after a power cut: the size grew, the data never came."""
    path, _ = written_segment(tmp_path, count=10)
    with path.open("ab") as handle:
        handle.write(b"\0" * 300)
    spool = DiskSpool(tmp_path, max_bytes=1 << 20)
    assert drain(spool) == list(range(1, 11))
    assert spool.torn == 1 and spool.quarantined == 0 and spool.skipped_records == 0
    assert not (tmp_path / QUARANTINE).exists()


def test_the_delivery_position_survives_the_repair_of_its_segment(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20, cursor_interval_s=0)
    spool.begin({})
    for seq in range(1, 61):
        spool.append(rec(seq))
    for _ in range(20):  # 1..20 acknowledged, the cursor saved; then killed
        item = spool.next_unsent()
        assert item is not None
        spool.commit(item[1])
    del spool
    (path,) = segments(tmp_path)
    frames = frame_spans(path.read_bytes())[1:]
    damage(path, frames[4][0] + 30)  # before the cursor
    damage(path, frames[39][0] + 30)  # after it
    again = DiskSpool(tmp_path, max_bytes=1 << 20)
    assert drain(again) == [s for s in range(21, 61) if s != 40]  # not 1..20 again


def test_a_segment_that_cannot_be_repaired_on_a_read_only_card_is_delivered_from_memory(
    tmp_path: Path,
) -> None:
    path, frames = written_segment(tmp_path / "spool")
    damage(path, frames[42][0] + 40)
    with unwritable(tmp_path / "spool"):
        spool = DiskSpool(tmp_path / "spool", max_bytes=1 << 20)
        assert drain(spool) == [s for s in range(1, 101) if s != 43]
        spool.begin({})
        spool.append(rec(101))
        assert drain(spool) == [101] and spool.state == "degraded"
        spool.close()
