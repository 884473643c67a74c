"""Every config key can be set from the environment, as a technician types it.

Environment values are strings (`1`, `true`, `0.5`, `/var/lib/x`); lists, tuples and tables are
JSON, and a list of tables (`sensors`, `zones`) is one variable holding the whole list. A key whose
type cannot take its value's string form (an int `Literal` did not: `CUAS_MQTT__QOS=1` was refused)
is a bug, so this module walks the Config model tree and sets every leaf key in turn: its default
(when it has one) and a value different from it (proving the variable arrived), each checked back
typed and equal. The walk refuses a type it cannot sample, so a future key cannot escape it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import pytest
from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from cuas_node.config import (
    ENV_DELIMITER,
    ENV_PREFIX,
    IDENT_PATTERN,
    SENSOR_KINDS,
    Config,
    ConfigError,
    build_config,
)
from cuas_node.config_outputs import COT_URL_PATTERN, DISCOVERY_PREFIX_PATTERN, HOST_PATTERN, UUID4_PATTERN
from cuas_node.config_sections import TILES_URL_PATTERN

MIN_KEYS = 150  # the walk visits 152 keys today; far fewer means the walk broke
FILE_NODE_ID = "file-node"  # the config file's node id; the environment must override it
FILE_TEXT = f'[node]\nid = "{FILE_NODE_ID}"\n'

# A sample for every `pattern` a str key has. A new pattern fails the walk until it gets one here.
PATTERN_SAMPLES = {
    IDENT_PATTERN: ["mast-7", "gps_2.b"],
    r"^[^#+\s]+[^/#+\s]$": ["site-a/cuas"],  # mqtt.topic_root
    r"^D([0-9]|1[0-9]|2[0-7])$": ["D5", "D26"],  # gpio pins
    r"^[ABEFRL]+$": ["AF"],  # fpv bands
    TILES_URL_PATTERN: ["https://tiles.example.org/{z}/{x}/{y}.png"],  # web.tiles_url
    COT_URL_PATTERN: ["tcp://tak.example:8087", "udp://239.2.3.1:6969", "tcp://[2001:db8::5]:8087"],
    HOST_PATTERN: ["apex.example", "10.0.0.5", "2001:db8::7"],  # outputs.sapient.host
    UUID4_PATTERN: ["2008894a-d5b3-4df3-a22e-a48caa701ad6"],  # outputs.sapient.node_id
    DISCOVERY_PREFIX_PATTERN: ["homeassistant", "site-b/ha_2"],  # outputs.homeassistant.discovery_prefix
}
# Values a key needs beside it (a model validator ties them): the other keys of the same table.
NEEDS = {
    "mqtt.commands.enabled": {"allow_clients": ["ops-console"]},
    "sensors[radar].range_rate": {"range_rate_sigma_mps": 0.5},
    "web.tls_cert_file": {"tls_key_file": Path("/var/lib/cuas-test/web.key")},
    "web.tls_key_file": {"tls_cert_file": Path("/var/lib/cuas-test/web.crt")},
    "outputs.sapient.tls_ca_file": {"tls": True},
    "outputs.sapient.tls_cert_file": {"tls": True, "tls_key_file": Path("/var/lib/cuas-test/sapient.key")},
    "outputs.sapient.tls_key_file": {"tls": True, "tls_cert_file": Path("/var/lib/cuas-test/sapient.crt")},
}


class Unsampleable(TypeError):
    """The walk met a type it has no sample for: teach `_other` (below) about it."""


class AsJson(dict[str, Any]):
    """A table set whole, as JSON in its own variable (`CUAS_NODE__POSITION='{...}'`)."""


@dataclass(frozen=True)
class Case:
    key: str  # the TOML path, with [kind] for an element of a list of tables: sensors[nmea].port
    loc: tuple[str | int, ...]  # where to read it back from the Config
    data: dict[str, Any]  # TOML-shaped overrides (typed values), turned into CUAS_* variables
    expected: Any
    label: str  # "default" (the key's default) or "other" (anything else)


# --- sampling ------------------------------------------------------------------------------------


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _unwrap(annotation: Any) -> Any:
    """`Annotated[X, ...]` → X; `X | None` → X."""
    if get_origin(annotation) is Annotated:
        return _unwrap(get_args(annotation)[0])
    members = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) in (Union, types.UnionType) and len(members) == 1:
        return _unwrap(members[0])
    return annotation


def _list_models(annotation: Any) -> list[type[BaseModel]]:
    """The table models of a list of tables (`list[ZoneSection]`, the sensor union), else []."""
    if get_origin(annotation) is not list:
        return []
    element = _unwrap(get_args(annotation)[0])
    members = get_args(element) if get_origin(element) in (Union, types.UnionType) else (element,)
    models = [m for m in members if _is_model(m)]
    if models and len(models) != len(members):
        raise Unsampleable(f"a list mixing tables and values: {annotation!r}")
    return models


def _contains(annotation: Any, value: Any) -> bool:
    if value is None:
        return False
    if get_origin(annotation) is Literal:
        return value in get_args(annotation)
    return isinstance(value, get_origin(annotation) or annotation)


def _number(kind: type, default: Any, field: FieldInfo | None, key: str) -> Any:
    lo = hi = None
    lo_strict = hi_strict = False
    for meta in field.metadata if field else ():
        if isinstance(meta, annotated_types.Ge):
            lo = meta.ge
        elif isinstance(meta, annotated_types.Gt):
            lo, lo_strict = meta.gt, True
        elif isinstance(meta, annotated_types.Le):
            hi = meta.le
        elif isinstance(meta, annotated_types.Lt):
            hi, hi_strict = meta.lt, True
        elif isinstance(meta, annotated_types.BaseMetadata):
            raise Unsampleable(f"{key}: constraint {meta!r} is not understood by the sampler")

    def valid(v: Any) -> bool:
        above = lo is None or (v > lo if lo_strict else v >= lo)
        below = hi is None or (v < hi if hi_strict else v <= hi)
        return above and below and v != default

    step = 1 if kind is int else 0.5
    candidates: list[Any] = []
    if default is not None:
        candidates += [default + step, default - step]
    if lo is not None:
        candidates.append(lo + step)
    if hi is not None:
        candidates.append(hi - step)
    if lo is not None and hi is not None:
        candidates.append((lo + hi) // 2 if kind is int else (lo + hi) / 2)
    candidates.append(kind(1) + step)
    for value in candidates:
        if valid(kind(value)):
            return kind(value)
    raise Unsampleable(f"{key}: no {kind.__name__} found within its constraints")


def _other(annotation: Any, field: FieldInfo | None, default: Any, key: str) -> list[Any]:
    """Valid values of `annotation` other than `default` (one per member of a union)."""
    name = key.rsplit(".", 1)[-1].strip("[]")
    annotation = _unwrap(annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):  # e.g. a preset name or explicit positions
        members = [m for m in args if m is not type(None)]
        return [v for m in members for v in _other(m, field, default if _contains(m, default) else None, key)]
    if annotation is bool:
        return [not default if default is not None else True]
    if origin is Literal:
        return [next(c for c in args if c != default)] if any(c != default for c in args) else []
    if annotation in (int, float):
        return [_number(annotation, default, field, key)]
    if annotation is str:
        patterns = [m.pattern for m in (field.metadata if field else ()) if getattr(m, "pattern", None)]
        if not patterns:
            return [f"cuas-test-{name}"]
        if patterns[0] not in PATTERN_SAMPLES:
            raise Unsampleable(f"{key}: no sample for pattern {patterns[0]!r}: add one to PATTERN_SAMPLES")
        for sample in PATTERN_SAMPLES[patterns[0]]:
            assert re.fullmatch(patterns[0], sample), (key, sample)
        return [next(s for s in PATTERN_SAMPLES[patterns[0]] if s != default)]
    if annotation is Path:
        return [Path(f"/var/lib/cuas-test/{name}")]
    if origin is tuple and args and args[-1] is not Ellipsis:  # fixed length: vary each element
        defaults = default if default is not None else (None,) * len(args)
        return [tuple(_other(a, None, d, key)[0] for a, d in zip(args, defaults, strict=True))]
    if origin in (tuple, list) and not _list_models(annotation):
        element = _other(args[0], None, None, key)[0]
        min_length = max(
            [m.min_length for m in (field.metadata if field else ()) if hasattr(m, "min_length")] or [1]
        )
        return [origin([element] * min_length)]
    raise Unsampleable(f"{key}: no sample for type {annotation!r}: teach tests/test_config_env.py's _other")


def _samples(field: FieldInfo, key: str) -> list[tuple[str, Any]]:
    """(label, value): the key's default when it has one, then the other values."""
    default = field.get_default(call_default_factory=True)
    has_default = default is not PydanticUndefined and default is not None
    values = [("default", default)] if has_default else []
    values += [("other", v) for v in _other(field.annotation, field, default if has_default else None, key)]
    return values


