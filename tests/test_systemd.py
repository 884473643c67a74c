"""The unit, the udev rules, the example config and install.sh, checked without touching the system.

`systemd-analyze verify` exits 0 on most problems (an unknown key, a value it cannot parse) and only
prints a warning, so any output at all is a failure here; a planted typo proves the check bites.
Install `systemd` (Debian) for these; they are skipped with the reason when it is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cuas_node.config import load_config

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "systemd"
UNIT = SYSTEMD / "cuas-node.service"
RULES = SYSTEMD / "99-cuas-node.rules"
INSTALL = SYSTEMD / "install.sh"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze not installed (apt-get install -y systemd)"
)
MAX_EXPOSURE = 2.0


def _unit_for_check(tmp_path: Path, extra: str = "") -> Path:
    """The unit with ExecStart pointed at a binary that exists here (verify checks it)."""
    text = re.sub(r"^ExecStart=.*$", "ExecStart=/bin/true", UNIT.read_text(), flags=re.M)
    text = text.replace("[Service]\n", f"[Service]\n{extra}", 1)
    path = tmp_path / "cuas-node.service"
    path.write_text(text)
    return path


def _verify(unit: Path) -> str:
    assert ANALYZE is not None
    done = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    out = (done.stdout + done.stderr).strip()
    return out if out or done.returncode == 0 else f"exit status {done.returncode}"


@needs_analyze
def test_unit_verifies_without_any_warning(tmp_path: Path) -> None:
    assert _verify(_unit_for_check(tmp_path)) == ""


@needs_analyze
def test_verify_check_catches_a_typo(tmp_path: Path) -> None:
    out = _verify(_unit_for_check(tmp_path, extra="ProtectSytem=strict\nWatchdogSec=soon\n"))
    assert "Unknown key" in out or "unknown" in out.lower()
    assert "Failed to parse" in out


@needs_analyze
def test_security_exposure_is_low_and_documented(tmp_path: Path) -> None:
    assert ANALYZE is not None
    done = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(_unit_for_check(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for cuas-node\.service: ([0-9.]+)", done.stdout + done.stderr)
    assert match, done.stdout + done.stderr
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE
    docs = (ROOT / "docs" / "deployment.md").read_text()
    assert f"exposure level {exposure}" in docs, "docs/deployment.md must quote the current figure"


def _unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_contract() -> None:
    s = _unit_settings()
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"] == ["main"]
    assert s["Restart"] == ["on-failure"]
    assert s["RestartPreventExitStatus"] == ["78"]
    assert s["WatchdogSec"] and s["User"] == ["cuas"]
    for target in ("network-online.target", "time-sync.target"):
        assert target in s["After"][0] and target in s["Wants"][0]
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "DevicePolicy": "closed",
    }.items():
        assert s[key] == [value], key
    allowed = " ".join(s["DeviceAllow"])
    for dev in ("ttyACM", "ttyUSB", "ttyAMA", "ttyS", "spidev", "gpiochip", "/dev/gpiomem"):
        assert dev in allowed
    assert s["ExecStart"][0].startswith("/opt/cuas-node/venv/bin/cuas-node run")


def _bytes(value: str) -> int:
    """systemd's sizes: a number with an optional K/M/G/T suffix (base 1024)."""
    match = re.fullmatch(r"([0-9]+)([KMGT]?)", value.strip())
    assert match, f"not a plain size: {value!r} (percentages depend on the Pi; give bytes)"
    return int(match.group(1)) * 1024 ** " KMGT".index(match.group(2) or " ")


