"""CPU the live view adds to the node: `cuas-node sim swarm-20 --speed 1` with `[web]` off, and with
it on and 5 browsers' worth of live-update connections reading `/api/events`.

The node's CPU time is read from `/proc/PID/stat` (utime + stime) over a measuring window after a
warm-up, as in resources.py; the 5 clients are threads of this process that read and discard the
Server-Sent Events stream (what a browser's EventSource receives), so their own cost is not
counted. Runs alternate off/on so that a change in the machine's load hits both alike; each figure
is the median over `--runs`. `web_cpu_added_5_clients` is the difference of the medians: on a
shared machine it is within the noise of two whole-process measurements, so `web_thread_cpu_5_clients`
measures the server thread alone (health's `web.cpu_s`, the thread's own CPU clock, read through
`/api/health` at both ends of the window). What the live view costs fusion's thread is handing
over the bytes of each message (`Handoff.offer`), which is in the whole-process figure.

Run: `.venv/bin/python benchmarks/web_clients.py [--runs 3] [--window 15] [--scenario swarm-20]`
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency import free_port
from resources import cpu_seconds, sim_node

CLIENTS = 5


class Reader(threading.Thread):
    """One live-update connection that reads everything and counts the bytes."""

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.stop, self.bytes = port, stop, 0

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
            sock.settimeout(0.5)
            while not self.stop.is_set():
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                self.bytes += len(chunk)


def web_health(port: int) -> dict[str, float]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /api/health HTTP/1.0\r\nHost: bench\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    health = json.loads(data.split(b"\r\n\r\n", 1)[1])
    return {"t": health["t"], "cpu_s": health["web"]["cpu_s"]}


def one_run(scenario: str, window_s: float, web: bool) -> tuple[float, float, float]:
    """(CPU % of one core of the node, of its web thread, bytes per second per client) over the
    window."""
    port = free_port()
    stop = threading.Event()
    readers: list[Reader] = []
    web_config = f"[web]\nenabled = {str(web).lower()}\nport = {port}\n"
    try:
        with sim_node(scenario, window_s, web_config, mqtt_lines="health_interval_s = 1.0\n") as proc:
            if web:
                readers = [Reader(port, stop) for _ in range(CLIENTS)]
                for reader in readers:
                    reader.start()
                time.sleep(1.0)  # connected and past the first snapshot
            c0, w0 = cpu_seconds(proc.pid), time.monotonic()
            b0 = sum(r.bytes for r in readers)
            h0 = web_health(port) if web else None
            time.sleep(window_s)
            c1, w1 = cpu_seconds(proc.pid), time.monotonic()
            b1 = sum(r.bytes for r in readers)
            h1 = web_health(port) if web else None
    finally:
        stop.set()
    per_client = (b1 - b0) / (w1 - w0) / CLIENTS if readers else 0.0
    thread = 100.0 * (h1["cpu_s"] - h0["cpu_s"]) / (h1["t"] - h0["t"]) if h0 and h1 else 0.0
    return 100.0 * (c1 - c0) / (w1 - w0), thread, per_client


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--window", type=float, default=15.0, help="measuring window per run, seconds")
    ap.add_argument("--scenario", default="swarm-20")
    args = ap.parse_args()
    off, on, thread, rate = [], [], [], []
    for _ in range(args.runs):
        off.append(one_run(args.scenario, args.window, web=False)[0])
        cpu, web_thread, per_client = one_run(args.scenario, args.window, web=True)
        on.append(cpu)
        thread.append(web_thread)
        rate.append(per_client)
    key = args.scenario.replace("-", "_")
    print(f"figure: cpu_{key}_web_off = {statistics.median(off):.1f} % of one core")
    print(f"figure: cpu_{key}_web_{CLIENTS}_clients = {statistics.median(on):.1f} % of one core")
    added = statistics.median(on) - statistics.median(off)
    print(f"figure: web_cpu_added_{CLIENTS}_clients = {added:.1f} % of one core")
    print(f"figure: web_thread_cpu_{CLIENTS}_clients = {statistics.median(thread):.2f} % of one core")
    print(f"figure: web_bytes_per_client = {statistics.median(rate) / 1024:.1f} KiB/s")


if __name__ == "__main__":
    main()