def _minimal(model: type[BaseModel]) -> dict[str, Any]:
    """The required keys of a table, each with a sample: the smallest valid table."""
    data: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if field.is_required():
            annotation = _unwrap(field.annotation)
            data[name] = _minimal(annotation) if _is_model(annotation) else _samples(field, name)[0][1]
    return data


# --- the walk ------------------------------------------------------------------------------------


def _list_tag(model: type[BaseModel]) -> str:
    kind = model.model_fields.get("kind")
    return f"[{get_args(kind.annotation)[0]}]" if kind is not None else "[]"


def walk(model: type[BaseModel], prefix: str = "") -> Iterator[Case]:
    """A case per sample of every leaf key under `model`, with `data` a valid table of `model`."""
    base = _minimal(model)
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = _unwrap(field.annotation)
        if _is_model(annotation):
            for case in walk(annotation, f"{key}."):
                yield Case(case.key, (name, *case.loc), {**base, name: case.data}, case.expected, case.label)
            if field.default is None:  # an optional table: also set whole, as JSON
                whole = _minimal(annotation)
                yield Case(key, (name,), {**base, name: AsJson(whole)}, annotation(**whole), "json")
        elif models := _list_models(annotation):
            for member in models:
                for case in walk(member, f"{key}{_list_tag(member)}."):
                    loc = (name, 0, *case.loc)
                    yield Case(case.key, loc, {**base, name: [case.data]}, case.expected, case.label)
        else:
            for label, value in _samples(field, key):
                data = {**base, **NEEDS.get(key, {}), name: value}
                yield Case(key, (name,), data, value, label)