def _seconds(value: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(ms|s|min)?", value.strip())
    assert match, value
    return float(match.group(1)) * {"ms": 0.001, "s": 1.0, "min": 60.0, None: 1.0}[match.group(2)]


def test_unit_limits_memory_tasks_and_log_rate() -> None:
    """A flood or a leak must not take the Pi (1 GB) down with the node: memory, threads and log
    lines are bounded, with values that leave the node (~150 MB, ~20 threads) its headroom."""
    s = _unit_settings()
    mib = 1024 * 1024
    high, top = _bytes(s["MemoryHigh"][0]), _bytes(s["MemoryMax"][0])
    assert 200 * mib <= high < top <= 512 * mib, (high, top)
    assert top - high >= 50 * mib  # room to reclaim (slow down) before the OOM kill
    assert 32 <= int(s["TasksMax"][0]) <= 256
    assert 1.0 <= _seconds(s["LogRateLimitIntervalSec"][0]) <= 300.0
    assert 100 <= int(s["LogRateLimitBurst"][0]) <= 10000
    for key in ("MemoryHigh", "MemoryMax", "TasksMax", "LogRateLimitIntervalSec", "LogRateLimitBurst"):
        assert len(s[key]) == 1, f"{key} set twice"
    assert "OPENBLAS_NUM_THREADS=1" in s["Environment"]  # no BLAS pool spinning beside the node's threads
    text = UNIT.read_text()
    assert "cgroup_enable=memory" in text  # the Pi kernel's memory cgroup caveat stays next to them


def test_udev_rules_are_well_formed_and_name_the_sensors() -> None:
    token = re.compile(r'\s*([A-Z_]+(?:\{[^}]+\})?)\s*(==|!=|\+=|-=|:=|=)\s*"([^"]*)"\s*(,|$)')
    known = {"ACTION", "SUBSYSTEM", "KERNEL", "ENV", "ATTRS", "SYMLINK", "GROUP", "MODE", "GOTO", "LABEL"}
    labels, gotos = set(), set()
    for n, line in enumerate(RULES.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pos = 0
        while pos < len(line):
            m = token.match(line, pos)
            assert m, f"line {n}: cannot parse at {line[pos:]!r}"
            key = m.group(1).split("{")[0]
            assert key in known, f"line {n}: unexpected key {key}"
            if key == "LABEL":
                labels.add(m.group(3))
            if key == "GOTO":
                gotos.add(m.group(3))
            pos = m.end()
    assert gotos <= labels
    text = RULES.read_text()
    for name in ("cuas-radar-cli", "cuas-radar-data", "cuas-gps", "cuas-remoteid"):
        assert f'SYMLINK+="{name}' in text
    for vid_pid in (("0451", "bef3"), ("10c4", "ea70"), ("10c4", "ea60"), ("1a86", "7523"), ("0403", "6001")):
        assert f'ENV{{ID_VENDOR_ID}}=="{vid_pid[0]}", ENV{{ID_MODEL_ID}}=="{vid_pid[1]}' in text


def test_example_config_is_valid() -> None:
    config = load_config(SYSTEMD / "config.example.toml")
    ports = {getattr(s, "port", None) for s in config.sensors}
    assert {"/dev/cuas-radar-data", "/dev/cuas-gps"} <= ports


def _install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_install_into_a_root_prefix_is_idempotent_and_uninstall_keeps_config_and_data(tmp_path: Path) -> None:
    first = _install("--root", str(tmp_path))
    assert first.returncode == 0, first.stderr
    conf = tmp_path / "etc/cuas-node/config.toml"
    for path in (
        conf,
        tmp_path / "etc/cuas-node/config.example.toml",
        tmp_path / "etc/systemd/system/cuas-node.service",
        tmp_path / "etc/udev/rules.d/99-cuas-node.rules",
        tmp_path / "var/lib/cuas-node/spool",
    ):
        assert path.exists(), path
    assert oct(conf.stat().st_mode & 0o777) == "0o640"
    assert "systemctl enable cuas-node.service" in first.stdout
    assert "pip install" in first.stdout  # printed, not run, under --root
    conf.write_text(conf.read_text() + "# edited by the technician\n")
    (tmp_path / "var/lib/cuas-node/mqtt-seq.json").write_text("{}")

    second = _install("--root", str(tmp_path))
    assert second.returncode == 0, second.stderr
    assert "keeping the existing" in second.stdout
    assert conf.read_text().endswith("# edited by the technician\n")

    gone = _install("--root", str(tmp_path), "--uninstall")
    assert gone.returncode == 0, gone.stderr
    assert not (tmp_path / "etc/systemd/system/cuas-node.service").exists()
    assert not (tmp_path / "etc/udev/rules.d/99-cuas-node.rules").exists()
    assert not (tmp_path / "opt/cuas-node").exists()
    assert conf.exists() and (tmp_path / "var/lib/cuas-node/mqtt-seq.json").exists()


def test_install_settles_the_owner_and_mode_of_secret_files(tmp_path: Path) -> None:
    """One owner and mode for every secret, the one docs/deployment.md and doctor name."""
    conf_dir = tmp_path / "etc/cuas-node"
    conf_dir.mkdir(parents=True)
    password = conf_dir / "mqtt-password"
    password.write_text("pw\n")
    password.chmod(0o644)
    done = _install("--root", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert oct(password.stat().st_mode & 0o777) == "0o640"
    assert f"would run: chown root:cuas {password}" in done.stdout
    assert not (conf_dir / "command-hmac.key").exists()  # absent secrets are not invented
    docs = (ROOT / "docs" / "deployment.md").read_text()
    for name in ("mqtt-password", "command-hmac.key"):
        assert name in INSTALL.read_text() and name in docs
    assert "root:cuas 0640" in docs


def test_install_dry_run_changes_nothing(tmp_path: Path) -> None:
    done = _install("--dry-run", "--root", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == []
    assert "would run: install -m 0640" in done.stdout


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_install_script_is_shellcheck_clean() -> None:
    done = subprocess.run(
        ["shellcheck", str(INSTALL)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout
