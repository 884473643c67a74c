"""The write-ahead spool's cost: messages per second through the publisher, and what the normal
message rate costs the SD card.

Every `tracks`, `health` and `alerts` message is appended to the spool and synced before paho
sees it (a group commit: one sync for everything queued at once), and forgotten on its PUBACK
(docs/reliability.md). The publisher runs in this process against a throw-away mosquitto on a
loopback port (QoS 1), with the spool in `--dir` (default: a temporary directory under /var/tmp,
on the disk; /tmp may be a tmpfs, where a sync costs nothing and proves nothing).

* `wal_throughput`: `tracks` messages (3 tracks each, ~1.4 KB) per second from the first
  `publish_tracks` to the last PUBACK, the producer publishing as fast as it can while fewer than
  500 are unacknowledged; `memory_throughput` the same without a spool directory (in memory,
  nothing on disk) for comparison; `wal_syncs_per_message_burst` the group commit at work under
  that load (1.0 would be a sync per message).
* At the node's normal rate (5 Hz tracks + 0.2 Hz health) for `--duration` seconds:
  `wal_fsyncs_per_s` counts every fsync/fdatasync the process makes (os.fsync and os.fdatasync
  wrapped), `wal_appended_bytes_per_s` what is appended to the log, `wal_device_kib_per_s` what
  the block device under the spool actually wrote (/sys/dev/block/<dev>/stat, sectors written:
  data, journal and metadata, and anything else writing to that device meanwhile), next to
  `memory_device_kib_per_s`, the same window without a spool directory, as the baseline; and
  `wal_latency_p50/p99` vs `memory_latency_p50/p99`, from `publish_tracks` to arrival at a local
  subscriber: what the sync before sending adds.

Run: `.venv/bin/python benchmarks/spool_wal.py [--messages 5000] [--duration 20] [--dir PATH]`;
prints `figure: <name> = <value> <unit>`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

_COUNTS = {"fsync": 0}
_real_fsync, _real_fdatasync = os.fsync, os.fdatasync


def _counted(real):  # type: ignore[no-untyped-def]
    def sync(fd: int) -> None:
        _COUNTS["fsync"] += 1
        real(fd)

    return sync


os.fsync, os.fdatasync = _counted(_real_fsync), _counted(_real_fdatasync)

from cuas_node.config import MqttSection  # noqa: E402  (after the sync counters are in place)
from cuas_node.kernel.clock import SystemClock  # noqa: E402
from cuas_node.kernel.reports import ClassSummary, TrackReport  # noqa: E402
from cuas_node.publish.mqtt import MqttPublisher  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import Broker  # noqa: E402  (one throw-away broker for every benchmark)

CLASS = ClassSummary(
    "multirotor",
    0.81,
    (("multirotor", 0.81), ("fixed_wing", 0.05), ("bird", 0.1), ("aircraft", 0.01), ("unknown", 0.03)),
    ("radar_kinematics", "acoustic"),
)
HEALTH = {
    "uptime_s": 1.0,
    "sensors": [],
    "fusion": {"tracks": 3, "confirmed": 3, "queue_depth": 0, "cycle_ms": 1.0},
}
OUTSTANDING = 500  # messages published but not yet acknowledged, at most (the memory spool holds 1000)


def tracks(t: float) -> list[TrackReport]:
    cov = ((4.0, 0.1, 0.0), (0.1, 4.0, 0.0), (0.0, 0.0, 9.0))
    enu, vel, sensors = (120.0, -40.5, 55.0), (3.0, 0.5, 0.0), ("radar-1", "mic-1")
    return [
        TrackReport(n, "confirmed", t, 52.1 + n * 1e-4, 4.3, 95.0, enu, vel, cov, CLASS, sensors)
        for n in (1, 2, 3)
    ]


def device_sectors_written(path: Path) -> int | None:
    """Sectors (512 B) the block device holding `path` has written since boot, if Linux says."""
    dev = os.stat(path).st_dev
    try:
        fields = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat").read_text().split()
        return int(fields[6])
    except (OSError, IndexError, ValueError):
        return None


def publisher(port: int, work: Path, name: str, wal: bool) -> MqttPublisher:
    cfg = MqttSection(host="127.0.0.1", port=port, keepalive_s=10)
    spool = work / f"{name}-spool" if wal else None
    pub = MqttPublisher(cfg, "bench", work / f"{name}-state", SystemClock(), [], spool_dir=spool)
    pub.start()
    deadline = time.monotonic() + 10
    while not pub.connected:
        if time.monotonic() > deadline:
            raise SystemExit("the publisher did not connect")
        time.sleep(0.01)
    return pub


def wait_published(pub: MqttPublisher, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while pub.counters["published"] < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {pub.counters['published']} of {count} acknowledged")
        time.sleep(0.002)


def throughput(port: int, work: Path, wal: bool, messages: int) -> tuple[float, int]:
    """Messages per second from the first publish to the last PUBACK, a producer keeping up to
    `OUTSTANDING` unacknowledged, and the syncs meanwhile."""
    pub = publisher(port, work, f"burst-{wal}", wal)
    try:
        time.sleep(0.3)  # status and info acknowledged
        base = pub.counters["published"]
        reports = tracks(time.time())
        syncs = _COUNTS["fsync"]
        began = time.perf_counter()
        for i in range(messages):
            while i - (pub.counters["published"] - base) >= OUTSTANDING:
                time.sleep(0.0005)
            pub.publish_tracks(time.time(), reports)
        wait_published(pub, base + messages)
        return messages / (time.perf_counter() - began), _COUNTS["fsync"] - syncs
    finally:
        pub.stop()


@dataclass
class Normal:
    fsyncs_per_s: float
    appended_per_s: float
    device_kib_per_s: float | None
    latency_ms: list[float]  # publish_tracks → arrival at a local subscriber, per message


def normal_rate(port: int, work: Path, wal: bool, duration: float) -> Normal:
    """At 5 Hz tracks + 0.2 Hz health: syncs and bytes appended per second, device KiB written per
    second, and each message's latency to a subscriber."""
    arrived: dict[int, float] = {}
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{wal}")
    sub.on_connect = lambda c, *_: c.subscribe("cuas/v1/bench/tracks", qos=0)
    sub.on_message = lambda c, u, m: arrived.setdefault(json.loads(m.payload)["seq"], time.monotonic())
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    pub = publisher(port, work, f"normal-{wal}", wal)  # fresh state: tracks seq 1, 2, 3, ...
    try:
        time.sleep(0.5)  # connection and status/info settled
        syncs, sectors = _COUNTS["fsync"], device_sectors_written(work)
        appended = pub.spool_counters["spool_bytes"]
        began = time.monotonic()
        sent: dict[int, float] = {}
        stop = threading.Event()
        i = 0
        while time.monotonic() - began < duration:
            reports = tracks(time.time())
            sent[i + 1] = time.monotonic()
            pub.publish_tracks(time.time(), reports)
            if i % 25 == 0:
                pub.publish_health(HEALTH)
            i += 1
            stop.wait(max(0.0, began + i * 0.2 - time.monotonic()))
        time.sleep(0.3)  # the last acknowledgements
        elapsed = time.monotonic() - began
        after = device_sectors_written(work)
        device = None if sectors is None or after is None else (after - sectors) * 512 / 1024 / elapsed
        grown = pub.spool_counters["spool_bytes"] - appended  # no segment is deleted in the window
        latency = [(arrived[seq] - t) * 1000 for seq, t in sent.items() if seq in arrived]
        return Normal((_COUNTS["fsync"] - syncs) / elapsed, grown / elapsed, device, latency)
    finally:
        pub.stop()
        sub.disconnect()
        sub.loop_stop()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=5000, help="messages in the throughput run")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds at the normal rate")
    ap.add_argument("--dir", type=Path, default=None, help="where the spool goes (default under /var/tmp)")
    args = ap.parse_args()
    parent = args.dir or (Path("/var/tmp") if Path("/var/tmp").is_dir() else None)
    with tempfile.TemporaryDirectory(prefix="cuas-wal-bench-", dir=parent) as tmp:
        work = Path(tmp)
        broker = Broker(work)
        try:
            wal_rate, wal_syncs = throughput(broker.port, work, True, args.messages)
            mem_rate, _ = throughput(broker.port, work, False, args.messages)
            print(f"figure: wal_throughput = {wal_rate:.0f} messages/s")
            print(f"figure: memory_throughput = {mem_rate:.0f} messages/s")
            print(f"figure: wal_syncs_per_message_burst = {wal_syncs / args.messages:.3f} syncs")
            wal = normal_rate(broker.port, work, True, args.duration)
            memory = normal_rate(broker.port, work, False, args.duration)
            print(f"figure: wal_fsyncs_per_s = {wal.fsyncs_per_s:.2f} fsyncs/s")
            print(f"figure: wal_appended_bytes_per_s = {wal.appended_per_s:.0f} B/s")
            for name, run in (("wal", wal), ("memory", memory)):
                for q in (50, 99):
                    print(f"figure: {name}_latency_p{q} = {percentile(run.latency_ms, q):.2f} ms")
            if wal.device_kib_per_s is not None and memory.device_kib_per_s is not None:
                print(f"figure: wal_device_kib_per_s = {wal.device_kib_per_s:.1f} KiB/s")
                print(f"figure: memory_device_kib_per_s = {memory.device_kib_per_s:.1f} KiB/s")
            else:
                print("skipped: device write counters (no /sys/dev/block stat for the spool's device)")
        finally:
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
