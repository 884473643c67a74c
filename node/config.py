"""Node configuration: one TOML file plus `CUAS_*` environment overrides.

Why a custom error path: a technician on a mast needs *every* mistake in one go, each named by the
TOML key they typed and the environment variable that would override it, and must never see a
secret echoed back (pydantic's default messages print `input_value`). Exit status 78 (EX_CONFIG)
tells systemd not to restart-loop on a bad file (`RestartPreventExitStatus=78`).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from cuas_node.config_outputs import (
    COT_URL_PATTERN,
    HOST_PATTERN,
    UUID4_PATTERN,
    CotOutput,
    HomeAssistantOutput,
    OutputsSection,
    SapientOutput,
)

# The section models live in node/config_sections.py and node/config_sensors.py; they are imported
# (and so re-exported) here because cuas_node.config is where the rest of the node looks for
# configuration types.
from cuas_node.config_sections import (
    TILES_URL_PATTERN,
    CommandsSection,
    FusionSection,
    GpioSection,
    LoggingSection,
    MqttSection,
    NodeSection,
    RecordSection,
    WebSection,
    ZoneSection,
)
from cuas_node.config_sensors import (
    IDENT_PATTERN,
    AcousticArraySensor,
    FpvReceiver,
    FpvRx5808Sensor,
    GenericRadarSensor,
    IntLiteral,
    MountPose,
    NmeaSensor,
    Position,
    RemoteIdSensor,
    SensorConfig,
    TiMmwaveSensor,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENV_DELIMITER",
    "ENV_PREFIX",
    "EX_CONFIG",
    "IDENT_PATTERN",
    "SECRET_FIELDS",
    "SENSOR_KINDS",
    "AcousticArraySensor",
    "CommandsSection",
    "Config",
    "ConfigError",
    "CotOutput",
    "FpvReceiver",
    "FpvRx5808Sensor",
    "FusionSection",
    "GenericRadarSensor",
    "GpioSection",
    "HomeAssistantOutput",
    "IntLiteral",
    "LoggingSection",
    "MountPose",
    "MqttSection",
    "NmeaSensor",
    "NodeSection",
    "OutputsSection",
    "Position",
    "RecordSection",
    "RemoteIdSensor",
    "SapientOutput",
    "SensorConfig",
    "TiMmwaveSensor",
    "WebSection",
    "ZoneSection",
    "build_config",
    "deep_merge",
    "load_config",
    "password_path",
    "read_password",
    "read_toml",
    "resolve_config_path",
]

EX_CONFIG = 78
DEFAULT_CONFIG_PATH = Path("/etc/cuas-node/config.toml")
ENV_PREFIX = "CUAS_"
ENV_DELIMITER = "__"
SENSOR_KINDS = ("nmea", "ti-mmwave", "radar", "remoteid", "fpv-rx5808", "acoustic-array")
# Fields whose values must never appear in any message (paths to secrets are fine to show).
SECRET_FIELDS = frozenset({"password", "psk", "hmac_key", "key"})


class Config(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    node: NodeSection
    mqtt: MqttSection = MqttSection()
    sensors: list[SensorConfig] = Field(default_factory=list)
    fusion: FusionSection = FusionSection()
    logging: LoggingSection = LoggingSection()
    zones: list[ZoneSection] = Field(default_factory=list)
    gpio: GpioSection = GpioSection()
    record: RecordSection = RecordSection()
    web: WebSection = WebSection()
    outputs: OutputsSection = OutputsSection()

    @field_validator("sensors")
    @classmethod
    def _unique_sensor_ids(cls, sensors: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for sensor in sensors:
            if sensor.id in seen:
                raise ValueError(f"sensor id {sensor.id!r} is used twice")
            seen.add(sensor.id)
        return sensors

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init kwargs; the environment must win over them.
        return (env_settings, init_settings)


class ConfigError(Exception):
    """Every problem found in a configuration, each already phrased for a technician."""

    def __init__(self, problems: list[str], source: str) -> None:
        self.problems = problems
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"configuration error in {self.source}: {len(self.problems)} problem(s)"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def _dotted_and_env(loc: tuple[int | str, ...]) -> tuple[str, str]:
    """`('sensors', 0, 'ti-mmwave', 'port')` → (`sensors[0].port`, `CUAS_SENSORS`)."""
    parts: list[str] = []
    env_parts: list[str] = []
    in_list = False
    previous_was_index = False
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
            in_list = True
            previous_was_index = True
            continue
        if previous_was_index and item in SENSOR_KINDS:
            previous_was_index = False
            continue  # the discriminated-union tag is not a TOML key
        previous_was_index = False
        parts.append(str(item))
        if not in_list:
            env_parts.append(str(item).upper())
    return ".".join(parts), ENV_PREFIX + ENV_DELIMITER.join(env_parts)


PATTERN_HINTS = {
    IDENT_PATTERN: "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
    COT_URL_PATTERN: (
        "udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT, HOST a name, an IPv4 address or an IPv6 "
        "address in brackets ([2001:db8::5], [ff02::1%eth0])"
    ),
    TILES_URL_PATTERN: "a URL template with {z}, {x} and {y}, e.g. https://tiles.example.org/{z}/{x}/{y}.png",
    UUID4_PATTERN: "a lower-case UUID version 4, e.g. 0f8fad5b-d9cb-469f-a165-70867728950e",
    HOST_PATTERN: "a host name or an IP address, without a scheme or port",
}
"""What a `pattern` asks, in words: the regular expression itself says little to a technician."""
LIST_TABLES = frozenset({"sensors", "zones", "outputs.cot"})


def _describe(error: Mapping[str, Any]) -> str:
    loc = tuple(error.get("loc", ()))
    kind = error.get("type", "")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        loc = (*loc, "kind")
    dotted, env = _dotted_and_env(loc)
    if kind == "extra_forbidden":
        message = "unknown key (check its spelling and section)"
    elif kind == "missing":
        message = "required key is missing"
    elif loc and str(loc[-1]) in SECRET_FIELDS:
        message = "invalid value (not shown: secret)"
    elif kind == "string_pattern_mismatch":
        pattern = str((error.get("ctx") or {}).get("pattern", ""))
        message = f"not of the expected form: {PATTERN_HINTS.get(pattern, pattern)}"
    elif kind == "list_type" and dotted in LIST_TABLES:
        message = f"a list of tables: write [[{dotted}]], not [{dotted}]"
    else:
        message = str(error.get("msg", "invalid value"))
        # Our own validators' messages are whole sentences: pydantic's "Value error, " is noise.
        message = message.removeprefix("Value error, ")
    where = dotted or "(top level)"
    return f"{where} (env {env}): {message}"


def format_validation_error(exc: ValidationError) -> list[str]:
    return [_describe(e) for e in exc.errors(include_input=False, include_url=False, include_context=True)]


def read_toml(path: Path) -> dict[str, Any]:
    """Read a config file, turning every way it can fail into a `ConfigError`."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([f"file not found: {path}"], str(path)) from None
    except PermissionError:
        raise ConfigError([f"permission denied reading {path}"], str(path)) from None
    except IsADirectoryError:
        raise ConfigError([f"{path} is a directory, not a TOML file"], str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"TOML syntax error: {exc}"], str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"not UTF-8 text (byte {exc.start + 1} cannot be decoded)"], str(path)) from None
    except RecursionError:
        raise ConfigError(["TOML nested too deeply (arrays or tables inside arrays)"], str(path)) from None
    except OSError as exc:  # an I/O error of a failing card, a file name too long, ...
        raise ConfigError([f"cannot read {path}: {exc.strerror or exc}"], str(path)) from None


