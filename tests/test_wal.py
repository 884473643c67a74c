"""The spool as the publisher's write-ahead log: every message is on disk before paho sees it and
leaves when the broker acknowledges it, so `kill -9` at any moment loses nothing and `seq` has no
gap (docs/reliability.md).

First the log's bookkeeping on its own (append, acknowledge, replay order, segment deletion, the
group commit's syncs, a torn last record, where `seq` continues), then the publisher killed with
SIGKILL at random points mid-stream against a real mosquitto, connected and with the broker
stopped for part of the run: a consumer with a persistent session must see every `seq` from 1 to
the last one used (repeats allowed, always with the same payload; gaps not)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cuas_node.config import MqttSection
from cuas_node.kernel.clock import SystemClock
from cuas_node.publish import outbox, spool_segment
from cuas_node.publish.mqtt import MqttPublisher
from cuas_node.publish.seqstore import SequenceStore
from cuas_node.publish.spool import EXPIRES, DiskSpool, Record
from tests import reports
from tests.fakes import wait_until

if TYPE_CHECKING:
    from conftest import MosquittoBroker

NODE = "mast-1"
ROOT = Path(__file__).resolve().parent.parent


def rec(seq: int, name: str = "tracks", t: float | None = None, flags: int = EXPIRES) -> Record:
    return Record(
        name, seq, 1000.0 + seq if t is None else t, flags, b'{"seq":%d,"pad":"%s"}' % (seq, b"x" * 80)
    )


def hand_out(spool: DiskSpool, count: int | None = None) -> list[tuple[int, object]]:
    """(seq, token) of up to `count` records handed out, without acknowledging them."""
    out: list[tuple[int, object]] = []
    while count is None or len(out) < count:
        item = spool.next_unsent()
        if item is None:
            break
        out.append((item[0].seq, item[1]))
    return out


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("seg-*.log"))


def open_log(spool_dir: Path, state_dir: Path, **kwargs: Any) -> tuple[DiskSpool, SequenceStore]:
    """What the publisher does on start: the log, the sequence store resuming from it, the new segment."""
    spool = DiskSpool(spool_dir, max_bytes=1 << 20, **kwargs)
    store = SequenceStore(state_dir, resume=spool.last_seqs(), wal=True)
    spool.begin(store.next_values())
    return spool, store


# -- the log's bookkeeping -------------------------------------------------------------------------


def test_acknowledged_records_are_forgotten_and_a_restart_replays_the_rest_in_order(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20, segment_bytes=1024, cursor_interval_s=0)
    for seq in range(1, 31):
        spool.append(rec(seq))
    sent = hand_out(spool, 20)
    for _, token in sent[:12]:  # PUBACKs for 1..12; 13..20 in flight when the process dies
        spool.commit(token)
    assert spool.pending == 18
    del spool  # kill -9: no close (the cursor was saved at the last commit: interval 0)

    again = DiskSpool(tmp_path, max_bytes=1 << 20, segment_bytes=1024)
    assert again.pending == 18
    again.append(rec(31))  # a new message queues behind the previous process's
    assert [seq for seq, _ in hand_out(again)] == list(range(13, 32))


def test_fully_acknowledged_segments_are_deleted_but_the_newest_is_kept(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20, segment_bytes=1024)
    for seq in range(1, 41):
        spool.append(rec(seq))
    written = segments(tmp_path)
    assert len(written) >= 4
    sent = hand_out(spool)
    spool.commit(sent[14][1])  # 1..15: the first segments only
    left = segments(tmp_path)
    assert written[0] not in left and len(left) < len(written)  # the acknowledged ones went at once
    assert left == written[-len(left) :]
    spool.commit(sent[-1][1])
    assert len(segments(tmp_path)) == 1 and spool.pending == 0  # the newest: appended to next
    spool.append(rec(41))
    assert len(segments(tmp_path)) == 1
    assert [seq for seq, _ in hand_out(spool)] == [41]
    spool.close()


def test_time_based_sync_by_default_and_none_per_acknowledgement(tmp_path: Path) -> None:
    """By default a record is written (safe from `kill -9`) but synced only by the clock: sending
    does not wait for the card."""
    spool = DiskSpool(tmp_path, max_bytes=1 << 20, fsync_interval_s=3600.0)
    for seq in range(1, 11):
        spool.append(rec(seq))
    before = spool.syncs
    sent = hand_out(spool)
    assert [seq for seq, _ in sent] == list(range(1, 11)) and spool.syncs == before
    for _, token in sent:
        spool.commit(token)
    spool.tick()
    assert spool.syncs == before
    spool.close()
    assert spool.syncs == before + 1  # a clean stop leaves everything on the card


def test_group_commit_one_sync_per_batch_none_per_acknowledgement(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20, sync_before_send=True)
    for seq in range(1, 11):  # everything one outbox loop found queued
        spool.append(rec(seq))
    before = spool.syncs
    sent = hand_out(spool)
    assert [seq for seq, _ in sent] == list(range(1, 11))
    assert spool.syncs == before + 1  # synced once, before the first was handed out
    for _, token in sent:
        spool.commit(token)
    spool.tick()
    assert spool.syncs == before + 1  # acknowledgements write no more than the cursor, unsynced
    spool.append(rec(11))
    hand_out(spool)
    assert spool.syncs == before + 2


def test_torn_last_record_from_a_kill_mid_write_is_cut_off_and_counted(tmp_path: Path) -> None:
    spool, store = open_log(tmp_path / "spool", tmp_path / "state")
    for _ in range(5):
        spool.append(rec(store.next("tracks")))
    seq = store.next("tracks")  # the kernel had only part of this record's write when killed
    newest = segments(tmp_path / "spool")[-1]
    with newest.open("ab") as handle:
        handle.write(rec(seq).encode()[:-20])
    del spool, store

    again, store = open_log(tmp_path / "spool", tmp_path / "state")
    assert again.torn == 1 and again.quarantined == 0  # counted, not fatal, not "damage"
    assert [s for s, _ in hand_out(again)] == [1, 2, 3, 4, 5]
    assert store.next("tracks") == 6  # never sent (not whole on disk), so its number is free


def test_seq_continues_after_a_crash_from_the_log_without_a_gap(tmp_path: Path) -> None:
    spool, store = open_log(tmp_path / "spool", tmp_path / "state")
    assert store.next("alerts") == 1
    spool.append(rec(1, "alerts", flags=0))
    for _ in range(30):
        spool.append(rec(store.next("tracks")))
    for _, token in hand_out(spool):
        spool.commit(token)  # all acknowledged: segments deleted, the alert's with them
    del spool, store  # kill -9

    spool, store = open_log(tmp_path / "spool", tmp_path / "state")
    assert store.next("tracks") == 31  # not 1000 later: the log knows the last one written
    assert store.next("alerts") == 2  # from the checkpoint of the segment this process began
    for _ in range(3):
        spool.append(rec(store.next("tracks")))
    del spool, store

    _, store = open_log(tmp_path / "spool", tmp_path / "state")
    assert store.next("tracks") == 35
    assert store.next("health") == 1  # never used


def test_without_a_log_the_crashed_run_falls_back_to_the_reserved_block(tmp_path: Path) -> None:
    store = SequenceStore(tmp_path / "state", block=100)  # a run without a disk spool
    assert [store.next("tracks") for _ in range(5)] == [1, 2, 3, 4, 5]
    del store  # crash
    spool = DiskSpool(tmp_path / "spool", max_bytes=1 << 20)
    spool.append(rec(3))  # e.g. a log from an earlier run: not the last word on this crash
    resumed = SequenceStore(tmp_path / "state", block=100, resume=spool.last_seqs(), wal=True)
    assert resumed.next("tracks") == 102  # the reserved mark: a gap, never a repeat


def test_after_a_power_cut_the_reserved_block_decides_a_gap_not_a_silent_reuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool, store = open_log(tmp_path / "spool", tmp_path / "state")
    for _ in range(5):
        spool.append(rec(store.next("tracks")))
    del spool, store  # the power goes: the unsynced tail of the log may be gone
    monkeypatch.setattr(spool_segment, "boot_id", lambda: "another-boot")
    spool, store = open_log(tmp_path / "spool", tmp_path / "state")
    assert spool.pending == 5  # what survived is still delivered
    assert store.next("tracks") > 6  # past the reserved block: messages may have been lost


def test_a_log_without_checkpoints_is_not_trusted_for_seq(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=1 << 20)
    spool.append(rec(1))
    spool.close()
    (path,) = segments(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[data.index(rec(1).encode()) :])  # as an older version wrote it
    assert DiskSpool(tmp_path, max_bytes=1 << 20).last_seqs() is None


def test_a_card_that_cannot_be_written_keeps_messages_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The card fails mid-segment (ENOSPC injected; real full and read-only cards are in
    test_state_faults.py): what follows is kept in memory and delivered in order after it."""
    spool = DiskSpool(tmp_path, max_bytes=1 << 20, segment_bytes=16 * 1024)
    spool.append(rec(1))
    real_write = os.write
    segment_fd = spool._writer._fd

    def failing(fd: int, data: Any) -> int:
        if fd == segment_fd:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing)
    for seq in range(2, 6):
        spool.append(rec(seq))
    monkeypatch.undo()
    assert spool.pending == 5 and spool.dropped_full == 0 and spool.state == "degraded"
    assert [seq for seq, _ in hand_out(spool)] == [1, 2, 3, 4, 5]  # in order, disk then memory


