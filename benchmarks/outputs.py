"""CPU overhead of the standard outputs (Cursor-on-Target, SAPIENT, Home Assistant) at `swarm-20`.

Two figures of the same cost, from two sides:

1. In process, precise: the track reports of one `swarm-20` run (the real drivers and fusion in
   virtual time, as `cuas-node eval` runs them) go through one CoT output's mapping and its UDP
   transport to a loopback socket, as the output thread does; the CPU time it takes, over the
   scenario's duration, is the share of one core that one CoT output costs at real-time speed
   (`cot_cpu_swarm_20`). `output_submit_us` is what the fusion thread pays per `tracks` step and
   output (the queue append). The same for one SAPIENT output's mapping, protobuf encoding and
   a loopback socket (`sapient_cpu_swarm_20`), and for the Home Assistant output's state
   (`homeassistant_cpu_swarm_20`: each `tracks` document parsed, folded in, the state encoded).
2. The whole node: `cuas-node sim swarm-20 --speed 1` without outputs, with one CoT output (UDP
   to a loopback receiver), and with all three (CoT; SAPIENT over TCP to a loopback receiver
   that acknowledges the registration, as a middleware does; Home Assistant discovery on the
   node's broker), CPU share after a warm-up as benchmarks/resources.py measures it, the three
   kinds of run interleaved
   (`cpu_swarm_20_with_sim_and_cot`, `cpu_swarm_20_with_sim_all_outputs`, and the differences
   `cot_overhead_swarm_20`, `outputs_overhead_swarm_20`; noisy: differences of noisy figures).

Run: `nice -n 10 .venv/bin/python benchmarks/outputs.py [--runs 3] [--window 15]`; to write its figures
into docs/performance.md (section "Standard outputs"): `benchmarks/run_all.py --only outputs.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from resources import cpu_seconds, sim_node

from cuas_node.config_outputs import HomeAssistantOutput
from cuas_node.drivers.sim.scenario import load_scenario
from cuas_node.evaluation import runner
from cuas_node.kernel.reports import TrackReport
from cuas_node.outputs.cot import CotCodec, CotSettings
from cuas_node.outputs.cot_link import CotLink
from cuas_node.outputs.ha_state import HaState
from cuas_node.outputs.sapient import SapientCodec
from cuas_node.outputs.sapient_msgs import SapientMessage, SapientSettings, node_uuid
from cuas_node.outputs.worker import OutputWorker, TracksItem
from cuas_node.publish import wire

SCENARIO = "swarm-20"


class _LoopbackSink:
    """A loopback peer that serves its socket on its own thread until closed."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(2)


class UdpSink(_LoopbackSink):
    """A loopback UDP receiver that counts and discards (the TAK client's side)."""

    def __init__(self) -> None:
        self.datagrams = 0
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        super().__init__(sock)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sock.recv(65536)
                self.datagrams += 1
            except TimeoutError:
                continue
            except OSError:
                return


class SapientSink(_LoopbackSink):
    """A loopback SAPIENT peer: accepts the node's connection, answers its registration with an
    acceptance (as Apex does), then reads and counts every message and discards it."""

    def __init__(self) -> None:
        self.messages = 0
        self.registered = False
        super().__init__(socket.create_server(("127.0.0.1", 0)))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        buffer = b""
        while not self._stop.is_set():
            try:
                chunk = conn.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while len(buffer) >= 4 and len(buffer) >= 4 + (length := struct.unpack_from("<I", buffer)[0]):
                body, buffer = buffer[4 : 4 + length], buffer[4 + length :]
                self.messages += 1
                if not self.registered and SapientMessage.FromString(body).HasField("registration"):
                    ack = SapientMessage(node_id=str(uuid.uuid4()))
                    ack.timestamp.FromNanoseconds(time.time_ns())
                    ack.registration_ack.acceptance = True
                    data = ack.SerializeToString()
                    conn.sendall(struct.pack("<I", len(data)) + data)
                    self.registered = True


def swarm_reports() -> tuple[list[tuple[TrackReport, ...]], float]:
    """Every `tracks` step's reports of one seed of swarm-20, and the scenario's duration."""
    captured: list[tuple[TrackReport, ...]] = []
    score = runner.score_published

    def keep(messages: Any, ground: Any) -> Any:
        captured.extend(messages)
        return score(messages, ground)

    runner.score_published = keep  # type: ignore[assignment]
    scenario = load_scenario(SCENARIO)
    runner.run_scenario(scenario, seed=scenario.seed)
    runner.score_published = score  # type: ignore[assignment]
    return captured, scenario.duration_s


