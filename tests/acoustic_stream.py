"""The acoustic simulator's stream as the array driver reads it, for tests: its frames decoded to
samples, and the driver's windows over them. One place, so that every test scores the same
windows the node would."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cuas_node.drivers.acoustic.protocol import PcmFrameParser
from cuas_node.drivers.sim.acoustic import SimAcousticArray


def frame_samples(data: bytes) -> np.ndarray:
    """The simulator's frames as (n, M) samples, ±1 full scale."""
    return np.concatenate([f.samples for f in PcmFrameParser().feed(data)]).astype(np.float64) / 32768.0


def sim_stream(
    sim: SimAcousticArray, seconds: float, kinds: Sequence[str] = (), enu: Sequence[np.ndarray] = ()
) -> np.ndarray:
    """`seconds` of the stream (0.1 s blocks, one more to cover the last), each source (`kinds`,
    still at `enu`) heard from the start: (n, M) samples, ±1 full scale."""
    ids = [f"t{i}" for i in range(len(kinds))]
    still = [np.zeros(3)] * len(kinds)
    return frame_samples(
        b"".join(sim.block(k / 10, ids, list(kinds), list(enu), still) for k in range(int(seconds * 10) + 1))
    )


def driver_windows(x: np.ndarray, fs: int, start: int | None = None) -> list[np.ndarray]:
    """The driver's windows over samples x: 1 s every 0.5 s, from `start` (default half a second
    in, once a source's sound has reached the array)."""
    first = fs // 2 if start is None else start
    return [x[s : s + fs] for s in range(first, x.shape[0] - fs, fs // 2)]
