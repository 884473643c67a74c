"""The non-sensor sections of the node configuration (`[node]`, `[mqtt]`, `[fusion]`, `[gpio]`,
`[[zones]]`, `[logging]`, `[record]`, `[web]`); node/config.py assembles them with the sensors into `Config`
and owns loading and error reporting. Every key is documented in docs/config.md.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from cuas_node.config_sensors import IDENT_PATTERN, IntLiteral, Position, Section


class NodeSection(Section):
    id: str = Field(pattern=IDENT_PATTERN)
    position: Position | None = None
    ground_alt_m: float | None = Field(
        default=None,
        ge=-500,
        le=10000,
        description=(
            "ground altitude (WGS84 ellipsoid) around the node; default: the node's reference point "
            "(the mast foot); on a hilltop, the lowest ground in coverage"
        ),
    )
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
    qos: IntLiteral[Literal[0, 1, 2]] = 1
    tracks_max_rate_hz: float = Field(default=5.0, gt=0, le=50)
    health_interval_s: float = Field(default=5.0, gt=0, le=3600)
    spool_max_bytes: int = Field(default=64 * 1024 * 1024, ge=64 * 1024)
    spool_max_age_s: float = Field(default=300.0, gt=0, le=86400)
    commands: CommandsSection = CommandsSection()


MIN_FIXTURE_SPAN_S = 300.0  # `learn_fixtures_after_s`: shorter learns drones' hovers (and 10 s epochs)


class FusionSection(Section):
    confirm_m: int = Field(default=3, ge=1)
    confirm_n: int = Field(default=6, ge=1, le=32)  # the M-of-N window is a track's 32-bit word
    gate_probability: float = Field(default=0.999, gt=0.5, lt=1)
    coast_after_s: float = Field(default=0.6, gt=0)
    delete_after_s: float = Field(default=3.0, gt=0)
    tentative_delete_after_s: float = Field(default=1.0, gt=0)
    max_outlive_s: float = Field(
        default=0.0,
        ge=0,
        le=600,
        description="the longest a track born among persistent clutter waits to confirm",
    )
    max_position_sigma_m: float = Field(default=200.0, gt=0)
    process_accel_mps2: float = Field(default=3.0, gt=0)
    process_accel_vertical_mps2: float = Field(default=1.0, gt=0)
    turn_rate_dps: float = Field(
        default=11.5, gt=0, le=180, description="the turning motion models' rate (a coordinated turn)"
    )
    max_tracks: int = Field(
        default=4096, ge=1, le=16384, description="at most this many tracks; the table grows to it as needed"
    )
    max_tentative: int = Field(
        default=128, ge=1, description="tentative pool: beyond it the least likely are pruned"
    )
    reorder_window_s: float = Field(
        default=0.1, ge=0, le=2, description="hold measurements this long to fuse in time order"
    )
    alert_update_s: float = Field(default=5.0, gt=0)
    alert_clear_s: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="an alert clears once its track has been outside the zone or its classes this long",
    )
    rid_loose_gate_m: float = Field(
        default=150.0, gt=0, description="how far a spoofed Remote ID may be from its track"
    )
    rid_only_max_tracks: int = Field(
        default=32, ge=0, description="tracks only Remote ID supports may take at most this many slots"
    )
    rid_spoofing_new_per_min: int = Field(
        default=20, ge=1, description="more broadcasters first heard in a minute: spoofing suspected"
    )
    rid_only_alerts_per_min: float = Field(
        default=6.0, ge=0, description="new zone alerts on Remote ID-only tracks per minute (the rest wait)"
    )
    publish_tentative: bool = False
    detection_probability: float = Field(default=0.9, gt=0, le=1, description="for the JPDA weights")
    clutter_per_scan: float = Field(default=2.0, ge=0, description="expected false alarms per radar frame")
    false_track_probability: float = Field(
        default=1e-4, gt=0, lt=0.5, description="SPRT α: chance a false hypothesis is confirmed"
    )
    miss_probability: float = Field(
        default=0.05, gt=0, lt=0.5, description="SPRT β: chance a real target's hypothesis is rejected"
    )
    learn_fixtures_after_s: float = Field(
        default=2700.0,
        ge=0,
        description="a place a radar's plots came from all this long is site clutter; 0: off, else >= 300",
    )
    local_clutter: bool = Field(
        default=True,
        description="price places where a radar gives several plots a scan as clutter (false: formations)",
    )
    clutter_profile: bool = Field(
        default=True,
        description="price a radar's false alarms where they fall in range and elevation, standing or moving",
    )

    @model_validator(mode="after")
    def _window(self) -> FusionSection:
        if self.confirm_m > self.confirm_n:
            raise ValueError("confirm_m must not exceed confirm_n (hits in the last confirm_n looks)")
        if 0 < self.learn_fixtures_after_s < MIN_FIXTURE_SPAN_S:
            raise ValueError(
                f"learn_fixtures_after_s must be 0 (off) or at least {MIN_FIXTURE_SPAN_S:g} s: a shorter "
                "span learns drones hovering for a few minutes as site clutter, and its epochs hold too "
                "few scans to tell a fixture from clutter (docs/config.md)"
            )
        return self


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


TILES_URL_PATTERN = r"^\S*\{z\}\S*\{x\}\S*\{y\}\S*$"  # e.g. https://tile.example.org/{z}/{x}/{y}.png


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")  # RFC 1123


class WebSection(Section):
    """The technician's read-only live view in a browser, served by the node (docs/web.md).

    Off by default and on loopback by default: the page shows where the node's sensors look and
    what they see, which is nobody else's business; opening it to the network is a decision
    (`bind`), best with `password_file` and TLS."""

    enabled: bool = False
    bind: str = Field(default="127.0.0.1", min_length=1, description="address to listen on; 0.0.0.0: all")
    port: int = Field(default=8080, ge=1, le=65535)
    password_file: Path | None = Field(
        default=None, description="file holding the HTTP basic-auth password (any user name); none: no auth"
    )
    tls_cert_file: Path | None = Field(default=None, description="PEM certificate: serve HTTPS")
    tls_key_file: Path | None = Field(default=None, description="PEM private key of tls_cert_file")
    tiles_url: str | None = Field(
        default=None,
        pattern=TILES_URL_PATTERN,
        description="raster map tiles for the plan view, a URL template with {z}, {x}, {y}",
    )
    tiles_dir: Path | None = Field(
        default=None, description="offline raster tiles, laid out {z}/{x}/{y}.png, served by the node"
    )
    max_clients: int = Field(default=16, ge=1, le=256, description="live-update connections at once")

    @field_validator("bind")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if not _HOST_NAME.fullmatch(value):
                raise ValueError(
                    f"{value!r} is neither an IP address nor a host name (127.0.0.1: this machine only; "
                    "0.0.0.0 or ::: every interface; or one of its addresses)"
                ) from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> WebSection:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together (both or neither)")
        return self