def in_process() -> None:
    messages, duration_s = swarm_reports()
    sink = UdpSink()
    codec = CotCodec(CotSettings(node_id="bench", session=1, coast_s=3.0))
    link = CotLink(f"udp://127.0.0.1:{sink.port}")
    link.open(5.0)
    events = 0
    started = time.process_time()
    for reports in messages:
        frames = codec.encode(TracksItem(reports[0].t if reports else 0.0, reports), 0.0)
        if frames:
            link.send(frames)
            events += len(frames)
    cpu = time.process_time() - started
    link.close()
    sink.close()
    print(f"figure: cot_cpu_swarm_20 = {100.0 * cpu / duration_s:.2f} % of one core")
    print(f"figure: cot_events_per_s_swarm_20 = {events / duration_s:.1f} events/s")

    worker = OutputWorker("bench", "cot", link, codec, time.time, queue_size=256)  # never started
    item = TracksItem(0.0, messages[len(messages) // 2])
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        worker.submit(item)
    print(f"figure: output_submit_us = {1e6 * (time.perf_counter() - t0) / n:.2f} us")


def sapient_in_process() -> None:
    """One SAPIENT output's mapping and protobuf encoding for the same run's track reports, sent
    over a loopback socket pair (the TCP transport's cost), with its wall clock following the
    reports' time so that its detection timing rules act as at real-time speed."""
    messages, duration_s = swarm_reports()
    clock = {"t": 0.0}
    codec = SapientCodec(SapientSettings("bench", node_uuid("bench"), 1), lambda: clock["t"])
    near, far = socket.socketpair()
    drained = threading.Thread(
        target=lambda: [None for _ in iter(lambda: far.recv(1 << 20), b"")], daemon=True
    )
    drained.start()
    reports_sent = 0
    started = time.process_time()
    for reports in messages:
        clock["t"] = reports[0].t if reports else clock["t"]
        frames = codec.encode(TracksItem(clock["t"], reports), 0.0)
        if frames:
            near.sendall(b"".join(frames))
            reports_sent += len(frames)
    cpu = time.process_time() - started
    near.close()
    drained.join(5)
    far.close()
    print(f"figure: sapient_cpu_swarm_20 = {100.0 * cpu / duration_s:.2f} % of one core")
    print(f"figure: sapient_reports_per_s_swarm_20 = {reports_sent / duration_s:.1f} reports/s")


def homeassistant_in_process() -> None:
    """The Home Assistant output's own work for the same run: each `tracks` document as the
    publisher hands it over (JSON), parsed, folded into the state, and the state document encoded
    (what `_publish_state` compares and retains; the publish itself is the MQTT publisher's)."""
    messages, duration_s = swarm_reports()
    docs = [
        wire.encode(wire.tracks_message("bench", 1, seq, r[0].t, [wire.track_record(x, 1) for x in r]))
        for seq, r in enumerate(messages, 1)
        if r
    ]
    state = HaState(frozenset(HomeAssistantOutput().drone_classes), 30.0)  # the output's defaults
    changed, last = 0, b""
    started = time.process_time()
    for data in docs:
        doc = json.loads(data)
        state.take("tracks", doc, doc["t"])
        out = wire.encode(state.document())
        changed += out != last
        last = out
    cpu = time.process_time() - started
    print(f"figure: homeassistant_cpu_swarm_20 = {100.0 * cpu / duration_s:.3f} % of one core")
    print(f"figure: homeassistant_states_per_s_swarm_20 = {changed / duration_s:.1f} states/s")


def one_node_run(window_s: float, outputs: str) -> float:
    """CPU % of one core of `sim swarm-20 --speed 1` over the window, with `outputs` "none",
    "cot" (one CoT output) or "all" (one CoT, one SAPIENT and the Home Assistant output)."""
    udp, tcp = UdpSink(), SapientSink()
    env = dict(os.environ)
    if outputs != "none":
        env["CUAS_OUTPUTS__COT"] = json.dumps([{"url": f"udp://127.0.0.1:{udp.port}"}])
    if outputs == "all":
        env["CUAS_OUTPUTS__SAPIENT"] = json.dumps({"host": "127.0.0.1", "port": tcp.port})
        env["CUAS_OUTPUTS__HOMEASSISTANT"] = json.dumps({"enabled": True})
    try:
        with sim_node(SCENARIO, window_s, env=env) as proc:
            c0, w0 = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(window_s)
            c1, w1 = cpu_seconds(proc.pid), time.monotonic()
    finally:
        udp.close()
        tcp.close()
    if outputs != "none" and udp.datagrams == 0:
        raise SystemExit("the CoT output sent nothing: the measurement would be meaningless")
    if outputs == "all" and not (tcp.registered and tcp.messages > 10):
        raise SystemExit("the SAPIENT output sent (almost) nothing: the measurement would be meaningless")
    return 100.0 * (c1 - c0) / (w1 - w0)


def whole_node(runs: int, window_s: float) -> None:
    kinds = ("none", "cot", "all")
    cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(runs):  # interleaved, so drifts of the shared machine hit all alike
        for kind in kinds:
            cpu[kind].append(one_node_run(window_s, kind))
    base, cot, both = (statistics.median(cpu[kind]) for kind in kinds)
    spread = {kind: max(v) - min(v) for kind, v in cpu.items()}
    print(f"figure: cpu_swarm_20_with_sim_and_cot = {cot:.1f} % of one core")
    print(f"figure: cot_overhead_swarm_20 = {cot - base:.1f} % of one core")
    print(f"figure: cpu_swarm_20_with_sim_all_outputs = {both:.1f} % of one core")
    print(f"figure: outputs_overhead_swarm_20 = {both - base:.1f} % of one core")
    runs = "; ".join(
        f"{kind}: {', '.join(f'{v:.1f}' for v in cpu[kind])} (spread {spread[kind]:.1f})" for kind in kinds
    )
    print(f"note: whole-node runs, % of one core, in the order run: {runs}")
    noise = max(spread.values())
    for name, overhead in (("cot_overhead_swarm_20", cot - base), ("outputs_overhead_swarm_20", both - base)):
        if abs(overhead) < noise:
            print(
                f"note: {name} ({overhead:.1f} %) lies within the runs' spread ({noise:.1f} % of one core): "
                "noise; the in-process figures are the outputs' cost"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--window", type=float, default=15.0, help="measuring window per node run, seconds")
    args = ap.parse_args()
    in_process()
    sapient_in_process()
    homeassistant_in_process()
    whole_node(args.runs, args.window)


if __name__ == "__main__":
    main()
