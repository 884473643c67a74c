"""The layers of `cuas_node` and who may import whom, as a table of contracts checked on every run.

The rules and their reasons: docs/architecture.md, "Layers and import rules". The checker is
tests/import_rules.py (AST-based; import-linter cannot read a package that setuptools assembles
from three folders). Run just these: `.venv/bin/python -m pytest -q -p no:cacheprovider
tests/test_architecture.py`.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
import textwrap
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.import_rules import (
    Contract,
    Project,
    Violation,
    check,
    exact_sources,
    load_project,
    missing_modules,
    package_dirs,
)

REPO = Path(__file__).resolve().parent.parent
HOUSE_STYLE_LINES = 400  # modules above this are listed (informational); the contract fails above 450

KERNEL = "cuas_node.kernel.*"
PROTOCOL_MODULES = (
    "cuas_node.drivers.parsing",
    *(f"cuas_node.drivers.nmea.{m}" for m in ("fields", "parser", "encode", "decode")),
    *(
        f"cuas_node.drivers.radar.{m}"
        for m in ("ti_frames", "ti_frames_sdk2", "ti_encode", "ti_decode", "cluster", "static_map")
    ),
    *(
        f"cuas_node.drivers.remoteid.{m}"
        for m in ("messages", "encode", "carriers", "lines", "pcap", "decode")
    ),
    *(
        f"cuas_node.drivers.acoustic.{m}"
        for m in (
            "protocol",
            "geometry",
            "features",
            "features_lines",
            "detector",
            "doa",
            "background",
            "background_learn",
            "coherence",
            "nearfield",
        )
    ),
    *(f"cuas_node.drivers.fpv.{m}" for m in ("rx5808", "rssi", "sweep")),
    "cuas_node.drivers.record_pcapng",
)
APPLICATIONS = ("cuas_node.runtime", "cuas_node.cli", "cuas_node.replay*", "cuas_node.evaluation.*")

NO_NODE_INTERNALS = (
    "cuas_node.fusion.*",
    "cuas_node.core.*",
    "cuas_node.runtime",
    "cuas_node.drivers.*",
    "cuas_node.evaluation.*",
    "cuas_node.replay*",
)
"""What an output (MQTT, the standard outputs, the web view) may not import: how tracks are made
and the running node."""

CONTRACTS = (
    Contract(
        key="kernel-leaf",
        name="kernel is a leaf",
        why="every layer imports the kernel, so the kernel imports no layer (not even the package root)",
        sources=(KERNEL,),
        allowed=(KERNEL,),
        third_party=("numpy", "pymap3d"),
    ),
    Contract(
        key="protocol-sans-io",
        name="protocol modules are sans-IO",
        why="wire parsers/encoders run anywhere (tests, fuzzers, replay, calibration) without ports, "
        "threads or a broker",
        sources=PROTOCOL_MODULES,
        allowed=(KERNEL, *PROTOCOL_MODULES),
        third_party=("numpy", "scipy"),
        must_not_load=("serial", "paho", "threading"),
    ),
    Contract(
        key="drivers-know-no-node",
        name="drivers know nothing of the node",
        why="a driver turns bytes into kernel measurements; the node composes drivers, never the reverse",
        sources=("cuas_node.drivers.*",),
        allowed=(KERNEL, "cuas_node.drivers.*"),
        extra_allowed=(("cuas_node.drivers.sim.*", ("cuas_node.config", "cuas_node.config_sensors")),),
    ),
    Contract(
        key="fusion-pure",
        name="fusion imports only the kernel, numpy/scipy and itself",
        why="the tracker is pure computation on frozen parameters and kernel measurements, testable alone",
        sources=("cuas_node.fusion.*",),
        allowed=(KERNEL, "cuas_node.fusion.*"),
        third_party=("numpy", "scipy"),
    ),
    Contract(
        key="core-step",
        name="the core step imports only kernel, fusion and itself",
        why="one fusion step (measurements in, reports out) is shared by the runtime, replay and evaluation",
        sources=("cuas_node.core.*",),
        allowed=(KERNEL, "cuas_node.fusion.*", "cuas_node.core.*"),
    ),
    Contract(
        key="publish-no-fusion",
        name="publish knows no fusion internals",
        why="outputs encode the kernel's typed reports; they must not depend on how tracks are made",
        sources=("cuas_node.publish.*",),
        forbidden=NO_NODE_INTERNALS,
        indirect=True,
    ),
    Contract(
        key="web-no-fusion",
        name="the web view knows no fusion internals",
        why="the live view shows the documents the publisher sends (one encoder); it must not depend on "
        "how tracks are made nor reach into the running node",
        sources=("cuas_node.web.*",),
        forbidden=(*NO_NODE_INTERNALS, "cuas_node.publish.*"),
        indirect=True,
    ),
    Contract(
        key="outputs-no-fusion",
        name="standard outputs know no fusion internals",
        why="CoT and the other standard outputs map the kernel's typed reports, as the MQTT publisher "
        "does; they must not depend on how tracks are made",
        sources=("cuas_node.outputs.*",),
        forbidden=NO_NODE_INTERNALS,
        indirect=True,
    ),
    Contract(
        key="offline-tools-no-runtime",
        name="calibration and the simulator never import the runtime",
        why="offline tools and the simulator must run without the daemon and its outputs (and vice versa)",
        sources=("cuas_node.calibration.*", "cuas_node.drivers.sim.*"),
        forbidden=(
            "cuas_node.runtime",
            "cuas_node.publish.*",
            "cuas_node.outputs.*",
            "cuas_node.core.*",
            "cuas_node.cli",
            "cuas_node.replay*",
            "cuas_node.evaluation.*",
            "cuas_node.sdnotify",
            "cuas_node.gpio*",
        ),
        indirect=True,
    ),
    Contract(
        key="cli-is-top",
        name="the CLI is the top",
        why="cuas_node.cli only parses arguments and dispatches; code others need belongs below it",
        sources=("*",),
        exclude=("tests.*",),
        forbidden=("cuas_node.cli",),
    ),
    Contract(
        key="no-private-names",
        name="no private names across packages",
        why="a _name is its package's implementation detail; other packages use the public API",
        sources=("cuas_node.*",),
        kind="private-names",
    ),
    Contract(
        key="no-folder-imports",
        name="no folder-name imports",
        why="node/, drivers/, calibration/ are folders of cuas_node; importing them makes a second copy",
        sources=("*",),
        forbidden=("node.*", "drivers.*", "calibration.*"),
    ),
    Contract(
        key="module-size",
        name="modules stay small",
        why="house style is modules under ~400 lines; above 450 split by responsibility",
        sources=("cuas_node.*",),
        kind="module-size",
        max_lines=450,
    ),
)


def report(contract: Contract, violations: list[Violation]) -> str:
    return f"{len(violations)} violation(s) of contract {contract.key!r}:\n" + "\n".join(map(str, violations))


@pytest.fixture(scope="module")
def project() -> Project:
    return load_project(REPO)


# The main test: every contract over the real tree.
@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.key)
def test_contract_holds(contract: Contract, project: Project) -> None:
    violations = check(contract, project)
    if violations:
        pytest.fail(report(contract, violations), pytrace=False)


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.key)
def test_contract_names_existing_modules(contract: Contract, project: Project) -> None:
    """A module renamed away from under a rule would make the rule check nothing, silently."""
    assert not missing_modules(contract, project), "update the table in tests/test_architecture.py"


def test_modules_map_to_the_installed_files(project: Project) -> None:
    """The checker's file -> module mapping is the one the installed package uses."""
    package = [src for src in project.files.values() if src.module.split(".")[0] == "cuas_node"]
    on_disk = [p for folder in package_dirs(REPO).values() for p in (REPO / folder).rglob("*.py")]
    assert len(package) == len([p for p in on_disk if "__pycache__" not in p.parts]) > 100
    assert project.files["cuas_node.kernel.clock"].path == "node/kernel/clock.py"
    assert project.files["cuas_node.drivers.radar.ti_frames"].path == "drivers/radar/ti_frames.py"
    for src in package:
        spec = importlib.util.find_spec(src.module)
        assert spec is not None and spec.origin == str(REPO / src.path), src.module


