"""Command parsing, authorisation and replay protection (sans-IO), and the runtime executing them.
The broker path (response topic, correlation data, ACL-bound identities) is in test_security.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cuas_node.commands import Command, CommandProcessor, Refused, response, sign
from cuas_node.config import CommandsSection

KEY = b"0123456789abcdef-shared-key"
NODE = "mast-1"


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def processor(clock: Clock, key: bytes | None = KEY, **settings: Any) -> CommandProcessor:
    cfg = CommandsSection(enabled=True, allow_clients=["ops"], max_skew_s=30, **settings)
    return CommandProcessor(NODE, cfg, clock, clock.t - 10, key)


def test_allow_listed_identity_and_argument_schemas() -> None:
    p = processor(Clock())
    ok = p.process("set-log-level/ops", b'{"args": {"level": "DEBUG"}, "id": "r1"}')
    assert isinstance(ok, Command) and ok.identity == "ops" and ok.request_id == "r1"
    assert ok.args.level == "DEBUG"
    for suffix, payload, reason in [
        ("set-log-level/mallory", b'{"args": {"level": "DEBUG"}}', "unauthorised"),
        ("set-log-level", b'{"args": {"level": "DEBUG"}}', "unauthorised"),  # no identity, unsigned
        ("set-log-level/ops", b'{"args": {"level": "LOUD"}}', "malformed"),
        ("set-log-level/ops", b"not json", "malformed"),
        ("set-log-level/ops", b'{"args": {"level": "INFO"}, "extra": 1}', "malformed"),
        ("reboot/ops", b'{"args": {}}', "unknown_command"),
        ("zone-update/ops", b'{"args": {"zones": [{"id": "z", "polygon": [[0, 0], [1, 1]]}]}}', "malformed"),
        ("calibrate/ops", b'{"args": {"action": "dance"}}', "malformed"),
        ("a/b/c", b"{}", "malformed"),
    ]:
        outcome = p.process(suffix, payload)
        assert isinstance(outcome, Refused) and outcome.reason == reason, (suffix, outcome)
    assert p.counters.as_dict() == {
        "accepted": 1,
        "malformed": 7,
        "unauthorised": 2,
        "stale": 0,
        "replayed": 0,
    }
    zone = {"id": "yard", "level": "critical", "polygon": [[52.0, 4.3], [52.1, 4.3], [52.1, 4.4]]}
    ok = p.process("zone-update/ops", json.dumps({"args": {"zones": [zone]}}).encode())
    assert isinstance(ok, Command) and ok.args.zones[0].id == "yard"


def test_hmac_signature_timestamp_and_nonce() -> None:
    clock = Clock()
    p = processor(clock)
    signed = sign(
        KEY, NODE, "alert-ack", {"alert_id": "T1@yard#1"}, clock.t, nonce="nonce-0001", request_id="a"
    )
    ok = p.process("alert-ack", signed)
    assert isinstance(ok, Command) and ok.identity == "hmac" and ok.request_id == "a"
    replay = p.process("alert-ack", signed)
    assert isinstance(replay, Refused) and replay.reason == "replayed"
    cases = [
        (sign(b"another-key-of-16+bytes", NODE, "status", {}, clock.t), "status", "unauthorised"),
        (sign(KEY, "mast-2", "status", {}, clock.t), "status", "unauthorised"),  # for another node
        (sign(KEY, NODE, "status", {}, clock.t), "calibrate", "unauthorised"),  # for another command
        (sign(KEY, NODE, "status", {}, clock.t - 31), "status", "stale"),
        (sign(KEY, NODE, "status", {}, clock.t + 31), "status", "stale"),
        (sign(KEY, NODE, "status", {}, clock.t - 20), "status", "stale"),  # before the node started
        (sign(KEY, NODE, "status", {}, clock.t, nonce="short"), "status", "malformed"),
    ]
    for payload, name, reason in cases:
        outcome = p.process(name, payload)
        assert isinstance(outcome, Refused) and outcome.reason == reason, (name, outcome)
    tampered = json.loads(sign(KEY, NODE, "status", {}, clock.t))
    tampered["signed"] = tampered["signed"].replace('"args":{}', '"args":{ }')
    assert p.process("status", json.dumps(tampered).encode()) == Refused("unauthorised", "bad signature")
    # Without a key, signed commands are refused rather than trusted.
    assert isinstance(
        processor(clock, key=None).process("status", sign(KEY, NODE, "status", {}, clock.t)), Refused
    )
    assert p.counters.accepted == 1 and p.counters.replayed == 1 and p.counters.stale == 3


def test_command_and_response_schemas_match(schemas: dict[str, dict[str, Any]]) -> None:
    for name in ("cmd-request", "cmd-signed", "cmd-response"):
        jsonschema.Draft202012Validator.check_schema(schemas[name])
    jsonschema.validate({"args": {"level": "INFO"}, "id": "x"}, schemas["cmd-request"])
    jsonschema.validate(json.loads(sign(KEY, NODE, "status", {}, 1.0)), schemas["cmd-signed"])
    jsonschema.validate(
        response(NODE, "status", 1.0, "ok", "done", "x", None, {"a": 1}), schemas["cmd-response"]
    )
    jsonschema.validate(
        response(NODE, "x", 1.0, "rejected", "no", None, "unauthorised"), schemas["cmd-response"]
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(response(NODE, "x", 1.0, "ok") | {"extra": 1}, schemas["cmd-response"])


def test_commands_run_on_the_runtime_fusion_thread(tmp_path: Path) -> None:
    """The runtime's own handler, through its fusion cycle (no broker): log level, an unknown
    alert, the calibrate hook, and `status`, which publishes health in the same cycle."""
    from cuas_node.config import build_config
    from cuas_node.kernel.clock import ManualClock
    from cuas_node.runtime import Runtime
    from tests.sinks import RecordingSink

    config = build_config({"node": {"id": NODE, "state_dir": str(tmp_path)}}, "test")
    sink = RecordingSink(NODE)
    runtime = Runtime(config, ManualClock(), [], sink, session=1)
    p = processor(Clock())
    replies: list[Any] = []
    for suffix, payload in [
        ("set-log-level/ops", b'{"args": {"level": "ERROR", "logger": "cuas_node.test"}}'),
        ("alert-ack/ops", b'{"args": {"alert_id": "nope"}}'),
        ("calibrate/ops", b'{"args": {"action": "start"}}'),
        ("status/ops", b"{}"),
    ]:
        command = p.process(suffix, payload)
        assert isinstance(command, Command)
        runtime.handle_command(command, replies.append)
    assert replies == [] and sink.health == []  # queued for the fusion thread, not run here
    runtime.cycle(1.0, [])
    assert logging.getLogger("cuas_node.test").level == logging.ERROR
    assert [r.status for r in replies] == ["ok", "error", "not_available", "ok"]
    assert "no active alert 'nope'" in replies[1].detail
    assert len(sink.health) == 1
