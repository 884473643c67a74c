"""Write every harness's seed inputs (from ../shared captures) into corpus/<harness>/ for libFuzzer.

python fuzz/seed_corpus.py [OUT_DIR]        # default: fuzz/corpus (not committed)
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from pathlib import Path

HARNESSES = (
    "fuzz_nmea",
    "fuzz_ti_mmwave",
    "fuzz_ti_cli",
    "fuzz_remoteid_lines",
    "fuzz_remoteid_pcap",
    "fuzz_remoteid_messages",
    "fuzz_acoustic",
)


def write_corpus(out_dir: Path) -> dict[str, int]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    written: dict[str, int] = {}
    for name in HARNESSES:
        module = importlib.import_module(name)
        folder = out_dir / name.removeprefix("fuzz_")
        folder.mkdir(parents=True, exist_ok=True)
        count = 0
        for seed in module.seeds():
            (folder / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
            count += 1
        written[name] = count
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "corpus"
    for harness, n in write_corpus(target).items():
        print(f"{harness}: {n} seed(s) in {target / harness.removeprefix('fuzz_')}")