_JSON_HINT = 'lists and tables are written in JSON, e.g. ["a", "b"] or {"lat": 52.0, "lon": 4.3}'


def _env_json_problems(environ: Mapping[str, str]) -> list[str]:
    """Each `CUAS_*` variable for a list or a table whose value is not JSON (the value unshown), or
    is JSON `null` where the key cannot be unset: pydantic-settings would silently skip that
    variable (and every `CUAS_<KEY>__*` beside it), so the node would run on the file's values."""
    problems: list[str] = []
    for name, value in sorted(environ.items()):
        annotation: Any = Config if name.upper().startswith(ENV_PREFIX) else None
        loc: list[str] = []
        optional = False
        for part in name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER):
            fields = getattr(annotation, "model_fields", None)
            if not isinstance(fields, dict) or part not in fields:
                break  # not a key: pydantic-settings ignores it too
            loc.append(part)
            annotation = fields[part].annotation
            members = [a for a in get_args(annotation) if a is not type(None)]
            is_union = get_origin(annotation) in (Union, types.UnionType)
            optional = is_union and type(None) in get_args(annotation)
            if is_union and len(members) == 1:
                annotation = members[0]  # `X | None` → X
        else:
            if get_origin(annotation) not in (list, tuple, dict, set) and not hasattr(
                annotation, "model_fields"
            ):
                continue
            dotted, env = _dotted_and_env(tuple(loc))
            try:
                decoded = json.loads(value)
            except json.JSONDecodeError as exc:
                where = f"{exc.msg} at character {exc.pos + 1}"
                problems.append(f"{dotted} (env {env}): not valid JSON ({where}); {_JSON_HINT}")
                continue
            except (ValueError, RecursionError) as exc:  # e.g. `[[[[…` nested past Python's stack
                reason = "nested too deeply" if isinstance(exc, RecursionError) else type(exc).__name__
                problems.append(f"{dotted} (env {env}): not valid JSON ({reason}); {_JSON_HINT}")
                continue
            if decoded is None and not optional:
                problems.append(
                    f"{dotted} (env {env}): null cannot replace this key (the variable would be ignored); "
                    f"give the whole value in JSON, or unset {env}"
                )
    return problems


