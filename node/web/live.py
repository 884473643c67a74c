"""The live state the page shows and its fan-out to browsers, in two halves:

* `Handoff`, the only part other threads touch: `offer(name, bytes)` keeps the latest `tracks`,
  `health` and `info` document (older ones are superseded, so a burst never queues up) and every
  `alerts` message (bounded), and wakes the server's event loop at most once per batch. O(1) and
  never blocking: it runs on the fusion thread.
* `Live`, owned by the event loop: the latest documents, the active alerts, and the connected
  live-update clients. It sends at most `MAX_RATE_HZ` batches a second; each client has a bounded
  queue of pending events, and a client whose queue is full (it does not read) is dropped and
  counted (`slow_dropped` in health's `web` block).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

MAX_RATE_HZ = 5.0  # live updates to browsers, at most
CLIENT_QUEUE = 32  # pending events per client; full = a slow client, dropped
ALERTS_PENDING = 512  # alert messages waiting for the loop (a flood beyond this loses the oldest)
DOCUMENTS = ("info", "tracks", "health", "scene")


def sse(event: str, data: bytes) -> bytes:
    """One Server-Sent Event (the node's JSON is compact: one line, no newline inside)."""
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


class Handoff:
    """Documents from the publisher's thread to the server's loop (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, bytes] = {}
        self._alerts: deque[bytes] = deque(maxlen=ALERTS_PENDING)
        self._woken = False
        self.wake: Callable[[], None] | None = None  # set by the server once its loop runs

    def offer(self, name: str, data: bytes) -> None:
        with self._lock:
            if name == "alerts":
                self._alerts.append(data)
            elif name in DOCUMENTS:
                self._latest[name] = data
            else:
                return
            if self._woken or self.wake is None:
                return
            self._woken = True
            wake = self.wake
        wake()

    def take(self) -> tuple[dict[str, bytes], list[bytes]]:
        with self._lock:
            latest, self._latest = self._latest, {}
            alerts = list(self._alerts)
            self._alerts.clear()
            self._woken = False
        return latest, alerts


class Client:
    """One live-update connection: its queue of encoded events (None ends it)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=CLIENT_QUEUE)
        self.drop: Callable[[], None] = lambda: None  # closes the connection (set by the handler)


class Live:
    """The loop-side state (module docstring). Not thread-safe except `counters()`."""

    def __init__(self, max_clients: int) -> None:
        self.docs: dict[str, bytes] = {}
        self.alerts: dict[str, dict[str, Any]] = {}  # active alerts by alert_id (latest message)
        self.clients: set[Client] = set()
        self.max_clients = max_clients
        self._pending: dict[str, bytes] = {}
        self._pending_alerts: list[bytes] = []
        self._last_flush = 0.0
        self._flush_scheduled = False
        self._lock = threading.Lock()  # only for the counters, which the health block reads
        self._counts = {"connections": 0, "slow_dropped": 0, "refused": 0, "unauthorised": 0, "requests": 0}

    # -- counters (read from the fusion thread) -------------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def counters(self) -> dict[str, int]:
        with self._lock:
            out = dict(self._counts)
        out["clients"] = len(self.clients)
        return out

    # -- documents in ----------------------------------------------------------------------------

    def receive(self, latest: dict[str, bytes], alerts: list[bytes]) -> None:
        """Apply what the handoff held and schedule the next batch to the clients."""
        self.docs.update(latest)
        self._pending.update(latest)
        for data in alerts:
            self._note_alert(data)
        self._pending_alerts.extend(alerts)
        self._schedule()

    def _note_alert(self, data: bytes) -> None:
        try:
            alert = json.loads(data)
            alert_id = alert["alert_id"]
        except (ValueError, KeyError, TypeError):
            return
        if alert.get("state") == "cleared":
            self.alerts.pop(alert_id, None)
        else:
            self.alerts[alert_id] = alert

    def alerts_document(self) -> bytes:
        """`GET /api/alerts`: the latest message of every alert not cleared, oldest first."""
        active = sorted(self.alerts.values(), key=lambda a: (a.get("since", 0.0), a["alert_id"]))
        return json.dumps({"type": "alerts", "alerts": active}, separators=(",", ":")).encode()

    def _schedule(self) -> None:
        if self._flush_scheduled or not (self._pending or self._pending_alerts):
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last_flush + 1.0 / MAX_RATE_HZ - time.monotonic())
        self._flush_scheduled = True
        loop.call_later(delay, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._last_flush = time.monotonic()
        events = [sse("alert", data) for data in self._pending_alerts]
        events += [sse(name, self._pending[name]) for name in DOCUMENTS if name in self._pending]
        self._pending.clear()
        self._pending_alerts.clear()
        if events:
            self.broadcast(b"".join(events))

    # -- clients ---------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """What a new client gets first: every latest document and the active alerts."""
        # The scene is fetched with the page (`GET /api/scene`); only its changes are streamed.
        events = [sse(name, self.docs[name]) for name in DOCUMENTS if name in self.docs and name != "scene"]
        events.append(sse("alerts", self.alerts_document()))
        return b"".join(events)

    def broadcast(self, chunk: bytes) -> None:
        for client in list(self.clients):
            try:
                client.queue.put_nowait(chunk)
            except asyncio.QueueFull:
                self.clients.discard(client)
                self.count("slow_dropped")
                client.drop()

    def close_all(self) -> None:
        for client in list(self.clients):
            self.clients.discard(client)
            client.drop()
