"""How fast one core turns TI data-UART bytes into radar detections, against the 20 Hz real-time need.

The load is what the shipped profiles produce on a cluttered site: 20 frames/s of 200 points, most
of them static clutter (near-zero Doppler, some swaying a little) and false alarms, plus a few
drones of a handful of points each, with side info and stats TLVs as `guiMonitor -1 1 0 0 0 0 1`
sends them. The full path is the real driver (parser, Doppler band, learned static map,
clustering, detections) reading from an in-memory transport in 4 KiB reads, like a serial port.

Run: `.venv/bin/python benchmarks/radar_parse.py [--frames N] [--repeat K]`. Figures are printed as
`figure: <name> = <value> <unit>`; compare them as ratios within one run, not across machines.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import numpy as np

from cuas_node.drivers.radar.cluster import ClusterOptions, PointClusterer
from cuas_node.drivers.radar.static_map import StaticClutterMap
from cuas_node.drivers.radar.ti_driver import TiMmwaveDriver
from cuas_node.drivers.radar.ti_encode import encode_frame
from cuas_node.drivers.radar.ti_frames import TiFrameParser
from cuas_node.kernel.clock import SystemClock

RATE_HZ = 20.0
POINTS_PER_FRAME = 200
N_CLUTTER = 150
N_TARGETS = 6
POINTS_PER_TARGET = 4
STATS = dict.fromkeys(
    (
        "interframe_processing_time_us",
        "transmit_output_time_us",
        "interframe_processing_margin_us",
        "interchirp_processing_margin_us",
        "active_frame_cpu_load_pct",
        "interframe_cpu_load_pct",
    ),
    100,
)
TEMPERATURE = {"report_valid": 0, "time_ms": 0} | dict.fromkeys(
    ("rx0", "rx1", "rx2", "rx3", "tx0", "tx1", "tx2", "pm", "dig0", "dig1"), 45
)


def make_stream(n_frames: int, seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    r = rng.uniform(5, 100, N_CLUTTER)
    az = rng.uniform(-1.0, 1.0, N_CLUTTER)
    clutter = np.column_stack([r * np.sin(az), r * np.cos(az), rng.normal(0, 1.5, N_CLUTTER)])
    start = rng.uniform([-40, 20, 5], [40, 90, 40], (N_TARGETS, 3))
    vel = rng.uniform(-12, 12, (N_TARGETS, 3))
    n_false = POINTS_PER_FRAME - N_CLUTTER - N_TARGETS * POINTS_PER_TARGET
    frames = []
    for k in range(n_frames):
        t = k / RATE_HZ
        static = np.column_stack(
            [clutter + rng.normal(0, 0.05, clutter.shape), rng.normal(0, 0.05, N_CLUTTER)]
        )
        centre = start + vel * t
        radial = np.einsum("ij,ij->i", centre, vel) / np.linalg.norm(centre, axis=1)
        targets = np.repeat(np.column_stack([centre, radial]), POINTS_PER_TARGET, axis=0)
        targets[:, :3] += rng.normal(0, 0.3, (targets.shape[0], 3))
        false_xy = rng.uniform(-60, 60, (n_false, 2)) + np.array([0.0, 60.0])
        false = np.column_stack([false_xy, rng.uniform(-5, 20, n_false), rng.uniform(-10, 10, n_false)])
        pts = np.vstack([static, targets, false]).astype(np.float32)
        snr = rng.uniform(8, 30, pts.shape[0])
        frames.append(
            encode_frame(
                k + 1,
                pts,
                snr_db=snr,
                noise_db=np.full(pts.shape[0], 60.0),
                stats=STATS,
                temperature=TEMPERATURE,
            )
        )
    return b"".join(frames)


class ReplayTransport:
    """The recorded stream in serial-sized reads; b"" at the end."""

    def __init__(self, data: bytes, chunk: int = 4096) -> None:
        self.data, self.chunk, self.pos = memoryview(data), chunk, 0

    def open(self) -> None:
        self.pos = 0

    def read(self, max_bytes: int = 4096) -> bytes:
        out = bytes(self.data[self.pos : self.pos + min(max_bytes, self.chunk)])
        self.pos += len(out)
        return out

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    @property
    def is_open(self) -> bool:
        return True


def parse_only(data: bytes) -> tuple[float, int, int]:
    parser = TiFrameParser()
    view = memoryview(data)
    started = time.perf_counter()
    for pos in range(0, len(view), 4096):
        parser.feed(bytes(view[pos : pos + 4096]))
    elapsed = time.perf_counter() - started
    return elapsed, parser.counters["frames"], parser.counters["points"]


def full_path(data: bytes, learn: bytes) -> tuple[float, int, int]:
    static_map = StaticClutterMap(learn_frames=100)
    for frame in TiFrameParser().feed(learn):
        static_map.observe(frame.points)
    transport = ReplayTransport(data)
    clusterer = PointClusterer.from_options(ClusterOptions(), static_map)
    driver = TiMmwaveDriver("bench", transport, SystemClock(), clusterer=clusterer)
    driver.open()
    detections = 0
    started = time.perf_counter()
    while transport.pos < len(transport.data):
        detections += len(driver.read())
    elapsed = time.perf_counter() - started
    return elapsed, driver.parser.counters["frames"], detections


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as on a busy Pi
    learn = make_stream(100, seed=2)
    data = make_stream(args.frames)
    parse_s, frames, points = min(parse_only(data) for _ in range(args.repeat))
    full_s, full_frames, detections = min(full_path(data, learn) for _ in range(args.repeat))
    assert frames == full_frames == args.frames, (frames, full_frames)
    print(f"load: {frames} frames of {POINTS_PER_FRAME} points ({len(data) / frames:.0f} B/frame)")
    print(f"figure: radar_parse_frames_per_s = {frames / parse_s:.0f} frames/s")
    print(f"figure: radar_parse_points_per_s = {points / parse_s:.0f} points/s")
    print(f"figure: radar_pipeline_frames_per_s = {frames / full_s:.0f} frames/s")
    print(f"figure: radar_pipeline_points_per_s = {points / full_s:.0f} points/s")
    print(f"figure: radar_detections_per_frame = {detections / frames:.1f} detections")
    print(f"figure: radar_parse_share = {100 * parse_s / full_s:.0f} %")
    print(f"figure: radar_realtime_ratio = {frames / full_s / RATE_HZ:.0f} x")


if __name__ == "__main__":
    main()