def _undecodable(exc: Exception) -> str:
    """A pydantic-settings failure that the JSON scan above did not explain: name the variable from
    the field in its message (never the value, which may hold a secret)."""
    match = re.search(r'field "([^"]+)"', str(exc))
    field = match.group(1) if match else ""
    dotted, env = _dotted_and_env((field,)) if field else ("(environment)", ENV_PREFIX + "*")
    cause = exc.__cause__ or exc.__context__ or exc
    reason = "nested too deeply" if isinstance(cause, RecursionError) else type(cause).__name__
    names = f"{env} or {env}{ENV_DELIMITER}*"
    return f"{dotted} (env {names}): the value cannot be decoded ({reason}); {_JSON_HINT}"


def build_config(data: Mapping[str, Any], source: str) -> Config:
    """Validate `data` (already read from TOML or built by the simulator) plus the environment.

    Every way the environment can fail (pydantic-settings' own JSON decoding included) ends as a
    `ConfigError` naming the variable, so `run` exits 78 and systemd does not restart-loop."""
    env_problems = _env_json_problems(os.environ)
    try:
        config = Config(**data)
    except ValidationError as exc:
        # A malformed JSON value of an optional table reaches validation as a string: say so, once.
        bad = tuple(p.split(": not valid JSON")[0] + ":" for p in env_problems)
        problems = [p for p in format_validation_error(exc) if not p.startswith(bad)]
        raise ConfigError(env_problems + problems, source) from None
    except (SettingsError, RecursionError) as exc:
        # pydantic-settings could not decode a `CUAS_*` value (JSON of a list or table).
        raise ConfigError(env_problems or [_undecodable(exc)], source) from None
    if env_problems:
        raise ConfigError(env_problems, source)
    return config


def resolve_config_path(cli_path: str | None, env: Mapping[str, str] = os.environ) -> Path:
    """`--config` wins, then `CUAS_CONFIG`, then the packaged default under /etc."""
    if cli_path:
        return Path(cli_path)
    if env.get("CUAS_CONFIG"):
        return Path(env["CUAS_CONFIG"])
    return DEFAULT_CONFIG_PATH


def load_config(path: Path) -> Config:
    return build_config(read_toml(path), str(path))


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge nested tables; lists and scalars in `override` replace those in `base`."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def password_path(mqtt: MqttSection, env: Mapping[str, str] = os.environ) -> Path | None:
    """Where the broker password comes from: `password_file`, else the systemd credential
    `mqtt-password` when `$CREDENTIALS_DIRECTORY` holds one, else nowhere (None)."""
    if mqtt.password_file is not None:
        return mqtt.password_file
    if env.get("CREDENTIALS_DIRECTORY"):
        candidate = Path(env["CREDENTIALS_DIRECTORY"]) / "mqtt-password"
        return candidate if candidate.exists() else None
    return None


def read_password(mqtt: MqttSection, env: Mapping[str, str] = os.environ) -> str | None:
    """The broker password from `password_file`, or from a systemd credential named mqtt-password."""
    path = password_path(mqtt, env)
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            [f"mqtt.password_file (env CUAS_MQTT__PASSWORD_FILE): cannot read: {exc.strerror}"], str(path)
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(
            ["mqtt.password_file (env CUAS_MQTT__PASSWORD_FILE): not UTF-8 text"], str(path)
        ) from None