def test_modules_over_house_style_are_listed(project: Project) -> None:
    """Informational: modules over 400 lines (the size contract fails above 450)."""
    big = sorted((s.n_lines, s.path) for s in project.files.values() if s.module.startswith("cuas_node."))
    over = [f"{path}: {n} lines" for n, path in big if n > HOUSE_STYLE_LINES]
    if over:
        warnings.warn(f"modules over {HOUSE_STYLE_LINES} lines: " + "; ".join(over), stacklevel=1)


# --- The dynamic half of "protocol modules are sans-IO" ---------------------------------------------

_PROBE = """
import importlib, json, sys
watch, chains = set(sys.argv[2].split(",")), {}
class Spy:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in watch and top not in chains:
            chain, frame = [], sys._getframe(1)
            while frame is not None:
                if frame.f_code.co_name == "<module>":
                    chain.append(frame.f_globals.get("__name__", "?"))
                frame = frame.f_back
            chains[top] = [m for m in reversed(chain) if m != "__main__"] + [name]
        return None
sys.path[:0] = [p for p in sys.argv[3:]]
sys.meta_path.insert(0, Spy())
importlib.import_module(sys.argv[1])
print(json.dumps({t: chains.get(t, ["?"]) for t in sorted(watch) if t in sys.modules}))
"""


