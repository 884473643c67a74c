"""The wheel installs exactly one top-level package, `cuas_node`, built from the three folders.

Why it matters: a wheel that installed `node`, `drivers` and `calibration` would be shadowed by
(or shadow) any other distribution using one of those common names, silently.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FOLDERS = {"node": "cuas_node", "drivers": "cuas_node.drivers", "calibration": "cuas_node.calibration"}


def _packages_on_disk() -> set[str]:
    found = set()
    for folder, package in FOLDERS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            name = ".".join([package, *rel.parts])
            if not (folder == "node" and rel.parts[:1] in (("drivers",), ("calibration",))):
                found.add(name)
    return found


def test_every_folder_with_code_is_a_listed_package() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {"cuas_node": "node", **{v: k for k, v in FOLDERS.items() if k != "node"}}
    assert set(config["packages"]) == _packages_on_disk()
    stray = [p for f in FOLDERS for p in (REPO / f).rglob("*.py") if not (p.parent / "__init__.py").exists()]
    assert not stray, f"modules outside any package (add an __init__.py): {stray}"


def test_wheel_holds_exactly_one_top_level_package(tmp_path: Path) -> None:
    # Built from a copy of the sources: setuptools builds in place and would leave build/ behind.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for folder in FOLDERS:
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = tmp_path.glob("cuas_node-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"cuas_node"}
    for data in (
        "cuas_node/py.typed",
        "cuas_node/drivers/sim/scenarios/demo.toml",
        "cuas_node/drivers/radar/ti_profiles/iwr6843_drone.cfg",
        "cuas_node/drivers/acoustic/detector_weights.json",
        "cuas_node/web/static/index.html",  # the live view's page, served from the package
        "cuas_node/web/static/app.js",
        "cuas_node/web/static/style.css",
    ):
        assert data in names
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "cuas-node = cuas_node.cli:main" in entry


@pytest.mark.parametrize("name", ["node", "drivers", "calibration"])
def test_the_folders_are_not_importable_as_packages(name: str, tmp_path: Path) -> None:
    """Outside the repository (where a folder would be found on the path), only cuas_node exists."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import cuas_node.cli\ntry:\n import {name}\nexcept ImportError: print('absent')",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "absent", result.stderr
