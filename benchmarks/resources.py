"""CPU share of one core and resident memory of the node running simulated scenarios in real time.

Each run starts `cuas-node sim SCENARIO --speed 1` against a local mosquitto, lets it warm up
(imports, broker connection, the radar's CLI handshake, first tracks), then reads the process's
CPU time (`/proc/PID/stat`: utime + stime) at both ends of a measuring window and samples its RSS
(`/proc/PID/status`: VmRSS) twice a second. CPU share = CPU seconds / wall seconds (100 % = one
core fully busy; the node's threads may spread over several cores).

Caveat, stated in the figures' names: `sim` runs the simulated sensors (the world model, the
radar/GPS/Remote ID encoders, the pty writers) in the same process as the node, so these are upper
bounds for the node alone; on a Pi the real sensors cost the node nothing but their reads.

Run: `.venv/bin/python benchmarks/resources.py [--runs 3] [--window 15] [--scenarios demo,swarm-20]`;
scenarios that are not built in yet are skipped (and said so).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency import CUAS_NODE, ROOT, Broker

SCENARIOS = ("demo", "swarm-20", "dense-100")
TICKS = os.sysconf("SC_CLK_TCK")
WARMUP_S = 5.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15 of stat)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def scenario_exists(name: str) -> bool:
    return (ROOT / "drivers" / "sim" / "scenarios" / f"{name}.toml").exists()


@contextlib.contextmanager
def sim_node(
    scenario: str,
    window_s: float,
    extra_config: str = "",
    env: dict[str, str] | None = None,
    mqtt_lines: str = "",
) -> Iterator[subprocess.Popen[bytes]]:
    """`cuas-node sim SCENARIO --speed 1` against a private mosquitto, `mqtt_lines` added to its
    `[mqtt]` table and `extra_config` (other tables) to its config, yielded once warmed up (long
    enough for `window_s` more); stopped afterwards.
    The one harness of the whole-node benchmarks (this one, outputs.py, web_clients.py)."""
    with tempfile.TemporaryDirectory(prefix="cuas-bench-") as tmp:
        work = Path(tmp)
        broker = Broker(work)
        cfg = work / "node.toml"
        cfg.write_text(
            f'[node]\nstate_dir = "{work / "state"}"\n[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
            + mqtt_lines
            + '[logging]\nlevel = "WARNING"\n'
            + extra_config
        )
        duration = WARMUP_S + window_s + 30.0
        cmd = [CUAS_NODE, "sim", scenario, "--speed", "1", "--duration", str(duration), "--config", str(cfg)]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, env=env)
        try:
            time.sleep(WARMUP_S)
            if proc.poll() is not None:
                raise SystemExit(f"cuas-node sim {scenario} exited early ({proc.returncode})")
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            broker.stop()


def one_run(scenario: str, window_s: float) -> tuple[float, float]:
    """(CPU % of one core, peak RSS in MB) over the measuring window."""
    with sim_node(scenario, window_s) as proc:
        c0, w0 = cpu_seconds(proc.pid), time.monotonic()
        peak = rss_mb(proc.pid)
        while time.monotonic() - w0 < window_s:
            time.sleep(0.5)
            peak = max(peak, rss_mb(proc.pid))
        c1, w1 = cpu_seconds(proc.pid), time.monotonic()
    return 100.0 * (c1 - c0) / (w1 - w0), peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--window", type=float, default=15.0, help="measuring window per run, seconds")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = ap.parse_args()
    for scenario in args.scenarios.split(","):
        if not scenario_exists(scenario):
            print(f"skipped: scenario {scenario} is not built in (drivers/sim/scenarios/{scenario}.toml)")
            continue
        cpu, rss = [], []
        for _ in range(args.runs):
            c, r = one_run(scenario, args.window)
            cpu.append(c)
            rss.append(r)
        key = scenario.replace("-", "_")
        print(f"figure: cpu_{key}_with_sim = {statistics.median(cpu):.1f} % of one core")
        print(f"figure: rss_{key}_with_sim = {statistics.median(rss):.0f} MB")


if __name__ == "__main__":
    main()