def test_the_outbox_takes_everything_queued_across_batches(tmp_path: Path) -> None:
    """The group commit takes at most a batch of events per loop; none may fall between two."""
    cfg = MqttSection(host="127.0.0.1", port=1, keepalive_s=5)  # never started: no connection
    pub = MqttPublisher(cfg, NODE, tmp_path / "state", SystemClock(), [], spool_dir=tmp_path / "spool")
    count = 2 * outbox._BATCH + 7
    for i in range(count):
        pub.publish_tracks(float(i), [])
    box = pub._outbox
    while (event := box._events.get_nowait()) is not None:
        box._take(event)
        if box._events.empty():
            break
    assert pub._spool.pending == count
    assert [r.seq for r, _ in iter(pub._spool.next_unsent, None)] == list(range(1, count + 1))
    pub.stop()


# -- the publisher killed mid-stream, against a real broker ---------------------------------------

_STREAMING_NODE = """
import sys, time
from pathlib import Path
import cuas_node.publish.mqtt as mqtt_module
mqtt_module.RECONNECT_MIN_S, mqtt_module.RECONNECT_MAX_S = 0.05, 0.2
from cuas_node.config import MqttSection
from cuas_node.kernel.clock import SystemClock
port, state, spool, mode = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
pub = mqtt_module.MqttPublisher(MqttSection(host="127.0.0.1", port=port, keepalive_s=5), "mast-1",
                                state, SystemClock(), [], spool_dir=spool)
pub.start()
HEALTH = {"uptime_s": 0.0, "sensors": [], "fusion": {"tracks": 0, "confirmed": 0, "queue_depth": 0,
          "cycle_ms": 0.0}}
if mode in ("connected", "drain"):
    deadline = time.monotonic() + 10
    while not pub.connected and time.monotonic() < deadline:
        time.sleep(0.005)
if mode == "drain":  # one last message, everything delivered, a clean stop
    pub.publish_tracks(time.time(), [])
    deadline = time.monotonic() + 20
    while pub.spool_counters["pending"] and time.monotonic() < deadline:
        time.sleep(0.01)
    pub.stop()
    print("drained", pub.spool_counters["pending"], flush=True)
    sys.exit(0)
print("streaming", flush=True)
i = 0
while True:  # about 500 messages a second, every one with a distinct `t`
    pub.publish_tracks(time.time(), [])
    i += 1
    if i % 25 == 0:
        pub.publish_health(HEALTH)
    time.sleep(0.002)
"""


