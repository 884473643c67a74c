"""Make the golden recordings in this folder (run from the project root; see docs/recording.md).

    .venv/bin/python tests/data/recordings/make_recordings.py          # all of them
    .venv/bin/python tests/data/recordings/make_recordings.py radar-xwr1642-b

Two sources:
- real captures from `../shared/captures/` (a TI xWR1642 data UART, a GPS receiver's NMEA), which
  carry no host timestamps: they are cut into reads (one radar frame, one NMEA line) and stamped on
  a synthetic clock (10 Hz frames, 20 lines per second) with a hand-written node config;
- the simulator: `cuas-node sim SCENARIO --duration S` with `[record] enabled` (real threads,
  real ptys, the real radar CLI handshake), so these differ from run to run and are made once.

After remaking a recording, regenerate its expected output: `python -m cuas_node.replay --regenerate-golden`.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from cuas_node.config import build_config  # noqa: E402
from cuas_node.drivers.record import Channel, Recorder  # noqa: E402
from cuas_node.recording_config import recording_header  # noqa: E402

HERE = Path(__file__).resolve().parent
CAPTURES = ROOT.parent / "shared" / "captures"
EPOCH = 1_700_000_000.0
MAGIC = b"\x02\x01\x04\x03\x06\x05\x08\x07"


class _FixedClock:
    def __init__(self) -> None:
        self.t = EPOCH

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t - EPOCH

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def _write(
    name: str, config_data: dict[str, Any], channel: Channel, reads: Iterator[tuple[float, bytes]]
) -> Path:
    config = build_config(config_data, name)
    clock = _FixedClock()
    out = HERE / f"{name}.pcapng"
    recorder = Recorder(out, clock, recording_header(config))
    iface = recorder.add_channel(channel)
    recorder.start()
    for t, data in reads:
        recorder.write(iface, data, t=t)
    recorder.close()
    return out


def radar_frames(path: Path) -> Iterator[bytes]:
    raw = path.read_bytes()
    starts = []
    pos = raw.find(MAGIC)
    while pos >= 0:
        starts.append(pos)
        pos = raw.find(MAGIC, pos + 1)
    starts.append(len(raw))
    if starts[0] > 0:
        yield raw[: starts[0]]
    for a, b in itertools.pairwise(starts):
        yield raw[a:b]


def make_radar() -> Path:
    capture = CAPTURES / "radar" / "ti-xwr16xx-sdk3.4-b.dat"
    config: dict[str, Any] = {
        "node": {"id": "golden-radar", "position": {"lat": 52.0116, "lon": 4.3571, "alt_m": 52.0}},
        "sensors": [
            {
                "kind": "ti-mmwave",
                "id": "radar-1",
                "port": "/dev/ttyACM1",
                "model": "xwr1642",
                "mount": {"offset_m": [0.0, 0.0, 3.0]},
                # The capture is of a static scene (every point at zero Doppler): without this the
                # Doppler clutter band would (rightly) remove everything.
                "doppler_clutter_band_mps": 0.0,
            }
        ],
        "fusion": {"publish_tentative": True},
    }
    reads = ((EPOCH + 0.1 * i, frame) for i, frame in enumerate(radar_frames(capture)))
    return _write("radar-xwr1642-b", config, Channel("radar-1", "ti-mmwave", "data", "/dev/ttyACM1"), reads)


def make_gps() -> Path:
    capture = CAPTURES / "gps" / "mt3339.log"
    lines = [
        line + b"\r\n"
        for line in capture.read_bytes().splitlines()
        if line.strip() and not line.startswith(b"#")
    ]
    config: dict[str, Any] = {
        "node": {"id": "golden-gps"},
        "sensors": [{"kind": "nmea", "id": "gps", "port": "/dev/serial0"}],
    }
    reads = ((EPOCH + 0.05 * i, line) for i, line in enumerate(lines))
    return _write("gps-mt3339", config, Channel("gps", "nmea", "data", "/dev/serial0"), reads)


def _from_sim(name: str, scenario: str, duration_s: float, speed: float) -> Callable[[], Path]:
    def make() -> Path:
        out = HERE / f"{name}.pcapng"
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "record.toml"
            cfg.write_text(
                f'[record]\nenabled = true\npath = "{out}"\nrotate_bytes = 0\n'
                f'[logging]\nlevel = "WARNING"\n[node]\nstate_dir = "{tmp}"\n'
                f"[mqtt]\nport = 9\n"  # nobody listens: the node publishes into the void
            )
            cmd = [str(ROOT / ".venv" / "bin" / "cuas-node"), "sim", scenario]
            cmd += ["--duration", str(duration_s), "--speed", str(speed), "--config", str(cfg)]
            subprocess.run(cmd, check=True, cwd=ROOT)
        return out

    return make


MAKERS: dict[str, Callable[[], Path]] = {
    "radar-xwr1642-b": make_radar,
    "gps-mt3339": make_gps,
    "sim-demo": _from_sim("sim-demo", "demo", 8.0, 2.0),
    "sim-fpv-racer": _from_sim("sim-fpv-racer", "fpv-racer", 12.0, 2.0),
    "sim-remote-id": _from_sim("sim-remote-id", "remote-id-cooperative", 8.0, 2.0),
}


def main(names: list[str]) -> int:
    for name in names or list(MAKERS):
        if name not in MAKERS:
            print(f"unknown recording {name!r} (known: {', '.join(MAKERS)})", file=sys.stderr)
            return 2
        path = MAKERS[name]()
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
