"""Node configuration: one TOML file plus `CUAS_*` environment overrides.

Why a custom error path: a technician on a mast needs *every* mistake in one go, each named by the
TOML key they typed and the environment variable that would override it, and must never see a
secret echoed back (pydantic's default messages print `input_value`). Exit status 78 (EX_CONFIG)
tells systemd not to restart-loop on a bad file (`RestartPreventExitStatus=78`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

# The sensor models live in node/config_sensors.py; they are imported (and so re-exported) here
# because cuas_node.config is where the rest of the node looks for configuration types.
from cuas_node.config_sensors import (
    IDENT_PATTERN,
    AcousticArraySensor,
    FpvReceiver,
    FpvRx5808Sensor,
    MountPose,
    NmeaSensor,
    Position,
    RemoteIdSensor,
    Section,
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
    "FpvReceiver",
    "FpvRx5808Sensor",
    "FusionSection",
    "GpioSection",
    "LoggingSection",
    "MountPose",
    "MqttSection",
    "NmeaSensor",
    "NodeSection",
    "Position",
    "RecordSection",
    "RemoteIdSensor",
    "SensorConfig",
    "TiMmwaveSensor",
    "ZoneSection",
    "build_config",
    "deep_merge",
    "load_config",
    "read_password",
    "read_toml",
    "resolve_config_path",
]

EX_CONFIG = 78
DEFAULT_CONFIG_PATH = Path("/etc/cuas-node/config.toml")
ENV_PREFIX = "CUAS_"
ENV_DELIMITER = "__"
SENSOR_KINDS = ("nmea", "ti-mmwave", "remoteid", "fpv-rx5808", "acoustic-array")
# Fields whose values must never appear in any message (paths to secrets are fine to show).
SECRET_FIELDS = frozenset({"password", "psk", "hmac_key", "key"})


class NodeSection(Section):
    id: str = Field(pattern=IDENT_PATTERN)
    position: Position | None = None
    state_dir: Path = Path("/var/lib/cuas-node")
    spool_dir: Path = Field(
        default=Path("/var/lib/cuas-node/spool"),
        description="store-and-forward spool (default: state_dir/spool)",
    )

    @model_validator(mode="before")
    @classmethod
    def _spool_under_state_dir(cls, data: Any) -> Any:
        """An unset spool_dir follows state_dir, so moving the state moves the spool with it."""
        if isinstance(data, dict) and data.get("spool_dir") is None and data.get("state_dir") is not None:
            data = {**data, "spool_dir": Path(str(data["state_dir"])) / "spool"}
        return data


class CommandsSection(Section):
    """Commands in on `<root>/<node>/cmd/<name>` (see docs/mqtt.md): off unless enabled, and then
    only from an allow-listed client identity or with a valid HMAC-SHA256 signature."""

    enabled: bool = False
    allow_clients: list[str] = Field(
        default_factory=list, description="MQTT client ids allowed to send unsigned commands"
    )
    hmac_key_file: Path | None = Field(default=None, description="shared key for signed commands")
    max_skew_s: float = Field(default=30.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _some_authorisation(self) -> CommandsSection:
        if self.enabled and not self.allow_clients and self.hmac_key_file is None:
            raise ValueError("enabled commands need allow_clients or hmac_key_file (else all are refused)")
        return self


class MqttSection(Section):
    host: str = "localhost"
    port: int = Field(default=1883, ge=1, le=65535)
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    client_id: str | None = None
    topic_root: str = Field(default="cuas/v1", pattern=r"^[^#+\s]+[^/#+\s]$")
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    qos: Literal[0, 1, 2] = 1
    tracks_max_rate_hz: float = Field(default=5.0, gt=0, le=50)
    health_interval_s: float = Field(default=5.0, gt=0, le=3600)
    spool_max_bytes: int = Field(default=64 * 1024 * 1024, ge=64 * 1024)
    spool_max_age_s: float = Field(default=300.0, gt=0, le=86400)
    commands: CommandsSection = CommandsSection()


class FusionSection(Section):
    confirm_m: int = Field(default=4, ge=1)
    confirm_n: int = Field(default=6, ge=1)
    gate_probability: float = Field(default=0.999, gt=0.5, lt=1)
    coast_after_s: float = Field(default=0.6, gt=0)
    delete_after_s: float = Field(default=3.0, gt=0)
    tentative_delete_after_s: float = Field(default=1.0, gt=0)
    max_position_sigma_m: float = Field(default=200.0, gt=0)
    process_accel_mps2: float = Field(default=3.0, gt=0)
    process_accel_vertical_mps2: float = Field(default=1.0, gt=0)
    max_tracks: int = Field(default=256, ge=1, le=4096)
    max_tentative: int = Field(default=128, ge=1, description="cap on tentative tracks (clutter floods)")
    reorder_window_s: float = Field(
        default=0.1, ge=0, le=2, description="hold measurements this long to fuse in time order"
    )
    alert_update_s: float = Field(default=5.0, gt=0)
    rid_loose_gate_m: float = Field(
        default=150.0, gt=0, description="how far a spoofed Remote ID may be from its track"
    )
    publish_tentative: bool = False
    detection_probability: float = Field(default=0.9, gt=0, le=1, description="for the JPDA weights")
    clutter_per_scan: float = Field(default=2.0, ge=0, description="expected false alarms per radar frame")


_PIN = r"^D([0-9]|1[0-9]|2[0-7])$"


class GpioSection(Section):
    """Status LED, alert output and tamper input on the Pi's header (Blinka pin names, BCM numbers).

    Each pin is optional: leave it out and that function is off. `backend = "fake"` records pin
    changes in memory instead of driving hardware (bench tests, the simulator)."""

    enabled: bool = False
    backend: Literal["blinka", "fake"] = "blinka"
    status_led_pin: str | None = Field(default=None, pattern=_PIN)
    status_led_active_high: bool = True
    alert_pin: str | None = Field(default=None, pattern=_PIN)
    alert_active_high: bool = True
    alert_min_on_s: float = Field(default=5.0, ge=0, le=3600)
    tamper_pin: str | None = Field(default=None, pattern=_PIN)
    tamper_pull: Literal["up", "down", "none"] = "up"
    tamper_open_level: Literal["high", "low"] = "high"
    tamper_debounce_s: float = Field(default=0.05, ge=0, le=5)
    tamper_alert: bool = True


class ZoneSection(Section):
    """A protected volume: a polygon of [lat, lon] vertices, a floor and a ceiling in metres above
    the node's own altitude, and the alert level raised when a confirmed track enters it."""

    id: str = Field(pattern=IDENT_PATTERN)
    level: Literal["warning", "critical"] = "warning"
    polygon: list[tuple[float, float]] = Field(min_length=3)
    floor_m: float = -100.0
    ceiling_m: float = 1000.0
    classes: tuple[Literal["multirotor", "fixed_wing", "bird", "aircraft", "unknown"], ...] = Field(
        default=("multirotor", "fixed_wing", "unknown"),
        description="track labels that raise an alert in this zone",
    )

    @model_validator(mode="after")
    def _geometry(self) -> ZoneSection:
        for lat, lon in self.polygon:
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError("polygon vertices are [lat, lon] in degrees")
        if self.floor_m >= self.ceiling_m:
            raise ValueError("floor_m must be below ceiling_m")
        return self


