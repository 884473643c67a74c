"""One supervised thread per standard output: a bounded queue in, a peer connection out.

Why a thread and a queue per output: the fusion thread hands each output the step's typed reports
with a non-blocking `submit` and moves on, so a slow, dead or refusing peer (a TAK server, a
SAPIENT middleware) never delays fusion, MQTT or another output. When the queue is full the
oldest item is dropped and counted (a newer track report supersedes an older one). The thread
connects, sends, and on any failure closes, records the error and reconnects with exponential
back-off; an unexpected exception (a bug in an encoder) is logged with its traceback once per
outage and handled the same way, so an output never dies silently behind a `connected` state.

What is standard-specific lives in two small objects: a `Link` (the transport: TCP, TLS, UDP)
and a `Codec` (the standard: typed reports in, frames out, plus what it sends on connect and
periodically, and its last words on a clean stop: SAPIENT's goodbye). The worker owns the queue,
the timing and the health entry.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cuas_node.kernel.reports import NodePosition, TrackReport
from cuas_node.outputs.handoff import DropOldestQueue, health_entry

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
GOODBYE_TIMEOUT_S = 1.0  # a clean stop waits at most this long to say goodbye (a peer may be dead)
GOODBYE_LINGER_S = 0.3  # and keeps the connection open this long after it (see `_goodbye`)
STATES = ("connecting", "connected", "disconnected", "stopped")


@dataclass(frozen=True, slots=True)
class TracksItem:
    """The reports of one `tracks` step (the same list the MQTT publisher gets)."""

    t: float
    tracks: tuple[TrackReport, ...]


@dataclass(frozen=True, slots=True)
class PositionItem:
    """The node's own position changed (GPS fix, or the configured one at start)."""

    position: NodePosition | None


Item = TracksItem | PositionItem


class Link(Protocol):
    """A connection to one peer. Every method may raise `OSError` (or `ConnectionError`): the
    worker then closes the link and reconnects after a back-off."""

    @property
    def target(self) -> str:
        """Where it goes, for logs and health (`tcp://tak.local:8087`; never a secret)."""
        ...

    def open(self, timeout_s: float) -> None: ...
    def send(self, frames: Sequence[bytes], timeout_s: float | None = None) -> None:
        """Send `frames` in order, blocking up to `timeout_s` (None: the link's own limit)."""
        ...

    def wait(self, timeout_s: float) -> None:
        """Idle for up to `timeout_s` while servicing the connection (read and discard what the
        peer sends); raise `ConnectionError` when the peer has closed it."""
        ...

    def close(self) -> None: ...


class Codec(Protocol):
    """A standard's mapping: typed reports in, encoded frames out."""

    def on_connect(self, now: float) -> list[bytes]: ...
    def encode(self, item: Item, now: float) -> list[bytes]: ...
    def periodic(self, now: float) -> list[bytes]: ...
    def on_stop(self, now: float) -> list[bytes]:
        """What the peer must hear before a clean stop closes the connection (may be none)."""
        ...


