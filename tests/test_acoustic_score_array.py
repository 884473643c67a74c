"""`acoustic score` on a recording of a known array (`--geometry`, or the `--sensor`'s): scored
through the array's pipeline as the node's driver scores its stream, so the array's evidence
(coherence, distance) decides as it would in the node; any other file is one beam."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy.io import wavfile

from cuas_node.drivers.acoustic.geometry import preset
from cuas_node.drivers.acoustic.protocol import PcmFrameParser
from cuas_node.drivers.sim.acoustic import SimAcousticArray
from cuas_node.kernel.pose import Pose

FS = 16000
GEO = preset("respeaker-4")
POSE = Pose.from_angles(0, 0, 0, (0, 0, 0))


def _recording(path: Path, kind: str, enu: np.ndarray, seed: int) -> Path:
    sim = SimAcousticArray(GEO, POSE, seed=seed, ambient_db_spl=35.0)
    data = b"".join(sim.block(k / 10, ["t"], [kind], [enu], [np.zeros(3)]) for k in range(41))
    x = np.concatenate([f.samples for f in PcmFrameParser().feed(data)])
    wavfile.write(path, FS, x[FS // 2 :])  # from when the sound has reached the array
    return path


def _score(*args: str) -> tuple[int, list[dict[str, object]], str]:
    done = subprocess.run(
        [sys.executable, "-m", "cuas_node.cli", "acoustic", "score", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def test_an_array_recording_is_scored_as_the_node_would(tmp_path: Path) -> None:
    insect = _recording(tmp_path / "insect.wav", "insect", GEO.positions[2] + np.array([0.0, 0.0, 0.03]), 2)
    drone = _recording(tmp_path / "drone.wav", "quadcopter", np.array([0.0, 100.0, 30.0]), 3)
    rc, beam, _ = _score(str(insect), str(drone))
    assert rc == 0 and [r["detected"] for r in beam] == [True, True]  # one beam cannot tell
    rc, rows, _ = _score("--geometry", "respeaker-4", str(insect), str(drone))
    assert rc == 0 and [r["file"] for r in rows] == [str(insect), str(drone)]
    assert [r["detected"] for r in rows] == [False, True], rows

    config = tmp_path / "node.toml"
    config.write_text(
        '[node]\nid = "n"\n[[sensors]]\nkind = "acoustic-array"\nid = "mic"\nport = "/dev/null"\n'
        'geometry = "respeaker-4"\n'
    )
    rc, same, _ = _score("--config", str(config), "--sensor", "mic", str(insect), str(drone))
    assert rc == 0 and same == rows

    mono = tmp_path / "mono.wav"
    wavfile.write(mono, FS, wavfile.read(drone)[1][:, 0])
    rc, one, err = _score("--geometry", "respeaker-4", str(mono))
    assert rc == 0 and one[0]["detected"] and "scored as one beam" in err

    explicit = json.dumps(GEO.positions.tolist())
    rc, listed, _ = _score("--geometry", explicit, str(insect), str(drone))
    assert rc == 0 and listed == rows
    rc, _, err = _score("--geometry", "respeaker-5", str(drone))
    assert rc == 2 and "--geometry" in err
