"""The command channel: an incoming `cmd/<name>/<client>` message in, a processed command and a
response out.

Checking (signature or allow-list, replay, arguments) is `cuas_node.commands`' job; this class only
turns MQTT into calls and back: where the response goes (the MQTT 5 Response Topic when it lies in
the node's own `response/` subtree, else `response/<name>`), with the request's Correlation Data
(at most `MAX_CORRELATION_BYTES`), and that a handler bug still answers.
It runs on the publisher's outbox thread and never publishes by itself: a refusal is answered at
once through `send_now`, a handler's result (which may come later, from any thread) through
`send_later`, which queues it for the outbox. Messages reach it through its `inbox`
(`command_inbox.py`), which rate-limits and bounds them on paho's thread; refusals are logged
through the inbox's throttle, so a flood costs a few summary lines, not one line per message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho

from cuas_node.command_input import command_name_ok, response_topic_problem
from cuas_node.commands import CommandHandler, CommandProcessor, Refused, Result, read_key, response
from cuas_node.config import MqttSection
from cuas_node.kernel.clock import Clock
from cuas_node.publish.command_inbox import CommandInbox
from cuas_node.publish.wire import topic

# The publisher's log lines keep the logger name they always had (operators filter on it).
log = logging.getLogger("cuas_node.publish.mqtt")

# (response topic, correlation data, response body)
ReplySink = Callable[[str, bytes | None, dict[str, Any]], None]

MAX_CORRELATION_BYTES = 256  # echoed in the response; a UUID needs 16 to 36


class CommandChannel:
    """Processes the node's incoming commands and builds their responses."""

    def __init__(
        self,
        node_id: str,
        topic_root: str,
        clock: Clock,
        processor: CommandProcessor,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._node_id = node_id
        self._topic_root = topic_root
        self._clock = clock
        self._processor = processor
        self.prefix = command_prefix(topic_root, node_id)
        self.response_base = topic(topic_root, node_id, "response")
        self.handler: CommandHandler | None = None  # who executes authorised commands
        # Filled on paho's thread, drained by the outbox; `wake` tells the outbox it is not empty.
        self.inbox = CommandInbox(self.prefix, wake, processor.settings.allow_clients)

    @classmethod
    def from_config(
        cls, node_id: str, mqtt: MqttSection, clock: Clock, wake: Callable[[], None]
    ) -> CommandChannel | None:
        """The channel when `mqtt.commands` is enabled (its HMAC key read now, so a bad key file is a
        configuration error at start-up), else None. `wake` is called (on paho's thread) when a
        command is queued for the outbox."""
        cmd = mqtt.commands
        if not cmd.enabled:
            return None
        key = read_key(cmd.hmac_key_file) if cmd.hmac_key_file is not None else None
        processor = CommandProcessor(node_id, cmd, clock.now, clock.now(), key)
        return cls(node_id, mqtt.topic_root, clock, processor, wake)

    @property
    def counters(self) -> dict[str, int]:
        """For `health.commands`: the processor's accepted/refused counters and the inbox's
        `rate_limited`/`queue_dropped`."""
        return self._processor.counters.as_dict() | self.inbox.counters

    def handle(self, msg: paho.MQTTMessage, send_now: ReplySink, send_later: ReplySink) -> None:
        """Process one incoming command message and answer it (without a handler: `error`).

        The response goes to the request's Response Topic only if it lies in the node's own
        `response/` subtree; a request asking for anything else (another node's topic, a
        wildcard, an over-long topic) is refused and answered on the default topic."""
        try:
            full = msg.topic
        except UnicodeDecodeError:  # the broker checks UTF-8, but never trust one check
            full = ""
        suffix = full[len(self.prefix) :] if full.startswith(self.prefix) else ""
        name = suffix.split("/")[0]
        name = name if command_name_ok(name) else "?"
        props = getattr(msg, "properties", None)
        reply_to = topic(self._topic_root, self._node_id, f"response/{name}")
        problem: str | None = None
        correlation = getattr(props, "CorrelationData", None)
        if correlation is not None and len(correlation) > MAX_CORRELATION_BYTES:
            problem = f"correlation data longer than {MAX_CORRELATION_BYTES} bytes"
            correlation = None
        requested = getattr(props, "ResponseTopic", None)
        if requested:
            requested_problem = response_topic_problem(requested, self.response_base)
            if requested_problem is None:
                reply_to = requested
            else:
                problem = problem or requested_problem
        outcome = self._processor.process(suffix, bytes(msg.payload), problem)
        if isinstance(outcome, Refused):
            if self.inbox.log_refusal():
                log.warning("MQTT: command %r refused: %s (%s)", name, outcome.reason, outcome.detail)
            reason = outcome.reason
            body = response(
                self._node_id, name, self._clock.now(), "rejected", outcome.detail, outcome.request_id, reason
            )
            send_now(reply_to, correlation, body)
            return
        command = outcome
        log.info("MQTT: command %s from %s", command.name, command.identity)
        handler = self.handler

        def reply(result: Result) -> None:
            body = response(
                self._node_id,
                command.name,
                self._clock.now(),
                result.status,
                result.detail,
                command.request_id,
                None,
                result.result,
            )
            send_later(reply_to, correlation, body)

        if handler is None:
            reply(Result("error", "this node has no command handler"))
            return
        try:
            handler.handle_command(command, reply)
        except Exception as exc:  # a handler bug must not kill the outbox
            log.exception("MQTT: command %s failed", command.name)
            reply(Result("error", f"internal error: {type(exc).__name__}"))


def command_prefix(topic_root: str, node_id: str) -> str:
    """`cuas/v1/mast-1/cmd/`: the node subscribes to everything below it."""
    return topic(topic_root, node_id, "cmd") + "/"