def start_probe(
    module: str, watch: Sequence[str], cwd: Path, path: Sequence[str] = ()
) -> subprocess.Popen[str]:
    """Import `module` in a fresh interpreter (isolated mode, so in `cwd` only installed packages
    and `path` are importable); `probe_result` gives, for each watched top-level module it loaded,
    the chain of module bodies that were executing when it was first imported."""
    cmd = [sys.executable, "-I", "-c", _PROBE, module, ",".join(watch), *path]
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def probe_result(process: subprocess.Popen[str], timeout: float = 120) -> dict[str, list[str]]:
    out, err = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"import failed (exit {process.returncode}): {err.strip()[-1500:]}")
    result: dict[str, list[str]] = json.loads(out.strip().splitlines()[-1])
    return result


PROTOCOL = next(c for c in CONTRACTS if c.key == "protocol-sans-io")


@pytest.fixture(scope="module")
def loaded() -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Each protocol module imported in its own fresh interpreter, all at once."""
    with tempfile.TemporaryDirectory() as cwd:
        probes = {m: start_probe(m, PROTOCOL.must_not_load, Path(cwd)) for m in exact_sources(PROTOCOL)}
        yield probes
        for process in probes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.parametrize("module", exact_sources(PROTOCOL))
def test_protocol_module_loads_no_io(module: str, loaded: dict[str, subprocess.Popen[str]]) -> None:
    chains = probe_result(loaded[module])
    if chains:
        pytest.fail(
            f"importing {module} loads {', '.join(chains)}; breaks {PROTOCOL.name!r}: {PROTOCOL.why}\n"
            + "\n".join(f"  {top}: {' -> '.join(chain)}" for top, chain in chains.items()),
            pytrace=False,
        )


# --- The checker catches planted violations ---------------------------------------------------------

FAKE_TREE = {
    "pyproject.toml": """
        [tool.setuptools.package-dir]
        "cuas_node" = "node"
        "cuas_node.drivers" = "drivers"
        "cuas_node.calibration" = "calibration"
        """,
    "node/__init__.py": "",
    "node/config.py": "X = 1\n_SECRET = 2\n",
    "node/cli.py": "",
    "node/runtime.py": "import cuas_node.cli\n",
    "node/kernel/__init__.py": "",
    "node/kernel/clock.py": "import numpy\nimport time\nfrom cuas_node import __version__\n",
    "node/fusion/__init__.py": "",
    "node/fusion/zones.py": """
        import numpy as np
        from ..kernel import clock
        class ZoneMonitor:
            def __init__(self):
                self._zones = []
            def _event(self):
                return self._zones
        def _helper():
            return 1
        """,
    "node/fusion/engine.py": """
        from typing import TYPE_CHECKING
        from cuas_node.fusion.zones import _helper
        if TYPE_CHECKING:
            from ..config import X
        def build():
            from cuas_node.config import X
            return X
        """,
    "node/publish/__init__.py": "",
    "node/publish/mqtt.py": """
        from cuas_node.fusion import zones
        from cuas_node.fusion.zones import ZoneMonitor
        from cuas_node.config import _SECRET
        from cuas_node.publish import _local
        class Watcher(ZoneMonitor[int]):
            def poll(self):
                return self._event(), super()._event()
        def use(monitor):
            return zones._helper(), ZoneMonitor._event(monitor)
        def shadowed(zones):
            return zones._anything
        """,
    "node/publish/_local.py": "",
    "node/publish/link.py": "from cuas_node import helpers\n",
    "node/helpers.py": "import numpy\nfrom cuas_node.core import step\n",
    "node/core/__init__.py": "",
    "node/core/step.py": "",
    "drivers/__init__.py": "",
    "drivers/parsing.py": "import serial\nimport struct\nimport numpy\nfrom cuas_node.kernel import clock\n",
    "drivers/nmea/__init__.py": "",
    "drivers/nmea/parser.py": "from ..parsing import struct\n",
    "drivers/sim/__init__.py": "",
    "drivers/sim/world.py": "from cuas_node import config\nfrom cuas_node import runtime\n",
    "calibration/__init__.py": "",
    "tests/__init__.py": "",
    "tests/test_x.py": """
        from unittest import mock
        import cuas_node.cli
        from node.config import X
        PATCH = mock.patch("drivers.parsing.struct")
        """,
    "scripts/run.sh": "# python -m node.cli in a comment is fine\nexec python3 -m node.cli sim demo\n",
    "node/big.py": "x = 1\n" * 451,
}

PLANTED = {
    ("kernel-leaf", "node/kernel/clock.py", 3, "cuas_node"),
    ("protocol-sans-io", "drivers/parsing.py", 1, "serial"),
    ("drivers-know-no-node", "drivers/sim/world.py", 2, "cuas_node.runtime"),
    ("fusion-pure", "node/fusion/engine.py", 4, "cuas_node.config"),  # under TYPE_CHECKING, relative
    ("fusion-pure", "node/fusion/engine.py", 6, "cuas_node.config"),  # in a function
    ("publish-no-fusion", "node/publish/mqtt.py", 1, "cuas_node.fusion.zones"),
    ("publish-no-fusion", "node/publish/link.py", 1, "cuas_node.core.step"),  # indirectly
    ("offline-tools-no-runtime", "drivers/sim/world.py", 2, "cuas_node.runtime"),
    ("cli-is-top", "node/runtime.py", 1, "cuas_node.cli"),
    ("no-private-names", "node/publish/mqtt.py", 3, "cuas_node.config._SECRET"),
    ("no-private-names", "node/publish/mqtt.py", 7, "cuas_node.fusion.zones.ZoneMonitor._event"),
    ("no-private-names", "node/publish/mqtt.py", 9, "cuas_node.fusion.zones._helper"),
    ("no-private-names", "node/publish/mqtt.py", 9, "cuas_node.fusion.zones.ZoneMonitor._event"),
    # Joined at run time: a literal "node.config" here would itself be a folder-name reference.
    ("no-folder-imports", "tests/test_x.py", 3, ".".join(["node", "config"])),
    ("no-folder-imports", "tests/test_x.py", 4, ".".join(["drivers", "parsing"])),
    ("no-folder-imports", "scripts/run.sh", 2, ".".join(["node", "cli"])),
    ("module-size", "node/big.py", 1, "cuas_node.big"),
}


def _fake_project(root: Path) -> Project:
    for rel, text in FAKE_TREE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text).lstrip("\n"))
    return load_project(root)


def test_checker_reports_planted_violations(tmp_path: Path) -> None:
    fake = _fake_project(tmp_path)
    found = {(c.key, v.path, v.line, v.target) for c in CONTRACTS for v in check(c, fake)}
    assert not PLANTED - found, f"missed: {sorted(PLANTED - found)}"
    ok = [f for f in found if f[1] in ("node/fusion/zones.py", "drivers/nmea/parser.py", "tests/test_x.py")]
    assert sorted(ok) == [f for f in sorted(PLANTED) if f[1] == "tests/test_x.py"]  # nothing else there
    privates = {f for f in found if f[0] == "no-private-names"}
    assert privates == {f for f in PLANTED if f[0] == "no-private-names"}  # same package, shadowed: fine
    cli = next(c for c in CONTRACTS if c.key == "cli-is-top")
    assert [v.path for v in check(cli, fake)] == ["node/runtime.py"]  # tests may import the CLI
    fusion = next(c for c in CONTRACTS if c.key == "fusion-pure")
    assert [v.detail.split(";")[0] for v in check(fusion, fake)] == ["under TYPE_CHECKING", "in function"]
    message = str(next(v for v in check(PROTOCOL, fake) if v.target == "serial"))
    assert message.startswith("drivers/parsing.py:1: cuas_node.drivers.parsing -> serial")
    assert PROTOCOL.why in message


def test_load_probe_names_the_import_chain(tmp_path: Path) -> None:
    (tmp_path / "fake_proto.py").write_text("import struct\nimport fake_helper\n")
    (tmp_path / "fake_helper.py").write_text("import logging\n")
    (tmp_path / "fake_clean.py").write_text("import struct\n")
    chains = probe_result(start_probe("fake_proto", ["threading", "serial"], tmp_path, [str(tmp_path)]))
    assert list(chains) == ["threading"]
    assert chains["threading"][:3] == ["fake_proto", "fake_helper", "logging"]
    assert probe_result(start_probe("fake_clean", ["threading"], tmp_path, [str(tmp_path)])) == {}
