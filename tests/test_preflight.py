"""`config check` refuses exactly what `run` refuses before it connects, in the same words.

The reported bug: `config check` said OK for a config whose HMAC key file was missing or short, or
whose password file was missing, and `run` then exited 78; a missing chirp profile or a state
directory that cannot be created even gave `run` a traceback and exit 1 (a systemd restart loop).
Both commands now call `cuas_node.preflight.preflight`; these tests run both as a technician does,
as subprocesses, against a broker port nobody listens on (`run` must stop before connecting).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cuas_node.config import Config, ConfigError, build_config
from cuas_node.preflight import (
    SECRET_MODE,
    Identity,
    directory_problem,
    is_loopback,
    plaintext_password,
    preflight,
    secret_file_issues,
    startup_problems,
)
from tests.conftest import free_port

KEY = "0123456789abcdef-shared-key"


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CUAS_")}
    return subprocess.run(
        [sys.executable, "-m", "cuas_node.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _config(tmp_path: Path, extra: str = "", mqtt: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[node]\nid = "pf-1"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\n{mqtt}\n{extra}'
    )
    return path


def _secret(path: Path, text: str, mode: int = SECRET_MODE) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def _load(path: Path) -> Config:
    from cuas_node.config import load_config

    return load_config(path)


# Each case: (what the config says, the words both commands must print). Files are made under tmp.
CASES = {
    "missing HMAC key file": (
        '[mqtt.commands]\nenabled = true\nhmac_key_file = "{tmp}/nokey"\n',
        "mqtt.commands.hmac_key_file (env CUAS_MQTT__COMMANDS__HMAC_KEY_FILE): {tmp}/nokey: cannot read",
    ),
    "short HMAC key": (
        '[mqtt.commands]\nenabled = true\nhmac_key_file = "{tmp}/short.key"\n',
        "mqtt.commands.hmac_key_file (env CUAS_MQTT__COMMANDS__HMAC_KEY_FILE): {tmp}/short.key: "
        "the key must be at least 16 bytes",
    ),
    "missing password file": (
        "",
        "mqtt.password_file (env CUAS_MQTT__PASSWORD_FILE): {tmp}/nopw: cannot read",
    ),
    "missing CA file": (
        "",
        "mqtt.ca_file (env CUAS_MQTT__CA_FILE): {tmp}/noca.pem: cannot read",
    ),
    "missing chirp profile": (
        '[[sensors]]\nkind = "ti-mmwave"\nid = "radar"\nport = "/dev/cuas-test-none"\n'
        'config_port = "/dev/cuas-test-none-cli"\ncfg_file = "{tmp}/nocfg.cfg"\n',
        "sensors[0] (env CUAS_SENSORS): sensor 'radar':",
    ),
    "missing reflector map": (
        '[[sensors]]\nkind = "ti-mmwave"\nid = "radar"\nport = "/dev/cuas-test-none"\n'
        'reflectors_file = "{tmp}/nomap.json"\n',
        "sensors[0] (env CUAS_SENSORS): sensor 'radar': reflectors_file {tmp}/nomap.json: cannot read it",
    ),
    "state dir under a file": (
        "",
        "node.state_dir (env CUAS_NODE__STATE_DIR): {tmp}/afile is not a directory",
    ),
}
MQTT = {
    "missing password file": 'username = "pf-1"\npassword_file = "{tmp}/nopw"',
    "missing CA file": 'tls = true\nca_file = "{tmp}/noca.pem"',
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_check_fails_exactly_where_run_fails(case: str, tmp_path: Path) -> None:
    extra, words = CASES[case]
    _secret(tmp_path / "short.key", "too-short")
    (tmp_path / "afile").write_text("")
    path = _config(tmp_path, extra.format(tmp=tmp_path), MQTT.get(case, "").format(tmp=tmp_path))
    if case == "state dir under a file":
        path.write_text(path.read_text().replace(str(tmp_path / "state"), str(tmp_path / "afile" / "state")))

    check = _cli("config", "check", str(path))
    started = time.monotonic()
    run = _cli("run", "--config", str(path))
    assert time.monotonic() - started < 30  # refused before connecting, not after retries

    assert check.returncode == 78, check.stderr + check.stdout
    assert run.returncode == 78, run.stderr
    assert "Traceback" not in check.stderr + run.stderr
    assert f"configuration error in {path}" in check.stderr
    assert words.format(tmp=tmp_path) in check.stderr, check.stderr
    assert run.stderr == check.stderr  # the same words, from the same function


def test_keys_only_skips_the_files(tmp_path: Path) -> None:
    path = _config(tmp_path, '[mqtt.commands]\nenabled = true\nhmac_key_file = "/nonexistent/key"\n')
    assert _cli("config", "check", str(path)).returncode == 78
    keys_only = _cli("config", "check", "--keys-only", str(path))
    assert keys_only.returncode == 0, keys_only.stderr
    assert "OK: node pf-1" in keys_only.stdout


def test_a_complete_config_passes_with_no_warning(tmp_path: Path) -> None:
    key = _secret(tmp_path / "command-hmac.key", KEY)
    password = _secret(tmp_path / "mqtt-password", "pw")
    path = _config(
        tmp_path,
        f'[mqtt.commands]\nenabled = true\nhmac_key_file = "{key}"\n'
        '[[sensors]]\nkind = "ti-mmwave"\nid = "radar"\nport = "/dev/cuas-test-none"\n'
        'config_port = "/dev/cuas-test-none-cli"\n',
        f'username = "pf-1"\npassword_file = "{password}"',
    )
    result = _cli("config", "check", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert preflight(_load(path), str(path)) == []


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        '[mqtt.commands]\nenabled = true\nhmac_key_file = "/nonexistent/key"\n',
        'username = "u"\npassword_file = "/nonexistent/pw"\ntls = true\ncert_file = "/nonexistent/c.pem"',
    )
    with pytest.raises(ConfigError) as info:
        preflight(_load(path), str(path))
    assert [p.split(" ")[0] for p in info.value.problems] == [
        "mqtt.password_file",
        "mqtt.cert_file",
        "mqtt.commands.hmac_key_file",
    ]
    assert info.value.source == str(path)


def test_a_world_readable_secret_is_a_warning_not_a_refusal(tmp_path: Path) -> None:
    key = _secret(tmp_path / "command-hmac.key", KEY, 0o644)
    path = _config(tmp_path, f'[mqtt.commands]\nenabled = true\nhmac_key_file = "{key}"\n')
    result = _cli("config", "check", str(path))
    assert result.returncode == 0, result.stderr
    assert "warning: mqtt.commands.hmac_key_file" in result.stderr
    assert "every user can read it" in result.stderr and "chmod 0640" in result.stderr
    assert KEY not in result.stderr + result.stdout


def test_run_logs_a_world_readable_secret_once_and_runs(tmp_path: Path) -> None:
    key = _secret(tmp_path / "command-hmac.key", KEY, 0o644)
    path = _config(tmp_path, f'[mqtt.commands]\nenabled = true\nhmac_key_file = "{key}"\n')
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CUAS_")}
    node = subprocess.Popen(
        [sys.executable, "-m", "cuas_node.cli", "run", "--config", str(path)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        time.sleep(3.0)
        assert node.poll() is None, "run must keep running with a loose secret"
    finally:
        node.send_signal(signal.SIGTERM)
        _, err = node.communicate(timeout=30)
    assert err.count("every user can read it") == 1, err
    assert KEY not in err


def test_ignored_keys_are_noted(tmp_path: Path) -> None:
    path = _config(tmp_path, mqtt='password_file = "/nonexistent/pw"\nca_file = "/nonexistent/ca.pem"')
    problems, notes = startup_problems(_load(path))
    assert problems == []
    assert any(n.startswith("mqtt.password_file") and "mqtt.username is not set" in n for n in notes)
    assert any(n.startswith("mqtt.ca_file") and "mqtt.tls" in n for n in notes)


# -- the rules, one by one ------------------------------------------------------------------------


def _stat(mode: int, uid: int = 0, gid: int = 1234) -> os.stat_result:
    return os.stat_result((stat.S_IFREG | mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


SERVICE = Identity(frozenset({0, 999}), frozenset({1234}))


@pytest.mark.parametrize(
    ("mode", "uid", "gid", "complaint"),
    [
        (0o640, 0, 1234, None),  # the documented root:cuas 0640
        (0o600, 999, 999, None),  # the service user's own 0600
        (0o400, 0, 0, None),
        (0o644, 0, 1234, "every user can read it"),
        (0o606, 999, 999, "every user can write it"),
        (0o660, 0, 1234, "can write it"),
        (0o640, 0, 4321, "group 4321 can read it"),
        (0o600, 4321, 1234, "owned by 4321"),
    ],
)
def test_secret_file_rules(mode: int, uid: int, gid: int, complaint: str | None) -> None:
    issues = secret_file_issues(_stat(mode, uid, gid), SERVICE)
    if complaint is None:
        assert issues == []
    else:
        assert any(complaint in issue for issue in issues), issues


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.5", False),
        ("broker.example", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_plaintext_password_only_when_a_password_leaves_the_machine(tmp_path: Path) -> None:
    password = _secret(tmp_path / "pw", "pw")

    def config(**mqtt: object) -> Config:
        return build_config({"node": {"id": "n"}, "mqtt": mqtt}, "test")

    remote = {"host": "10.0.0.5", "username": "n", "password_file": str(password)}
    assert "unencrypted" in (plaintext_password(config(**remote), {}) or "")
    assert plaintext_password(config(**remote, tls=True), {}) is None
    assert plaintext_password(config(**{**remote, "host": "127.0.0.1"}), {}) is None
    assert plaintext_password(config(host="10.0.0.5", username="n"), {}) is None  # no password at all
    credentials = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    (tmp_path / "mqtt-password").write_text("pw")
    assert plaintext_password(config(host="10.0.0.5", username="n"), credentials) is not None


def test_directory_problems(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    assert directory_problem(tmp_path) is None
    assert directory_problem(tmp_path / "new" / "deeper") is None  # creatable
    assert (directory_problem(tmp_path / "afile") or "").startswith(
        f"{tmp_path / 'afile'} is not a directory: "
    )
    assert "is not a directory" in (directory_problem(tmp_path / "afile" / "state") or "")
