"""Shared plumbing for the atheris harnesses: importable without atheris, seeds from ../shared.

Why the guard: ruff, mypy and pytest collection must not need atheris (it needs clang/libFuzzer
wheels that are not on every machine), and tests/test_parser_properties.py runs every harness's
`TestOneInput` on the seeds without it. Only `main()` needs atheris.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "captures"
if str(ROOT) not in sys.path:  # `python fuzz/fuzz_x.py` puts fuzz/ first on the path, not the project
    sys.path.insert(0, str(ROOT))


def atheris_module() -> Any | None:
    try:
        return importlib.import_module("atheris")
    except ImportError:
        return None


ATHERIS = atheris_module()


def instrumented(module_name: str) -> contextlib.AbstractContextManager[Any]:
    """Coverage instrumentation for the parser imports when a harness runs as a program under
    atheris; a no-op when imported (the pytest smoke test) or without atheris."""
    if ATHERIS is None or module_name != "__main__":
        return contextlib.nullcontext()
    return ATHERIS.instrument_imports(include=["drivers"])


def split(data: bytes) -> list[bytes]:
    """Cut the input into chunks whose sizes come from its first byte, so that the fuzzer explores
    read boundaries too: the parser must give the same records however the bytes are split."""
    if not data:
        return []
    seed, body = data[0], data[1:]
    sizes = (1, 2, 3, 7, 16, 64, 511, 4096)
    size = sizes[seed % len(sizes)]
    return [body[i : i + size] for i in range(0, len(body), size)]


def main(test_one_input: Callable[[bytes], None]) -> None:
    """`python fuzz/fuzz_x.py [corpus_dir ...] -atheris_runs=N` (libFuzzer flags pass through)."""
    if ATHERIS is None:
        sys.exit("atheris is not installed: `pip install atheris` (see fuzz/README.md)")
    ATHERIS.Setup(sys.argv, test_one_input)
    ATHERIS.Fuzz()


def capture_files(pattern: str) -> list[Path]:
    return sorted(SHARED.glob(pattern)) if SHARED.exists() else []


def read_seeds(pattern: str, limit: int = 4096, max_files: int = 8) -> Iterator[bytes]:
    """Seed inputs: the first `limit` bytes of each capture matching `pattern`, behind a split byte."""
    for path in capture_files(pattern)[:max_files]:
        data = path.read_bytes()[:limit]
        for seed in (0, 5):
            yield bytes((seed,)) + data
