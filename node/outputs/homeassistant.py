"""The Home Assistant output: MQTT discovery on the broker the node already publishes to.

Why no connection of its own: HA reads discovery from the broker its MQTT integration uses, and
the node is already connected to a broker with its credentials, TLS, ACL entry and Last Will. The
output hands retained documents to the node's MQTT publisher (`MqttPublisher.retain`), which
publishes them on every connect (a broker restarted without persistence gets them back), like
`status`. What it shows it takes from the documents the publisher sends
(`MqttPublisher.add_listener`): `ha_state.py` turns them into the state document,
`ha_discovery.py` builds the config documents.

Like every output it runs on its own thread behind a bounded queue (the listener only appends,
on the fusion thread), and has a health entry. Its "connection" is the node's MQTT link.

**Removal.** The node keeps the list of HA topics it holds retained on the broker in
`<node.state_dir>/homeassistant.json`. When the output is disabled (`enabled = false`) or its
section is gone, the node publishes an empty retained payload on each of those topics (and, with
`enabled = false`, on every topic it would publish), so HA removes the entities; the file is
deleted once the broker has acknowledged every removal, and kept (the next start tries again)
until then. Topics that a config change leaves behind (a sensor removed, another prefix) are
removed the same way while the output runs.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from cuas_node.outputs.ha_discovery import HaSettings, discovery, state_topic
from cuas_node.outputs.ha_state import HaState
from cuas_node.outputs.handoff import DropOldestQueue, health_entry

log = logging.getLogger(__name__)

MARKER = "homeassistant.json"
_WANTED = frozenset({"tracks", "alerts", "health", "info"})
_TICK_S = 0.25


class RetainedPublisher(Protocol):
    """What the output needs of the node's MQTT publisher (`cuas_node.publish.mqtt`)."""

    def retain(self, topic: str, data: bytes) -> None: ...
    def retained_confirmed(self, topic: str, data: bytes) -> bool: ...
    def retained_refused(self) -> dict[str, str]: ...
    def add_listener(self, listener: Callable[[str, bytes], None]) -> None: ...

    @property
    def connected(self) -> bool: ...


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def read_marker(state_dir: Path) -> list[str]:
    """The HA topics a previous run left retained on the broker ([] when none or unreadable)."""
    path = state_dir / MARKER
    try:
        data = json.loads(path.read_text())
        return [str(t) for t in data["topics"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("homeassistant: cannot read %s (%s); its topics cannot be removed", path, exc)
        return []


class HomeAssistantOutput:
    """One HA device for the node (`settings`), or, with `enabled` false, the removal of it."""

    name = "homeassistant"
    kind = "homeassistant"

    def __init__(
        self,
        settings: HaSettings,
        publisher: RetainedPublisher,
        state_dir: Path,
        now: Callable[[], float],
        target: str,
        *,
        enabled: bool = True,
        drone_classes: Iterable[str] = ("multirotor", "fixed_wing", "unknown"),
        state_interval_s: float = 1.0,
        alert_expiry_s: float = 30.0,
        queue_size: int = 256,
        known: Iterable[str] = (),
        clear_own: bool | None = None,
    ) -> None:
        self.settings = settings
        self.enabled = enabled
        self.target = target
        self._publisher = publisher
        self._state_dir = state_dir
        self._now = now
        self._interval = state_interval_s
        self._queue: DropOldestQueue[tuple[str, bytes]] = DropOldestQueue(queue_size)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._state = HaState(frozenset(drone_classes), alert_expiry_s)
        self._configs = discovery(settings)
        self._state_topic = state_topic(settings)
        own = [t for t, _ in self._configs] + [self._state_topic]
        self.topics = own if enabled else []
        # Retained HA topics to remove: those a previous run left that are not ours now, and with
        # `clear_own` (default: when disabled) every topic this config would publish.
        clear_own = not enabled if clear_own is None else clear_own
        wanted = [*known, *(own if clear_own and not enabled else [])]
        self._clearing = [t for t in dict.fromkeys(wanted) if t not in self.topics]
        self._last_state: bytes | None = None
        self._last_state_t = -1e18
        self.state = "disconnected"
        self.connected_since: float | None = None
        self.sent = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="output-homeassistant", daemon=True)

    # -- the runtime's side -------------------------------------------------------------------

    def start(self) -> None:
        self._write_marker()
        if self.enabled:
            for topic, doc in self._configs:
                self._retain(topic, encode(doc))
            self._publish_state(force=True)
            self._publisher.add_listener(self._offer)
        for topic in self._clearing:
            self._retain(topic, b"")
        if self._clearing:
            log.info("homeassistant: removing %d retained topic(s) from the broker", len(self._clearing))
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)
        self.state = "stopped"

    def health(self) -> dict[str, Any]:
        return health_entry(
            name=self.name,
            kind=self.kind,
            target=self.target,
            state=self.state,
            connected_since=self.connected_since,
            sent=self.sent,
            queue=self._queue,
            last_error=self.last_error,
        )

    def _offer(self, name: str, data: bytes) -> None:
        """The publisher's listener (fusion thread): append and return, never block."""
        if name not in _WANTED:
            return
        self._queue.put((name, data))
        self._wake.set()

    # -- the output's thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            try:
                self._turn(force=stopping)
            except Exception as exc:  # a bug here must not end the thread (nor touch the node)
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("homeassistant output failed")
            if stopping:
                return
            self._wake.wait(_TICK_S)
            self._wake.clear()

    def _turn(self, force: bool) -> None:
        self._follow_link()
        now = self._now()
        while (taken := self._queue.take()) is not None:
            name, data = taken
            try:
                self._state.take(name, json.loads(data), now)
            except (ValueError, KeyError, TypeError) as exc:
                self.last_error = f"cannot read a {name} document: {type(exc).__name__}: {exc}"
        if self.enabled:
            self._state.expire(now)
            self._publish_state(force)
        self._check_cleared()

    def _follow_link(self) -> None:
        connected = self._publisher.connected
        if connected and self.state != "connected":
            self.state, self.connected_since = "connected", self._now()
        elif not connected and self.state == "connected":
            self.state, self.connected_since = "disconnected", None
        refused = self._publisher.retained_refused()
        mine = sorted(t for t in refused if t in self.topics or t in self._clearing)
        if mine:
            self.last_error = f"broker refused {mine[0]} ({refused[mine[0]]}): check the broker ACL"

    def _publish_state(self, force: bool = False) -> None:
        data = encode(self._state.document())
        if data == self._last_state:
            return
        now = self._now()
        if not force and now - self._last_state_t < self._interval:
            return  # the next turn after the interval sends the latest
        self._retain(self._state_topic, data)
        self._last_state, self._last_state_t = data, now

    def _retain(self, topic: str, data: bytes) -> None:
        self._publisher.retain(topic, data)
        self.sent += 1

    def _check_cleared(self) -> None:
        if not self._clearing:
            return
        left = [t for t in self._clearing if not self._publisher.retained_confirmed(t, b"")]
        if len(left) < len(self._clearing):
            self._clearing = left
            self._write_marker()
            if not left:
                log.info("homeassistant: the broker removed the node's old retained topics")

    def _write_marker(self) -> None:
        """Record every HA topic the node may hold retained (ours and those still being removed);
        none left: delete the file."""
        path = self._state_dir / MARKER
        topics = list(dict.fromkeys([*self.topics, *self._clearing]))
        try:
            if topics:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps({"topics": topics}, indent=1) + "\n")
                tmp.replace(path)
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:
            self.last_error = f"cannot write {path}: {exc}"
            log.warning("homeassistant: cannot write %s (%s)", path, exc)
