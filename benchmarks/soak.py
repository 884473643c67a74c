"""Soak: one simulated hour of `swarm-20` (else `demo`) at high speed, with the broker cut twice.

Runs `cuas-node sim` as a child process against a private mosquitto (with persistence, so that a
central-server consumer with a persistent session misses nothing while the broker is down), cuts
the broker at 1/3 of the run for a short outage (shorter than the stale age: must leave no gap)
and at 2/3 for a long one (longer than the stale age: stale track updates are dropped and
counted). Prints resident memory, spool size and queue lengths at start, middle and end, and
checks that every `tracks` seq is either received or counted as dropped.

    .venv/bin/python benchmarks/soak.py [--speed 60] [--duration 3600]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parent.parent
NODE_SCENARIOS = ROOT / "drivers" / "sim" / "scenarios"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Broker:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {workdir}/\nlog_dest none\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


class Consumer:
    """Central server: persistent MQTT 5 session, QoS 1, dedupes (node, topic, seq)."""

    def __init__(self, port: int) -> None:
        self.seqs: dict[str, set[int]] = {"tracks": set(), "alerts": set(), "health": set()}
        self.duplicates = 0
        self.last_health: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id="soak-consumer", protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, *a: c.subscribe("cuas/v1/+/+", qos=1)
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, keepalive=5, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        name = msg.topic.rsplit("/", 1)[-1]
        if name not in self.seqs:
            return
        payload = json.loads(msg.payload)
        with self.lock:
            if payload["seq"] in self.seqs[name]:
                self.duplicates += 1
            self.seqs[name].add(payload["seq"])
            if name == "health":
                self.last_health = payload

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speed", type=float, default=60.0)
    parser.add_argument("--duration", type=float, default=3600.0, help="simulated seconds")
    parser.add_argument("--scenario", default=None)
    args = parser.parse_args()
    scenario = args.scenario or ("swarm-20" if (NODE_SCENARIOS / "swarm-20.toml").exists() else "demo")
    wall = args.duration / args.speed
    short_cut, long_cut = 120.0 / args.speed, 420.0 / args.speed  # 2 min and 7 min simulated

    tmp = Path(tempfile.mkdtemp(prefix="cuas-soak-"))
    tmp.chmod(0o777)
    broker = Broker(tmp)
    broker.start()
    consumer = Consumer(broker.port)
    config = tmp / "soak.toml"
    config.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nkeepalive_s = 5\nhealth_interval_s = 5\n'
        '[logging]\nlevel = "WARNING"\n'
    )
    env = dict(os.environ, XDG_STATE_HOME=str(tmp / "state"))
    node = subprocess.Popen(
        [sys.executable, "-m", "cuas_node.cli", "sim", scenario, "--speed", str(args.speed),
         "--duration", str(args.duration), "--config", str(config)],
        cwd=ROOT, env=env,
    )  # fmt: skip
    spool = next(iter((tmp / "state").glob("cuas-node/sim/*")), tmp / "state") / "spool"
    samples: list[tuple[str, float, int, int, int, int]] = []

    def sample(label: str) -> None:
        nonlocal spool
        spool = next(iter((tmp / "state").glob("cuas-node/sim/*/spool")), spool)
        with consumer.lock:
            h = dict(consumer.last_health)
        fusion_q = h.get("fusion", {}).get("queue_depth", 0)
        pending = h.get("spool", {}).get("pending", 0)
        samples.append(
            (label, time.monotonic() - began, rss_kib(node.pid), directory_bytes(spool), fusion_q, pending)
        )
        _, t, rss, size, _, _ = samples[-1]
        print(
            f"{label:>6}: t={t:6.1f} s wall  rss={rss / 1024:6.1f} MiB  spool={size:>8} B  "
            f"fusion queue={fusion_q}  spool pending={pending}",
            flush=True,
        )

    began = time.monotonic()
    time.sleep(min(5.0, wall * 0.05))
    sample("start")
    time.sleep(max(0.0, began + wall / 3 - time.monotonic()))
    broker.stop()
    print(f"broker cut 1 ({short_cut * args.speed:.0f} s simulated)", flush=True)
    time.sleep(short_cut)
    broker.start()
    time.sleep(max(0.0, began + wall / 2 - time.monotonic()))
    sample("middle")
    time.sleep(max(0.0, began + 2 * wall / 3 - time.monotonic()))
    broker.stop()
    print(f"broker cut 2 ({long_cut * args.speed:.0f} s simulated)", flush=True)
    time.sleep(long_cut)
    broker.start()
    time.sleep(max(0.0, began + wall * 0.95 - time.monotonic()))
    sample("end")
    try:
        node.wait(timeout=wall + 60)
    except subprocess.TimeoutExpired:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=10)
    time.sleep(2.0)  # last acknowledgements reach the consumer
    consumer.close()
    broker.stop()

    with consumer.lock:
        h = consumer.last_health
        tracks = consumer.seqs["tracks"]
    spool_counts = h.get("spool", {})
    highest = max(tracks) if tracks else 0
    missing = highest - len(tracks)
    dropped = spool_counts.get("dropped_stale", 0) + spool_counts.get("dropped_full", 0)
    rss = [s[2] for s in samples]
    print(f"figure: rss_start = {rss[0] / 1024:.1f} MiB")
    print(f"figure: rss_middle = {rss[1] / 1024:.1f} MiB")
    print(f"figure: rss_end = {rss[2] / 1024:.1f} MiB")
    print(f"figure: spool_bytes_end = {samples[-1][3]} B")
    print(f"figure: tracks_messages = {highest} messages")
    print(f"figure: tracks_missing = {missing} messages")
    print(f"figure: dropped_stale = {spool_counts.get('dropped_stale', 0)} messages")
    print(f"figure: dropped_full = {spool_counts.get('dropped_full', 0)} messages")
    print(f"figure: duplicates = {consumer.duplicates} messages")
    health = consumer.seqs["health"]
    print(f"figure: health_messages = {max(health, default=0)} messages")
    print(f"figure: health_missing = {max(health, default=0) - len(health)} messages")
    alerts = consumer.seqs["alerts"]
    print(f"figure: alerts_missing = {max(alerts, default=0) - len(alerts)} messages")
    ok = node.returncode == 0 and missing <= dropped and max(health, default=0) == len(health)
    print(
        "soak:",
        "PASS" if ok else "FAIL",
        f"(node exit {node.returncode}; {missing} missing ≤ {dropped} counted)",
    )
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
