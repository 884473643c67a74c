"""Config: every error at once, with its TOML path and env name, exit 78, secrets never echoed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cuas_node.config import ConfigError, build_config, load_config, resolve_config_path

GOOD = """
[node]
id = "mast-7"
position = { lat = 52.0, lon = 4.3, alt_m = 40.0 }

[mqtt]
host = "broker.local"
port = 8883
tls = true
username = "mast-7"
password_file = "/run/secrets/mqtt"

[[sensors]]
kind = "ti-mmwave"
id = "radar-n"
port = "/dev/cuas-radar-data"
config_port = "/dev/cuas-radar-cli"
mount = { yaw_deg = 12.5, pitch_deg = 3.0, offset_m = [0.0, 0.2, 2.5] }

[[sensors]]
kind = "nmea"
id = "gps"
port = "/dev/serial0"
"""

BAD = """
[node]
id = "has space"
colour = "hunter2-unknown-value"

[mqtt]
port = "not-a-port"
password = "hunter2-secret"
qos = 7

[[sensors]]
kind = "ti-mmwave"
id = "radar"
bogus = 1

[[sensors]]
kind = "lidar"
id = "x"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_good_config_loads(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, GOOD))
    assert config.node.id == "mast-7"
    assert config.mqtt.topic_root == "cuas/v1"
    assert [s.kind for s in config.sensors] == ["ti-mmwave", "nmea"]
    assert config.sensors[0].mount.offset_m == (0.0, 0.2, 2.5)


def test_every_error_reported_with_path_and_env_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, BAD))
    text = info.value.render()
    problems = info.value.problems
    expected = {
        "node.id (env CUAS_NODE__ID)",
        "node.colour (env CUAS_NODE__COLOUR): unknown key",
        "mqtt.port (env CUAS_MQTT__PORT)",
        "mqtt.password (env CUAS_MQTT__PASSWORD): unknown key",
        "mqtt.qos (env CUAS_MQTT__QOS)",
        "sensors[0].port (env CUAS_SENSORS): required key is missing",
        "sensors[0].bogus (env CUAS_SENSORS): unknown key",
        "sensors[1].kind (env CUAS_SENSORS)",
    }
    for fragment in expected:
        assert any(p.startswith(fragment) for p in problems), (fragment, problems)
    assert len(problems) == len(expected)
    assert "hunter2" not in text  # neither the secret nor the unknown key's value is echoed


def test_environment_overrides_file_and_is_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, GOOD)
    monkeypatch.setenv("CUAS_MQTT__PORT", "1884")
    monkeypatch.setenv("CUAS_MQTT__HOST", "127.0.0.1")
    config = load_config(path)
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.tls) == ("127.0.0.1", 1884, True)
    monkeypatch.setenv("CUAS_MQTT__PORT", "70000")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].startswith("mqtt.port (env CUAS_MQTT__PORT)")


def test_duplicate_sensor_ids_rejected() -> None:
    data = {
        "node": {"id": "n"},
        "sensors": [
            {"kind": "nmea", "id": "gps", "port": "/dev/a"},
            {"kind": "nmea", "id": "gps", "port": "/dev/b"},
        ],
    }
    with pytest.raises(ConfigError, match="used twice"):
        build_config(data, "test")


@pytest.mark.parametrize(
    ("fusion", "message"),
    [
        ({"confirm_m": 7, "confirm_n": 6}, "confirm_m must not exceed confirm_n"),
        ({"confirm_n": 33}, "confirm_n"),
    ],
)
def test_an_m_of_n_window_that_cannot_be_met_or_held_is_refused(fusion: dict[str, int], message: str) -> None:
    """m of n with m > n never confirms a track, and the window is a track's 32-bit word: both
    were accepted, and m > 32 crashed the first scan (`TrackManager.record`)."""
    data = {
        "node": {"id": "n"},
        "fusion": fusion,
        "sensors": [{"kind": "nmea", "id": "gps", "port": "/dev/a"}],
    }
    with pytest.raises(ConfigError, match=message):
        build_config(data, "test")


def test_config_path_resolution() -> None:
    assert resolve_config_path("a.toml", {}) == Path("a.toml")
    assert resolve_config_path(None, {"CUAS_CONFIG": "/x/c.toml"}) == Path("/x/c.toml")
    assert resolve_config_path(None, {}) == Path("/etc/cuas-node/config.toml")