class Consumer:
    """A central server's subscriber: MQTT 5, persistent session, QoS 1; keeps every payload."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.received: dict[str, dict[int, set[bytes]]] = {"tracks": {}, "health": {}, "alerts": {}}
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"wal-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.on_connect = lambda c, *a: c.subscribe(f"cuas/v1/{NODE}/+", qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        self.client.connect(broker.host, broker.port, keepalive=5, clean_start=False, properties=props)
        self.client.loop_start()
        assert subscribed.wait(5), "consumer could not subscribe"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        name = msg.topic.rsplit("/", 1)[-1]
        if name in self.received:
            seq = json.loads(msg.payload)["seq"]
            with self._lock:
                self.received[name].setdefault(seq, set()).add(bytes(msg.payload))

    def seqs(self, name: str) -> dict[int, set[bytes]]:
        with self._lock:
            return {seq: set(payloads) for seq, payloads in self.received[name].items()}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def wal_broker(make_mosquitto: Callable[..., MosquittoBroker], broker_files: Path) -> MosquittoBroker:
    """Persistence on (the consumer's session and its queue survive a broker restart), and no cap
    on the consumer's queue (mosquitto drops above 1000 by default: a gap that is not ours)."""
    return make_mosquitto(f"persistence true\npersistence_location {broker_files}/\nmax_queued_messages 0\n")


@pytest.fixture
def consumer(wal_broker: MosquittoBroker) -> Iterator[Consumer]:
    made = Consumer(wal_broker)
    yield made
    made.close()


class LossyLink:
    """A TCP hop between the node and the broker that holds the node's bytes `delay_s` before
    passing them on and drops what it holds when the node's side closes, like a radio link: what
    is in flight when the node dies never arrives. So at every kill some messages were sent and
    never reached the broker; only a log that keeps them until their PUBACK gets them there."""

    def __init__(self, upstream_port: int, delay_s: float = 0.03) -> None:
        self.upstream_port, self.delay_s = upstream_port, delay_s
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            conn.close()  # the broker is down: the node sees a refused connection
            return
        held: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()
        gone = threading.Event()
        threading.Thread(target=self._back, args=(upstream, conn), daemon=True).start()
        threading.Thread(target=self._forward, args=(held, gone, upstream), daemon=True).start()
        try:
            while data := conn.recv(65536):
                held.put((time.monotonic() + self.delay_s, data))
        except OSError:
            pass
        gone.set()

    @staticmethod
    def _forward(
        held: queue.SimpleQueue[tuple[float, bytes]], gone: threading.Event, up: socket.socket
    ) -> None:
        try:
            while not gone.is_set():
                try:
                    due, data = held.get(timeout=0.05)
                except queue.Empty:
                    continue
                if gone.wait(max(0.0, due - time.monotonic())):
                    break  # the node died: what is still held is lost
                up.sendall(data)
        except OSError:
            pass
        up.close()

    @staticmethod
    def _back(up: socket.socket, conn: socket.socket) -> None:
        try:
            while data := up.recv(65536):
                conn.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


class Node:
    """Runs `_STREAMING_NODE` processes on one state and spool directory, through a `LossyLink`."""

    def __init__(self, broker: MosquittoBroker, tmp_path: Path) -> None:
        self.state, self.spool = tmp_path / "state", tmp_path / "spool"
        self.link = LossyLink(broker.port)
        self.log: list[str] = []

    def spawn(self, mode: str) -> subprocess.Popen[str]:
        args = [
            sys.executable,
            "-c",
            _STREAMING_NODE,
            str(self.link.port),
            str(self.state),
            str(self.spool),
            mode,
        ]
        return subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)

    def stream_and_kill(self, mode: str, delay: float) -> None:
        proc = self.spawn(mode)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().split() == ["streaming"]
            time.sleep(delay)
            os.kill(proc.pid, signal.SIGKILL)  # no clean stop: nothing flushed, nothing closed
            proc.wait(timeout=5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.log.append(f"{mode}: killed after {delay:.3f} s")

    def drain(self) -> int:
        """A last run that delivers everything and stops cleanly: the last `tracks` seq used."""
        proc = self.spawn("drain")
        out, _ = proc.communicate(timeout=30)
        assert out.split() == ["drained", "0"], out
        state = json.loads((self.state / "mqtt-seq.json").read_text())
        assert state["clean"] is True
        return int(state["seq"]["tracks"]["next"]) - 1


def kill_delays(count: int) -> tuple[int, list[float]]:
    """Random kill points from a seeded RNG; the seed is printed (shown on failure) and can be
    replayed with CUAS_WAL_SEED=<seed>."""
    seed = int(os.environ.get("CUAS_WAL_SEED") or time.time_ns() % 2**32)
    rng = random.Random(seed)
    delays = [round(rng.uniform(0.02, 0.6), 3) for _ in range(count)]
    print(f"CUAS_WAL_SEED={seed} kill delays {delays}")
    return seed, delays


def assert_every_seq_arrived(consumer: Consumer, last: int, context: str) -> None:
    # Delivery is in order and the last run waited for every PUBACK: once the last one is there,
    # whatever was going to arrive has.
    wait_until(lambda: last in consumer.seqs("tracks"), timeout=20, what=f"tracks {last} ({context})")
    tracks = consumer.seqs("tracks")
    missing = sorted(set(range(1, last + 1)) - set(tracks))
    assert not missing, f"gap: {missing[:20]} ({context})"
    assert max(tracks) == last, context
    differing = [seq for seq, payloads in tracks.items() if len(payloads) > 1]
    assert not differing, f"a seq repeated with another payload: {differing[:10]} ({context})"
    health = consumer.seqs("health")
    assert sorted(health) == list(range(1, max(health, default=0) + 1)), f"health gap ({context})"
    assert all(len(payloads) == 1 for payloads in health.values()), context


def test_kill_9_mid_stream_while_connected_loses_nothing(
    wal_broker: MosquittoBroker, consumer: Consumer, tmp_path: Path
) -> None:
    seed, delays = kill_delays(6)
    node = Node(wal_broker, tmp_path)
    for delay in delays:
        node.stream_and_kill("connected", delay)
    last = node.drain()
    node.link.close()
    context = f"CUAS_WAL_SEED={seed}; {node.log}"
    assert last >= 50, context  # the runs streamed (about 500 messages a second)
    assert_every_seq_arrived(consumer, last, context)


def test_kill_9_mid_stream_with_the_broker_stopped_for_part_of_the_run_loses_nothing(
    wal_broker: MosquittoBroker, consumer: Consumer, tmp_path: Path
) -> None:
    seed, delays = kill_delays(6)
    node = Node(wal_broker, tmp_path)
    node.stream_and_kill("connected", delays[0])
    node.stream_and_kill("connected", delays[1])
    wal_broker.stop()  # the consumer's session and what is queued for it are saved
    node.stream_and_kill("offline", delays[2])
    node.stream_and_kill("offline", delays[3])
    wal_broker.start()
    node.stream_and_kill("connected", delays[4])  # killed while delivering the backlog
    node.stream_and_kill("connected", delays[5])
    last = node.drain()
    node.link.close()
    assert_every_seq_arrived(consumer, last, f"CUAS_WAL_SEED={seed}; {node.log}")


# -- rules that still hold for what is replayed from the log --------------------------------------


def test_replayed_track_updates_go_stale_deletions_and_alerts_never(
    wal_broker: MosquittoBroker, consumer: Consumer, tmp_path: Path
) -> None:
    spool, store = open_log(tmp_path / "spool", tmp_path / "state")
    old = time.time() - 60  # a previous process's messages, a minute old
    for i in range(1, 6):
        flags = 0 if i == 3 else EXPIRES  # 3 carries a deletion
        spool.append(Record("tracks", store.next("tracks"), old, flags, b'{"seq":%d}' % i))
    spool.append(Record("alerts", store.next("alerts"), old, 0, b'{"seq":1}'))
    del spool, store  # killed

    cfg = MqttSection(host="127.0.0.1", port=wal_broker.port, keepalive_s=5, spool_max_age_s=30)
    pub = MqttPublisher(cfg, NODE, tmp_path / "state", SystemClock(), [], spool_dir=tmp_path / "spool")
    try:
        assert pub.spool_counters["pending"] == 6
        pub.start()
        wait_until(lambda: pub.spool_counters["pending"] == 0, what="log replayed")
        pub.publish_tracks(time.time(), [reports.track(1)])
        wait_until(lambda: 6 in consumer.seqs("tracks"), what="the new message")
        assert sorted(consumer.seqs("tracks")) == [3, 6]  # the stale updates 1, 2, 4, 5 dropped
        wait_until(lambda: consumer.seqs("alerts"), what="the alert, however old")
        assert pub.spool_counters["dropped_stale"] == 4
    finally:
        pub.stop()


def test_qos_0_goes_through_the_log_and_leaves_it_once_written_to_the_socket(
    wal_broker: MosquittoBroker, consumer: Consumer, tmp_path: Path
) -> None:
    cfg = MqttSection(host="127.0.0.1", port=wal_broker.port, keepalive_s=5, qos=0)
    pub = MqttPublisher(cfg, NODE, tmp_path / "state", SystemClock(), [], spool_dir=tmp_path / "spool")
    try:
        pub.start()
        wait_until(lambda: pub.connected, what="connected")
        for _ in range(20):
            pub.publish_tracks(time.time(), [])
        wait_until(lambda: len(consumer.seqs("tracks")) == 20, what="20 tracks")
        wait_until(lambda: pub.spool_counters["pending"] == 0, what="nothing left to send")
        assert pub.counters["published"] >= 22  # status, info and the 20
    finally:
        pub.stop()
