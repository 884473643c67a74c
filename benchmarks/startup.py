"""Start-up time: from launching `cuas-node run` to its systemd READY=1 notification.

The node is started exactly as systemd starts it (`Type=notify`): with `NOTIFY_SOCKET` pointing at
a datagram socket that this script owns. READY=1 is sent once every sensor loop and fusion run
(never waiting for the broker), so the figure is interpreter start-up + imports + config + driver
construction + opening the ports. The config has a radar and a GPS on ptys and a broker address
that nobody answers, like a node booting before its network.

Run: `.venv/bin/python benchmarks/startup.py [--runs 5]`; prints `figure: startup_to_ready = <s> s`
(median) and the spread.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency import CUAS_NODE, ROOT, free_port

from cuas_node.drivers.sim.pty import PtyPort


def one_run() -> float:
    with tempfile.TemporaryDirectory(prefix="cuas-bench-") as tmp:
        work = Path(tmp)
        radar, gps = PtyPort(), PtyPort()
        cfg = work / "node.toml"
        cfg.write_text(
            f'[node]\nid = "bench-startup"\nstate_dir = "{work / "state"}"\n'
            "position = { lat = 52.0116, lon = 4.3571, alt_m = 52.0 }\n"
            f'[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\n[logging]\nlevel = "WARNING"\n'
            f'[[sensors]]\nkind = "ti-mmwave"\nid = "radar-1"\nport = "{radar.path}"\n'
            f'[[sensors]]\nkind = "nmea"\nid = "gps"\nport = "{gps.path}"\n'
        )
        sock_path = work / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(sock_path))
        sock.settimeout(0.2)
        env = {**os.environ, "NOTIFY_SOCKET": str(sock_path)}
        t0 = time.monotonic()
        cmd = [CUAS_NODE, "run", "--config", str(cfg)]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
        elapsed = float("nan")
        try:
            deadline = t0 + 30.0
            while time.monotonic() < deadline:
                try:
                    data = sock.recv(4096)
                except TimeoutError:
                    if proc.poll() is not None:
                        raise SystemExit(f"cuas-node run exited ({proc.returncode}) before READY") from None
                    continue
                if b"READY=1" in data.split(b"\n"):
                    elapsed = time.monotonic() - t0
                    break
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            sock.close()
            radar.close()
            gps.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    times = [one_run() for _ in range(args.runs)]
    print(f"figure: startup_to_ready = {statistics.median(times):.2f} s")
    print(f"figure: startup_to_ready_max = {max(times):.2f} s")


if __name__ == "__main__":
    main()