@pytest.mark.parametrize("text", [BAD, "[node\nid=", None])
def test_cli_exits_78_with_readable_errors(tmp_path: Path, text: str | None) -> None:
    path = tmp_path / "missing.toml" if text is None else _write(tmp_path, text)
    result = subprocess.run(
        [sys.executable, "-m", "cuas_node.cli", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 78, result.stderr
    assert "configuration error" in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cuas_node.cli", "config", "check", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_config_check_ok(tmp_path: Path) -> None:
    """GOOD names a password file that exists on its node, not here: `--keys-only` checks the keys
    alone; the full check (the default, what `run` checks) needs the file (tests/test_preflight.py)."""
    path = _write(tmp_path, GOOD)
    result = _check("--keys-only", str(path))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    refused = _check(str(path))
    assert refused.returncode == 78
    assert (
        "mqtt.password_file (env CUAS_MQTT__PASSWORD_FILE): /run/secrets/mqtt: cannot read" in refused.stderr
    )

    secret = tmp_path / "mqtt-password"
    secret.write_text("pw\n")
    secret.chmod(0o640)
    text = GOOD.replace("/run/secrets/mqtt", str(secret))
    text = text.replace('id = "mast-7"', f'id = "mast-7"\nstate_dir = "{tmp_path / "state"}"')
    result = _check(str(_write(tmp_path, text)))
    assert result.returncode == 0, result.stderr
    assert "OK: node mast-7, 2 sensor(s), broker broker.local:8883" in result.stdout


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b'[node]\nid = "\xff"\n', "not UTF-8 text (byte 14 cannot be decoded)"),
        (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
    ],
    ids=["not-utf8", "deep-nesting"],
)
def test_an_unreadable_file_is_a_config_error_not_a_traceback(
    tmp_path: Path, content: bytes, words: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    result = _check("--keys-only", str(path))
    assert result.returncode == 78, result.stderr
    assert "Traceback" not in result.stderr
    assert f"configuration error in {path}" in result.stderr and words in result.stderr


def test_every_config_key_is_documented() -> None:
    """The config keys are a public contract: each one must appear in docs/config.md."""
    import re
    import typing

    from pydantic import BaseModel

    import cuas_node.config as c

    doc = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    missing: list[str] = []

    def walk(model: type[BaseModel], path: str) -> None:
        for name, field in model.model_fields.items():
            if not re.search(rf"[`\[{{ ,]{re.escape(name)}[`\], }}]", doc):
                missing.append(f"{path}{name}")
            for arg in typing.get_args(field.annotation) or (field.annotation,):
                for inner in typing.get_args(arg) or (arg,):
                    if isinstance(inner, type) and issubclass(inner, BaseModel):
                        walk(inner, f"{path}{name}.")

    walk(c.Config, "")
    for sensor in (
        c.NmeaSensor,
        c.TiMmwaveSensor,
        c.GenericRadarSensor,
        c.RemoteIdSensor,
        c.FpvRx5808Sensor,
        c.AcousticArraySensor,
    ):
        walk(sensor, f"sensors[{sensor.__name__}].")
    assert not missing, f"undocumented config keys: {missing}"


def test_every_environment_variable_is_documented() -> None:
    """Each key's `CUAS_*` variable is in docs/config.md; a list of tables is one variable (JSON)."""
    import typing

    from pydantic import BaseModel

    import cuas_node.config as c

    doc = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    missing: list[str] = []

    def walk(model: type[BaseModel], parts: tuple[str, ...]) -> None:
        for name, field in model.model_fields.items():
            env = c.ENV_PREFIX + c.ENV_DELIMITER.join((*parts, name)).upper()
            members = [a for a in typing.get_args(field.annotation) if a is not type(None)]
            table = members[0] if typing.get_origin(field.annotation) is not list and members else None
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                walk(field.annotation, (*parts, name))  # a section: its keys have variables of their own
                continue
            if f"`{env}`" not in doc:  # a value, a list (of tables too: JSON), an optional table
                missing.append(env)
            if isinstance(table, type) and issubclass(table, BaseModel):
                walk(table, (*parts, name))  # an optional table's keys can also be set one by one

    walk(c.Config, ())
    assert not missing, f"environment variables missing from docs/config.md: {missing}"
    assert "CUAS_SENSORS='[" in doc and "CUAS_ZONES='[" in doc  # the JSON form, by example


def test_pattern_and_list_errors_say_what_is_expected_in_words() -> None:
    """A technician gets the form a value must have, not the regular expression that checks it,
    and `[outputs.cot]` written as a single table is told to use `[[outputs.cot]]`."""
    cases = [
        ({"node": {"id": "x y"}}, "node.id (env CUAS_NODE__ID): not of the expected form: 1-64 letters"),
        (
            {"node": {"id": "n"}, "outputs": {"cot": [{"url": "http://tak:8087"}]}},
            "outputs.cot[0].url (env CUAS_OUTPUTS__COT): not of the expected form: udp://HOST:PORT",
        ),
        (
            {"node": {"id": "n"}, "outputs": {"cot": {"url": "udp://239.2.3.1:6969"}}},
            "outputs.cot (env CUAS_OUTPUTS__COT): a list of tables: write [[outputs.cot]], not [outputs.cot]",
        ),
    ]
    for data, expected in cases:
        with pytest.raises(ConfigError) as caught:
            build_config(data, "t")
        assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems
        assert not any("match pattern" in p for p in caught.value.problems)
