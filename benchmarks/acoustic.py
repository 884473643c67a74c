"""Acoustic pipeline speed: DoA (SRP-PHAT) + beamforming + drone detection, on one core.

Prints, for 4, 6 and 8 channels at 16 and 48 kHz, seconds of audio processed per second of CPU
(process time, so other load on the machine does not count), e.g.
`figure: acoustic_speed_8ch_48k = 25.3 x`. Run: `.venv/bin/python benchmarks/acoustic.py`.
The driver processes a 1 s window every 0.5 s, so real time needs at least 2 x.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core, as on a busy Pi

import math  # noqa: E402
import time  # noqa: E402

from cuas_node.drivers.acoustic.driver import AcousticPipeline  # noqa: E402
from cuas_node.drivers.acoustic.geometry import circular, preset  # noqa: E402
from cuas_node.drivers.sim.acoustic import synth_array_block  # noqa: E402

WINDOW_S = 1.0
HOP_S = 0.5  # the driver's block: each second of audio is analysed twice


def speed(channels: int, rate: int, repeats: int = 6) -> float:
    geo = {4: preset("respeaker-4"), 6: preset("respeaker-6")}.get(channels) or circular(channels, 0.05)
    pipe = AcousticPipeline(geo, rate)
    x = synth_array_block(geo, rate, math.radians(30), math.radians(25), WINDOW_S, snr_db=10.0, seed=1)
    pipe.process(x)  # warm-up: tables, caches
    t0 = time.process_time()
    for _ in range(repeats):
        pipe.process(x)
    cpu = time.process_time() - t0
    return repeats * HOP_S / cpu


def main() -> None:
    for rate in (16000, 48000):
        for channels in (4, 6, 8):
            print(f"figure: acoustic_speed_{channels}ch_{rate // 1000}k = {speed(channels, rate):.1f} x")


if __name__ == "__main__":
    main()
