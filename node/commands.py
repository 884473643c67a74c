"""Commands to the node over MQTT: parsing, authorisation, replay protection, argument schemas.

Sans-IO on purpose: this module sees topic suffixes and payload bytes and returns a decision, so
every rule (who may command, what a valid command is, what a replay is) is tested without a
broker, and the publisher only moves bytes.

Topic: `<root>/<node>/cmd/<name>` or `<root>/<node>/cmd/<name>/<client-id>`.

Authorisation, either of:

* **Allow-listed client identity.** MQTT does not tell a subscriber who published a message, so
  the identity is the last topic level, and the broker's ACL must make it unforgeable
  (`pattern write cuas/v1/+/cmd/+/%c` lets a client write only under its own client id; see
  systemd/mosquitto-acl.example). Payload: `{"args": {...}, "id": "..."}`.
* **HMAC-SHA256 signature** with a shared key, independent of the broker: payload
  `{"signed": "<JSON text>", "sig": "<hex>"}` where `sig = HMAC-SHA256(key, signed)` over the
  exact UTF-8 bytes of `signed` (no canonicalisation to get wrong between languages) and
  `signed` is `{"node": <node id>, "cmd": <name>, "ts": <UTC s>, "nonce": "<unique>", "args":
  {...}, "id": "..."}`. A command for another node or another command name, a timestamp more
  than `max_skew_s` away from the node's clock or from before this process started, or a nonce
  seen before, is refused: a captured command cannot be replayed, not even after a restart.

Unauthorised or malformed commands change nothing; each is counted and answered `rejected`.

Anyone who can publish to `cmd/` reaches this parser before any authorisation, so nothing in it
may raise, recurse without bound or echo unbounded input (issue 14): the payload size and the JSON
nesting depth are checked before `json.loads`, `NaN`/`Infinity` are not JSON, `ts` must be a
finite number, `sig` must be exactly 64 hex digits, an `id` longer than `MAX_ID_CHARS` is refused
without being echoed, and a response topic must lie in the node's own `response/` subtree (the
bounds and their checks are in `cuas_node.command_input`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cuas_node.command_input import (
    MAX_PAYLOAD,
    TooDeep,
    command_name_ok,
    parse_json,
    request_id_of,
    unknown_keys,
)
from cuas_node.config import IDENT_PATTERN, CommandsSection, ConfigError, ZoneSection

COMMANDS = ("status", "set-log-level", "zone-update", "alert-ack", "calibrate")
MIN_KEY_BYTES = 16
NONCE_CACHE_MAX = 10000
_CLIENT = re.compile(r"[^/#+\s]{1,128}")
_SIG = re.compile(r"[0-9a-fA-F]{64}")

Outcome = Literal["ok", "error", "not_available", "rejected"]
Rejection = Literal["malformed", "unauthorised", "stale", "replayed", "unknown_command"]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StatusArgs(_Args):
    pass


class SetLogLevelArgs(_Args):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"]
    logger: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.]{1,128}$")


class ZoneUpdateArgs(_Args):
    zones: list[ZoneSection] = Field(max_length=64)


class AlertAckArgs(_Args):
    alert_id: str = Field(min_length=1, max_length=200)
    by: str | None = Field(default=None, min_length=1, max_length=64)
    note: str | None = Field(default=None, max_length=256)


class CalibrateArgs(_Args):
    action: Literal["start", "stop"]
    sensor: str | None = Field(default=None, pattern=IDENT_PATTERN)


ARG_MODELS: dict[str, type[_Args]] = {
    "status": StatusArgs,
    "set-log-level": SetLogLevelArgs,
    "zone-update": ZoneUpdateArgs,
    "alert-ack": AlertAckArgs,
    "calibrate": CalibrateArgs,
}


@dataclass(frozen=True)
class Command:
    """An authorised, validated command. `identity` is the client id, or `hmac` when signed."""

    name: str
    args: Any  # one of the *Args models above
    identity: str
    request_id: str | None = None


@dataclass(frozen=True)
class Result:
    """What a handler answers; `result` is merged into the response as `result`."""

    status: Literal["ok", "error", "not_available"]
    detail: str = ""
    result: dict[str, Any] | None = None


@dataclass(frozen=True)
class Refused:
    reason: Rejection
    detail: str
    request_id: str | None = None


class CommandHandler(Protocol):
    """Implemented by the runtime. Must not block: queue the work and call `reply` once, from any
    thread, when done."""

    def handle_command(self, command: Command, reply: Callable[[Result], None]) -> None: ...


@dataclass
class CommandCounters:
    accepted: int = 0
    malformed: int = 0
    unauthorised: int = 0
    stale: int = 0
    replayed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "malformed": self.malformed,
            "unauthorised": self.unauthorised,
            "stale": self.stale,
            "replayed": self.replayed,
        }


def read_key(path: Path) -> bytes:
    """The shared HMAC key (the file's bytes, surrounding whitespace stripped); never shown."""
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(
            [
                "mqtt.commands.hmac_key_file (env CUAS_MQTT__COMMANDS__HMAC_KEY_FILE): "
                f"cannot read: {exc.strerror}"
            ],
            str(path),
        ) from None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            [
                "mqtt.commands.hmac_key_file (env CUAS_MQTT__COMMANDS__HMAC_KEY_FILE): "
                f"the key must be at least {MIN_KEY_BYTES} bytes"
            ],
            str(path),
        )
    return key


