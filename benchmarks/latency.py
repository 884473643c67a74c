"""End-to-end latency: last byte of a radar frame written into the pty → track message at a subscriber.

The real thing, end to end: a `mosquitto` on a loopback port, the node as its own process
(`cuas-node run` on a config whose radar data port is a pty), and this process as both the radar
(TI SDK 3.x frames of one moving target, 10 Hz) and a subscriber on the node's `tracks` topic. A
frame is matched to the first tracks message carrying a confirmed track updated by it (the track's
`t` is the node's receive time of that frame), so the figure covers the pty, pyserial, the parser,
clustering, the queue, fusion, JSON, paho, the broker and back.

Two configurations: `pipeline` (reorder window 0, tracks rate cap 50 Hz) measures the code path;
`default` (reorder window 0.1 s, 5 Hz cap) shows what a consumer sees with the shipped settings,
where the reorder window and the rate cap add up to ~100-300 ms by design.

Run: `.venv/bin/python benchmarks/latency.py [--runs 3] [--duration 20]`; prints
`figure: <name> = <value> <unit>` (median over runs of each run's percentile).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CUAS_NODE = str(Path(sys.executable).parent / "cuas-node")
RATE_HZ = 10.0
WARMUP_FRAMES = 15  # confirmation (3 of 6 and the track score) and the first publishes: not steady state


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """A throw-away mosquitto on a loopback port (the same broker a node talks to in the field)."""

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("mosquitto") or next(
            (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
        )
        if exe is None:
            raise SystemExit("mosquitto not found (apt-get install mosquitto)")
        self.port = free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc = subprocess.Popen(
            [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise SystemExit("mosquitto did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Subscriber:
    """Records (wall time of arrival, payload) of every message on `topic`."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{os.getpid()}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        t = time.time()
        with self.lock:
            self.messages.append((t, {"topic": msg.topic, **json.loads(msg.payload)}))

    def wait_for(self, predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if any(predicate(m) for _, m in self.messages):
                    return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def node_config(workdir: Path, broker_port: int, radar_port: str, pipeline: bool) -> Path:
    fusion = "reorder_window_s = 0.0\n" if pipeline else ""
    rate = 50 if pipeline else 5
    path = workdir / "node.toml"
    path.write_text(
        f'[node]\nid = "bench-latency"\nstate_dir = "{workdir / "state"}"\n'
        "position = { lat = 52.0116, lon = 4.3571, alt_m = 52.0 }\n"
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\ntracks_max_rate_hz = {rate}\n'
        f"[fusion]\n{fusion}"
        '[logging]\nlevel = "WARNING"\n'
        f'[[sensors]]\nkind = "ti-mmwave"\nid = "radar-1"\nport = "{radar_port}"\n'
    )
    return path


def target_frame(k: int) -> bytes:
    """One drone (4 points) flying away along boresight at 5 m/s, plus two static clutter points."""
    from cuas_node.drivers.radar.ti_encode import encode_frame

    y = 40.0 + 0.5 * k
    pts = [
        [dx, y + dy, 8.0 + dz, 5.0]
        for dx, dy, dz in ((0, 0, 0), (0.2, 0.1, 0), (-0.2, 0, 0.1), (0, -0.1, -0.1))
    ]
    pts += [[10.0, 30.0, 0.0, 0.0], [-15.0, 60.0, 1.0, 0.0]]
    return encode_frame(k, np.array(pts), snr_db=np.full(len(pts), 20.0), noise_db=np.full(len(pts), 50.0))


def one_run(duration_s: float, pipeline: bool) -> list[float]:
    """Latencies (seconds) of every steady-state frame in one run."""
    from cuas_node.drivers.sim.pty import PtyPort

    with tempfile.TemporaryDirectory(prefix="cuas-bench-") as tmp:
        work = Path(tmp)
        broker = Broker(work)
        radar = PtyPort()
        sub = Subscriber(broker.port, "cuas/v1/bench-latency/#")
        cfg = node_config(work, broker.port, radar.path, pipeline)
        node = subprocess.Popen([CUAS_NODE, "run", "--config", str(cfg)], cwd=ROOT)
        try:
            if not sub.wait_for(lambda m: m.get("type") == "status" and m.get("state") == "online", 15):
                raise SystemExit("the node did not come online")
            writes: list[float] = []
            start = time.monotonic()
            n = int(duration_s * RATE_HZ)
            for k in range(n):
                frame = target_frame(k)
                wait = start + k / RATE_HZ - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                radar.write(frame)
                writes.append(time.time())
            time.sleep(0.5)
        finally:
            node.terminate()
            try:
                node.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.kill()
            sub.stop()
            radar.close()
            broker.stop()
    w = np.array(writes)
    latency: dict[int, float] = {}
    for received, msg in sub.messages:
        if msg.get("type") != "tracks":
            continue
        for track in msg.get("tracks", []):
            if track.get("status") != "confirmed":
                continue
            k = int(np.searchsorted(w, float(track["t"]) + 0.002, side="right")) - 1
            if k >= WARMUP_FRAMES and k not in latency:
                latency[k] = received - w[k]
    return list(latency.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of frames per run")
    ap.add_argument("--skip-default", action="store_true", help="only the pipeline configuration")
    args = ap.parse_args()
    modes = [("pipeline", True)] + ([] if args.skip_default else [("default", False)])
    for name, pipeline in modes:
        p50s, p99s, counts = [], [], []
        for _ in range(args.runs):
            lat = one_run(args.duration, pipeline)
            if not lat:
                print(f"warning: no track messages matched in a {name} run", file=sys.stderr)
                continue
            ms = np.array(lat) * 1000.0
            p50s.append(float(np.percentile(ms, 50)))
            p99s.append(float(np.percentile(ms, 99)))
            counts.append(len(lat))
        if not p50s:
            continue
        print(f"figure: latency_{name}_p50 = {statistics.median(p50s):.1f} ms")
        print(f"figure: latency_{name}_p99 = {statistics.median(p99s):.1f} ms")
        print(f"figure: latency_{name}_frames = {statistics.median(counts):.0f} frames")


if __name__ == "__main__":
    main()