def every_key_at_once(
    model: type[BaseModel], pick: str, prefix: str = ""
) -> tuple[dict[str, Any], list[Case]]:
    """One table setting every key under `model` (its default with pick="default" where it has one,
    else another value); a list of tables gets one element per table kind, with distinct ids."""
    data: dict[str, Any] = {}
    checks: list[Case] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = _unwrap(field.annotation)
        if _is_model(annotation):
            data[name], inner = every_key_at_once(annotation, pick, f"{key}.")
            checks += [Case(c.key, (name, *c.loc), {}, c.expected, pick) for c in inner]
        elif models := _list_models(annotation):
            data[name] = []
            for index, member in enumerate(models):
                element, inner = every_key_at_once(member, pick, f"{key}{_list_tag(member)}.")
                if "id" in element:
                    element["id"] = f"{element['id']}-{index}"  # ids in a list must be unique
                    inner = [
                        c if c.loc != ("id",) else Case(c.key, c.loc, {}, element["id"], pick) for c in inner
                    ]
                data[name].append(element)
                checks += [Case(c.key, (name, index, *c.loc), {}, c.expected, pick) for c in inner]
        else:
            samples = dict(_samples(field, key))
            value = samples.get(pick, samples.get("other", samples.get("default")))
            data[name] = value
            checks.append(Case(key, (name,), {}, value, pick))
    return data, checks