def sign(
    key: bytes,
    node_id: str,
    name: str,
    args: dict[str, Any],
    ts: float,
    nonce: str | None = None,
    request_id: str | None = None,
) -> bytes:
    """A signed command payload (for operators' tools and the tests)."""
    inner: dict[str, Any] = {"node": node_id, "cmd": name, "ts": ts, "nonce": nonce or secrets.token_hex(12)}
    inner["args"] = args
    if request_id is not None:
        inner["id"] = request_id
    text = json.dumps(inner, separators=(",", ":"))
    sig = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signed": text, "sig": sig}).encode()


@dataclass
class CommandProcessor:
    """Turns (topic suffix, payload) into a `Command` or a `Refused`; thread-safe."""

    node_id: str
    settings: CommandsSection
    now: Callable[[], float]
    started_at: float
    key: bytes | None = None
    counters: CommandCounters = field(default_factory=CommandCounters)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._nonces: dict[str, float] = {}
        self._allowed = frozenset(self.settings.allow_clients)

    def process(self, suffix: str, payload: bytes, reply_problem: str | None = None) -> Command | Refused:
        """`suffix` is the topic after `<root>/<node>/cmd/`: `<name>` or `<name>/<client-id>`.

        `reply_problem` is why the request's response topic or correlation data cannot be obeyed
        (the channel checks them): such a command is refused, with its id when it has a valid one."""
        with self._lock:
            outcome = self._process(suffix, payload, reply_problem)
            self._count(outcome)
            return outcome

    def _count(self, outcome: Command | Refused) -> None:
        if isinstance(outcome, Command):
            self.counters.accepted += 1
        else:
            reason = "malformed" if outcome.reason == "unknown_command" else outcome.reason
            setattr(self.counters, reason, getattr(self.counters, reason) + 1)

    def _process(self, suffix: str, payload: bytes, reply_problem: str | None) -> Command | Refused:
        parts = suffix.split("/")
        name = parts[0]
        if (
            len(parts) > 2
            or not command_name_ok(name)
            or (len(parts) == 2 and not _CLIENT.fullmatch(parts[1]))
        ):
            return Refused("malformed", "topic must be cmd/<name> or cmd/<name>/<client-id>")
        client = parts[1] if len(parts) == 2 else None
        if len(payload) > MAX_PAYLOAD:
            return Refused("malformed", f"payload larger than {MAX_PAYLOAD} bytes")
        try:
            outer = parse_json(payload)
        except TooDeep as exc:
            return Refused("malformed", f"payload {exc}")
        except ValueError:  # UnicodeDecodeError included
            return Refused("malformed", "payload is not JSON")
        if not isinstance(outer, dict):
            return Refused("malformed", "payload must be a JSON object")
        request_id, id_problem = request_id_of(outer)
        if id_problem:
            return Refused("malformed", id_problem)
        if reply_problem:
            return Refused("malformed", reply_problem, request_id)
        if "signed" in outer or "sig" in outer:
            checked = self._check_signed(name, outer)
            if isinstance(checked, Refused):
                return checked
            body, identity, request_id = checked
        else:
            if client is None or client not in self._allowed:
                return Refused("unauthorised", "neither an allow-listed client nor signed", request_id)
            body, identity = outer, client
            extra = set(body) - {"args", "id"}
            if extra:
                return Refused("malformed", unknown_keys(extra), request_id)
        model = ARG_MODELS.get(name)
        if model is None:
            return Refused(
                "unknown_command", f"unknown command {name!r} (known: {', '.join(COMMANDS)})", request_id
            )
        args = body.get("args", {})
        try:
            parsed = model.model_validate(args)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'args'}: {e['msg']}"
                for e in exc.errors(include_input=False, include_url=False, include_context=False)
            )
            return Refused("malformed", problems[:500], request_id)
        return Command(name, parsed, identity, request_id)

    def _check_signed(
        self, name: str, outer: dict[str, Any]
    ) -> tuple[dict[str, Any], str, str | None] | Refused:
        """The signed body, the identity `hmac` and the request id; or why not.

        `sig` is decoded strictly (exactly 64 hex digits, compared as bytes): anything else, a
        non-ASCII string included, is a clean `bad signature`, never an exception."""
        text, sig = outer.get("signed"), outer.get("sig")
        if not isinstance(text, str) or not isinstance(sig, str) or set(outer) != {"signed", "sig"}:
            return Refused("malformed", 'a signed command is {"signed": <JSON text>, "sig": <hex>}')
        if self.key is None:
            return Refused("unauthorised", "signed commands are not enabled on this node")
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate escaped in the JSON: no UTF-8 bytes to sign
            return Refused("malformed", "signed text is not valid UTF-8")
        if not _SIG.fullmatch(sig):
            return Refused("unauthorised", "bad signature (sig must be 64 hex digits)")
        expected = hmac.new(self.key, data, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, bytes.fromhex(sig)):
            return Refused("unauthorised", "bad signature")
        try:
            body = parse_json(data)
        except ValueError:
            return Refused("malformed", "signed text is not JSON")
        if not isinstance(body, dict):
            return Refused("malformed", "signed text must be a JSON object")
        extra = set(body) - {"node", "cmd", "ts", "nonce", "args", "id"}
        if extra:
            return Refused("malformed", unknown_keys(extra))
        request_id, id_problem = request_id_of(body)
        if id_problem:
            return Refused("malformed", id_problem)
        ts, nonce = body.get("ts"), body.get("nonce")
        if body.get("node") != self.node_id or body.get("cmd") != name:
            return Refused("unauthorised", "signed for another node or command", request_id)
        if not isinstance(ts, int | float) or isinstance(ts, bool):
            return Refused("malformed", "ts must be a number (UTC seconds)", request_id)
        try:
            ts = float(ts)
        except OverflowError:  # an integer of hundreds of digits
            ts = math.inf
        if not math.isfinite(ts):
            return Refused("malformed", "ts must be a finite number (UTC seconds)", request_id)
        if not isinstance(nonce, str) or not 8 <= len(nonce) <= 64:
            return Refused("malformed", "nonce must be a string of 8 to 64 characters", request_id)
        now = self.now()
        skew = self.settings.max_skew_s
        if abs(now - ts) > skew:
            return Refused(
                "stale", f"ts is {now - ts:+.1f} s off the node's clock (max {skew:g} s)", request_id
            )
        if ts < self.started_at:
            return Refused("stale", "signed before the node started (sign again)", request_id)
        for old, seen in list(self._nonces.items()):
            if seen < now - 2 * skew:
                del self._nonces[old]
        if nonce in self._nonces:
            return Refused("replayed", "nonce already used", request_id)
        if len(self._nonces) >= NONCE_CACHE_MAX:
            return Refused("replayed", "too many commands in the replay window; retry later", request_id)
        self._nonces[nonce] = now
        return body, "hmac", request_id


def response(
    node_id: str,
    name: str,
    t: float,
    status: Outcome,
    detail: str = "",
    request_id: str | None = None,
    reason: Rejection | None = None,
    result: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A `cmd-response` message (docs/schemas/cmd-response.schema.json)."""
    out: dict[str, Any] = {"type": "cmd-response", "node_id": node_id, "cmd": name, "status": status, "t": t}
    if request_id is not None:
        out["id"] = request_id
    if reason is not None:
        out["reason"] = reason
    if detail:
        out["detail"] = detail
    if result is not None:
        out["result"] = result
    return out