class OutputWorker:
    """Runs one output: `submit` from the fusion thread, everything else on its own thread."""

    def __init__(
        self,
        name: str,
        kind: str,
        link: Link,
        codec: Codec,
        now: Callable[[], float],
        queue_size: int = 256,
        connect_timeout_s: float = 5.0,
        idle_s: float = 0.1,
    ) -> None:
        self.name = name
        self.kind = kind
        self.link = link
        self.codec = codec
        self._now = now
        self._queue: DropOldestQueue[Item] = DropOldestQueue(queue_size)
        self._stop = threading.Event()
        self._connect_timeout_s = connect_timeout_s
        self._idle_s = idle_s
        self.state = "disconnected"
        self.connected_since: float | None = None
        self.sent = 0
        self.errors = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"output-{name}", daemon=True)

    # -- the fusion thread's side -----------------------------------------------------------

    def submit(self, item: Item) -> None:
        """Queue `item` without blocking; when the queue is full the oldest item is dropped."""
        self._queue.put(item)

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to send what is queued and its goodbye, then close (returns at once)."""
        self._stop.set()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Let the thread send what is queued and its goodbye (best effort, up to `timeout_s`),
        then close."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)
        self.state = "stopped"

    def health(self) -> dict[str, Any]:
        """This output's entry in `health.outputs` (docs/mqtt.md)."""
        return health_entry(
            name=self.name,
            kind=self.kind,
            target=self.link.target,
            state=self.state,
            connected_since=self.connected_since,
            sent=self.sent,
            queue=self._queue,
            last_error=self.last_error,
        )

    # -- the output thread ----------------------------------------------------------------

    def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        reported = False  # one log line per outage, not one per retry
        while not self._stop.is_set():
            self.state = "connecting"
            try:
                self.link.open(self._connect_timeout_s)
                self.state = "connected"
                self.connected_since = self._now()
                log.info("output %s: connected to %s", self.name, self.link.target)
                backoff = BACKOFF_MIN_S
                reported = False
                self._send(self.codec.on_connect(self._now()))
                self._serve()
            except Exception as exc:
                self.errors += 1
                self.last_error = _describe(exc)
                if not reported:
                    if isinstance(exc, OSError):
                        log.warning("output %s (%s): %s", self.name, self.link.target, self.last_error)
                    else:
                        log.exception("output %s (%s) failed", self.name, self.link.target)
                    reported = True
            finally:
                self._close()
            if self._stop.is_set():
                break
            self._stop.wait(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2.0, BACKOFF_MAX_S)
        self._drop_rest()
        self.state = "stopped"

    def _serve(self) -> None:
        """Connected: send what arrives and what is due; on stop, flush the queue and return."""
        next_tick = time.monotonic()
        while True:
            item = self._queue.take()
            if item is not None:
                try:
                    self._send(self.codec.encode(item, self._now()))
                except Exception:
                    self._queue.lost()  # the item in flight is lost with the connection (or the bug)
                    raise
                continue
            if self._stop.is_set():
                self._goodbye()
                return
            mono = time.monotonic()
            if mono >= next_tick:
                self._send(self.codec.periodic(self._now()))
                next_tick = mono + 1.0
            self.link.wait(self._idle_s)

    def _goodbye(self) -> None:
        """A clean stop: the codec's last words, sent within GOODBYE_TIMEOUT_S so that a peer
        that stopped reading cannot hold the node's stop. The connection then stays open for
        GOODBYE_LINGER_S before the link's `close` ends it: a middleware may read ahead and drop
        what it has not processed yet when the stream ends (Apex 4.2.0 does), and nothing in the
        standard acknowledges a goodbye, so a short grace period is the only way to have it heard."""
        frames = self.codec.on_stop(self._now())
        if frames:
            self.link.send(frames, timeout_s=GOODBYE_TIMEOUT_S)
            self.sent += len(frames)
            with contextlib.suppress(OSError):  # the peer closing first has read everything
                self.link.wait(GOODBYE_LINGER_S)

    def _send(self, frames: list[bytes]) -> None:
        if frames:
            self.link.send(frames)
            self.sent += len(frames)

    def _close(self) -> None:
        was_connected = self.state == "connected"
        self.state = "disconnected"
        self.connected_since = None
        try:
            self.link.close()
        except Exception:
            log.debug("output %s: error while closing", self.name, exc_info=True)
        if was_connected and not self._stop.is_set():
            log.warning("output %s: lost %s (%s)", self.name, self.link.target, self.last_error)

    def _drop_rest(self) -> None:
        self._queue.drop_all()


def _describe(exc: BaseException) -> str:
    """A readable one-line error: `ConnectionRefusedError: [Errno 111] Connection refused`."""
    text = str(exc) or exc.__class__.__doc__ or ""
    return f"{type(exc).__name__}: {text.strip().splitlines()[0] if text.strip() else ''}".rstrip(": ")