# --- turning data into CUAS_* variables and reading values back -------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def env_text(value: Any) -> str:
    """What a technician types: `true`, `1`, `5` (a float that is whole), `0.5`, a path, JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(_jsonable(value))
    return str(value)


def to_env(model: type[BaseModel], data: dict[str, Any], parts: tuple[str, ...] = ()) -> dict[str, str]:
    """Nested tables become `CUAS_A__B__KEY` variables; lists and AsJson tables are one JSON variable."""
    env: dict[str, str] = {}
    for name, value in data.items():
        annotation = _unwrap(model.model_fields[name].annotation)
        if _is_model(annotation) and isinstance(value, dict) and not isinstance(value, AsJson):
            env.update(to_env(annotation, value, (*parts, name)))
        else:
            env[ENV_PREFIX + ENV_DELIMITER.join((*parts, name)).upper()] = env_text(value)
    return env


def read_back(config: Config, loc: tuple[str | int, ...]) -> Any:
    value: Any = config
    for step in loc:
        value = value[step] if isinstance(step, int) else getattr(value, step)
    return value


def same_typed(got: Any, expected: Any) -> bool:
    """Equal and of the same type, all the way down (5 is not 5.0, "1" is not 1, a list not a tuple)."""
    if isinstance(expected, (list, tuple)):
        return (
            type(got) is type(expected)
            and len(got) == len(expected)
            and all(same_typed(g, e) for g, e in zip(got, expected, strict=True))
        )
    return type(got) is type(expected) and got == expected


def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def _cli_env(extra: dict[str, str]) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.upper().startswith(ENV_PREFIX)}, **extra}


def _config_check(path: Path, env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cuas_node.cli", "config", "check", *options, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_cli_env(env),
    )


CASES = list(walk(Config))
KEYS = sorted({c.key for c in CASES})


# --- the tests -----------------------------------------------------------------------------------


def test_the_walk_covers_every_key() -> None:
    assert len(KEYS) >= MIN_KEYS, f"the walk visited only {len(KEYS)} keys: {KEYS}"
    assert {re.split(r"[.[]", k)[0] for k in KEYS} == set(Config.model_fields), "a section was skipped"
    kinds = {m.group(1) for k in KEYS if (m := re.match(r"sensors\[([^\]]+)\]\.", k))}
    assert kinds == set(SENSOR_KINDS), "every sensor kind is walked"
    proven = {c.key for c in CASES if c.label != "default"}
    assert proven == set(KEYS), f"keys set only to their default: {set(KEYS) - proven}"


@pytest.mark.parametrize("case", CASES, ids=[f"{c.key}:{c.label}" for c in CASES])
def test_every_key_from_the_environment(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_environ(monkeypatch)
    env = to_env(Config, case.data)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        config = build_config({"node": {"id": FILE_NODE_ID}}, "test")
    except ConfigError as exc:
        pytest.fail(f"{case.key} refused from {env}:\n{exc.render()}", pytrace=False)
    got = read_back(config, case.loc)
    assert same_typed(got, case.expected), f"{case.key} from {env}: got {got!r}, want {case.expected!r}"


@pytest.mark.parametrize("pick", ["default", "other"])
def test_every_key_at_once_through_the_cli(
    pick: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All keys in one environment, once in-process (each read back typed) and once through
    `cuas-node config check` as a technician runs it."""
    data, checks = every_key_at_once(Config, pick)
    env = to_env(Config, data)
    assert {c.key for c in checks} == {c.key for c in CASES if c.label != "json"}
    assert len(env) > 60, env
    path = tmp_path / "config.toml"
    path.write_text(FILE_TEXT)

    _clean_environ(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = build_config({"node": {"id": FILE_NODE_ID}}, "test")
    got = [(c.key, read_back(config, c.loc), c.expected) for c in checks]
    assert not [g for g in got if not same_typed(g[1], g[2])], "(key, got, wanted)"

    # --keys-only: the sampled paths (/var/lib/cuas-test/...) name no real key, password or TLS file.
    result = _config_check(path, env, "--keys-only")
    assert result.returncode == 0, result.stderr
    mqtt = config.mqtt
    summary = f"OK: node {data['node']['id']}, {len(SENSOR_KINDS)} sensor(s), broker {mqtt.host}:{mqtt.port}"
    assert summary in result.stdout


@pytest.mark.parametrize("text", ["0", "1", "2", " 2 "])
def test_mqtt_qos_from_the_environment(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reported bug: CUAS_MQTT__QOS=1 was refused with "Input should be 0, 1 or 2"."""
    _clean_environ(monkeypatch)
    monkeypatch.setenv("CUAS_MQTT__QOS", text)
    assert same_typed(build_config({"node": {"id": "n"}}, "test").mqtt.qos, int(text))


@pytest.mark.parametrize("text", ["3", "-1", "one", "1.0", ""])
def test_mqtt_qos_refuses_other_values_readably(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_environ(monkeypatch)
    monkeypatch.setenv("CUAS_MQTT__QOS", text)
    with pytest.raises(ConfigError) as info:
        build_config({"node": {"id": "n"}}, "test")
    assert info.value.problems == ["mqtt.qos (env CUAS_MQTT__QOS): Input should be 0, 1 or 2"]


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("CUAS_SENSORS", "[{", "sensors"),
        ("CUAS_MQTT", "{bad", "mqtt"),
        ("CUAS_ZONES", "", "zones"),
        ("CUAS_MQTT__COMMANDS__ALLOW_CLIENTS", "ops-console", "mqtt.commands.allow_clients"),
        ("cuas_node__position", "{lat: 52}", "node.position"),  # names are case-insensitive
        ("CUAS_MQTT", '{"host": "b", "password": "hunter2-secret', "mqtt"),
    ],
)
def test_malformed_json_is_a_config_error_naming_the_variable(
    name: str, value: str, key: str, tmp_path: Path
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(FILE_TEXT)
    result = _config_check(path, {name: value})
    assert result.returncode == 78, result.stderr
    assert "Traceback" not in result.stderr
    assert "configuration error" in result.stderr
    assert f"{key} (env {name.upper()}): not valid JSON" in result.stderr
    assert "hunter2" not in result.stderr  # a value is never echoed: it may hold a secret


DEEP = "[" * 5000  # past Python's recursion limit: json.loads raises RecursionError, not a ValueError


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"CUAS_SENSORS": DEEP}, "sensors (env CUAS_SENSORS): not valid JSON (nested too deeply)"),
        ({"CUAS_MQTT": '{"commands": ' + DEEP}, "mqtt (env CUAS_MQTT): not valid JSON (nested too deeply)"),
        (
            {"CUAS_MQTT__COMMANDS__ALLOW_CLIENTS": DEEP},
            "mqtt.commands.allow_clients (env CUAS_MQTT__COMMANDS__ALLOW_CLIENTS): not valid JSON",
        ),
        ({"CUAS_SENSORS": "null"}, "sensors (env CUAS_SENSORS): null cannot replace this key"),
        (
            {"CUAS_MQTT": "null", "CUAS_MQTT__HOST": "broker.example"},
            "mqtt (env CUAS_MQTT): null cannot replace this key",
        ),
        ({"CUAS_MQTT__COMMANDS": "{bad"}, "mqtt.commands (env CUAS_MQTT__COMMANDS): not valid JSON"),
        ({"CUAS_MQTT__TLS": "{bad"}, "mqtt.tls (env CUAS_MQTT__TLS): Input should be a valid boolean"),
        ({"CUAS_MQTT__TLS__CA": "1"}, "mqtt.tls (env CUAS_MQTT__TLS): Input should be a valid boolean"),
        ({"CUAS_MQTT": '{"tls": {bad}'}, "mqtt (env CUAS_MQTT): not valid JSON"),
    ],
    ids=[
        "deep-sensors",
        "deep-mqtt",
        "deep-allow-clients",
        "null-sensors",
        "null-mqtt-hides-host",
        "nested-table",
        "nested-bool",
        "below-a-bool",
        "nested-in-json",
    ],
)
def test_every_environment_parse_error_exits_78_naming_the_variable(
    env: dict[str, str], words: str, tmp_path: Path
) -> None:
    """Through the real CLI, as systemd runs it: never a traceback and exit 1 (a restart loop), never
    an OK that silently ignores a variable (`null` made pydantic-settings skip CUAS_SENSORS, and
    every CUAS_MQTT__* beside CUAS_MQTT)."""
    path = tmp_path / "config.toml"
    path.write_text(FILE_TEXT + '[[sensors]]\nkind = "nmea"\nid = "gps"\nport = "/dev/x"\n')
    for command in (["--keys-only"], []):
        result = _config_check(path, env, *command)
        assert result.returncode == 78, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert f"configuration error in {path}" in result.stderr
        assert words in result.stderr, result.stderr


def test_an_undecodable_value_still_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should pydantic-settings fail on a value the JSON scan does not flag, the message still names
    the variable (from the field in pydantic-settings' error), never the value."""
    import cuas_node.config as config_module

    _clean_environ(monkeypatch)
    monkeypatch.setattr(config_module, "_env_json_problems", lambda environ: [])
    monkeypatch.setenv("CUAS_SENSORS", '[{"secret-hunter2": ')
    with pytest.raises(ConfigError) as info:
        build_config({"node": {"id": "n"}}, "test")
    assert info.value.problems == [
        "sensors (env CUAS_SENSORS or CUAS_SENSORS__*): the value cannot be decoded (JSONDecodeError); "
        'lists and tables are written in JSON, e.g. ["a", "b"] or {"lat": 52.0, "lon": 4.3}'
    ]


def test_null_may_unset_an_optional_table(monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_environ(monkeypatch)
    monkeypatch.setenv("CUAS_NODE__POSITION", "null")
    config = build_config({"node": {"id": "n", "position": {"lat": 52.0, "lon": 4.3}}}, "test")
    assert config.node.position is None


def test_malformed_json_is_reported_beside_the_other_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    """An optional table's bad JSON is said once (not also as "Input should be a valid dictionary")."""
    _clean_environ(monkeypatch)
    monkeypatch.setenv("CUAS_NODE__POSITION", "52.0,4.3")
    monkeypatch.setenv("CUAS_MQTT__PORT", "eighty")
    with pytest.raises(ConfigError) as info:
        build_config({"node": {"id": "n"}}, "test")
    assert [p.split(":")[0] for p in info.value.problems] == [
        "node.position (env CUAS_NODE__POSITION)",
        "mqtt.port (env CUAS_MQTT__PORT)",
    ]


def test_the_documented_environment_examples_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    examples = re.findall(r"^(CUAS_\w+)='(.*)'$", doc, flags=re.MULTILINE)
    assert {name for name, _ in examples} >= {"CUAS_SENSORS", "CUAS_ZONES"}
    _clean_environ(monkeypatch)
    for name, value in examples:
        monkeypatch.setenv(name, value)
    config = build_config({"node": {"id": "n"}}, "test")
    assert [s.id for s in config.sensors] == ["gps"] and [z.id for z in config.zones] == ["runway"]


def test_the_walk_refuses_types_it_cannot_sample() -> None:
    """A future key of a new type (or constraint, or pattern) must fail this module, not slip past."""

    class Future(BaseModel):
        when: datetime

    class Table(BaseModel):
        weights: dict[str, float]

    class Stepped(BaseModel):
        n: Annotated[int, annotated_types.MultipleOf(3)]

    class Coded(BaseModel):
        code: str = Field(pattern=r"^[A-Z]{3}$")

    for model, complaint in (
        (Future, "no sample for type"),
        (Table, "no sample for type"),
        (Stepped, "constraint"),
        (Coded, "no sample for pattern"),
    ):
        with pytest.raises(Unsampleable, match=complaint):
            list(walk(model))