class LoggingSection(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class RecordSection(Section):
    """Record every sensor's raw bytes into pcapng beside `run` (docs/recording.md): a field record
    of what the sensors said, replayable through the same drivers and fusion with `cuas-node replay`."""

    enabled: bool = False
    path: Path = Path("/var/lib/cuas-node/recordings/node.pcapng")
    rotate_bytes: int = Field(
        default=100_000_000, ge=0, description="new file (PATH-00001.pcapng, ...) past this size; 0: one file"
    )
    keep_files: int = Field(default=0, ge=0, description="keep only the newest N rotated files; 0: all")


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
    else:
        message = str(error.get("msg", "invalid value"))
    where = dotted or "(top level)"
    return f"{where} (env {env}): {message}"


def format_validation_error(exc: ValidationError) -> list[str]:
    return [_describe(e) for e in exc.errors(include_input=False, include_url=False, include_context=False)]


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


def build_config(data: Mapping[str, Any], source: str) -> Config:
    """Validate `data` (already read from TOML or built by the simulator) plus the environment."""
    try:
        return Config(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc), source) from None


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


def read_password(mqtt: MqttSection, env: Mapping[str, str] = os.environ) -> str | None:
    """The broker password from `password_file`, or from a systemd credential named mqtt-password."""
    path = mqtt.password_file
    if path is None and env.get("CREDENTIALS_DIRECTORY"):
        candidate = Path(env["CREDENTIALS_DIRECTORY"]) / "mqtt-password"
        path = candidate if candidate.exists() else None
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            [f"mqtt.password_file (env CUAS_MQTT__PASSWORD_FILE): cannot read: {exc.strerror}"], str(path)
        ) from None
