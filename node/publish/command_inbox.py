"""The gate between paho's network thread and the outbox for incoming commands.

Why a gate: anyone who can publish to `cmd/` can send thousands of messages a second (issue 14:
80,000 in 8 s stopped tracks for 22 s, grew the process by 560 MB and wrote one WARNING per
message). Parsing and answering happen on the outbox thread, which also carries tracks and
health, so what reaches it must be bounded *before* any work is done:

* **Rate limits**, token buckets checked on paho's thread before anything is parsed: one per
  commanding client (the `<client>` of `cmd/<name>/<client>`; signed commands without it share
  one), and a global one so that rotating client ids cannot flood either. Allow-listed identities
  (bound to the sender by the broker ACL) skip the global bucket, so a flood from others cannot
  starve the operator. The table of per-client buckets is bounded (least recently used evicted).
* **A bounded queue** (`CAPACITY`): what does not fit is dropped. The outbox takes at most a few
  commands per loop, after its queued publications, so commands never delay tracks.
* **Counted, and logged as a summary**: `rate_limited` and `queue_dropped` go to
  `health.commands`; drops and suppressed refusal lines are logged as one summary line at most
  every `LOG_INTERVAL_S` (`report`, called by the outbox), and refusals themselves at most
  `REFUSALS_LOGGED` per interval (`log_refusal`).

The limits are module constants read at construction (tests change them before building a
publisher); they are generous for people and scripts commanding a node, and tiny for a flood.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import paho.mqtt.client as paho

# The publisher's log lines keep the logger name they always had (operators filter on it).
log = logging.getLogger("cuas_node.publish.mqtt")

CLIENT_RATE = 2.0  # commands per second per client, sustained
CLIENT_BURST = 10  # ... and at once
GLOBAL_RATE = 10.0  # commands per second from all clients that are not allow-listed
GLOBAL_BURST = 30
CAPACITY = 64  # commands waiting for the outbox
MAX_CLIENTS = 1024  # per-client buckets remembered
LOG_INTERVAL_S = 10.0
REFUSALS_LOGGED = 3  # refusal lines per interval; the rest are counted in the summary


@dataclass
class TokenBucket:
    """`rate` tokens per second up to `burst`; a message costs one."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class CommandInbox:
    """Rate-limited, bounded queue of (connection generation, message); thread-safe."""

    def __init__(
        self,
        prefix: str,
        wake: Callable[[], None],
        allowed: Iterable[str],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._prefix = prefix
        self._wake = wake
        self._allowed = frozenset(allowed)
        self._monotonic = monotonic
        self.capacity = CAPACITY
        self._client_rate, self._client_burst = CLIENT_RATE, float(CLIENT_BURST)
        self._max_clients = MAX_CLIENTS
        self._log_interval_s = LOG_INTERVAL_S
        self._refusals_per_interval = REFUSALS_LOGGED
        now = monotonic()
        self._global = TokenBucket(GLOBAL_RATE, GLOBAL_BURST, GLOBAL_BURST, now)
        self._lock = threading.Lock()
        self._queue: deque[tuple[int, paho.MQTTMessage]] = deque()
        self._clients: OrderedDict[str, TokenBucket] = OrderedDict()
        self.high_water = 0  # the most commands ever waiting at once
        self._rate_limited = 0
        self._queue_dropped = 0
        # Since the last summary line.
        self._unlogged = {"rate": 0, "full": 0, "refusals": 0}
        self._last_summary = now  # the start of what the next summary covers
        self._summaries = 0  # the first one is logged at once, the next after LOG_INTERVAL_S
        self._window_start = now
        self._refusals_in_window = 0

    # -- paho's network thread -----------------------------------------------------------------

    def offer(self, gen: int, msg: paho.MQTTMessage) -> None:
        """Queue `msg` (of connection `gen`) unless rate-limited or full; never raises, because
        an exception here would end paho's network thread."""
        try:
            self._offer(gen, msg)
        except Exception:  # a bug here must cost one message, not the connection
            log.exception("MQTT: command dropped by an internal error")

    def _offer(self, gen: int, msg: paho.MQTTMessage) -> None:
        client = self._client_of(msg)
        now = self._monotonic()
        with self._lock:
            bucket = self._clients.get(client)
            if bucket is None:
                bucket = TokenBucket(self._client_rate, self._client_burst, self._client_burst, now)
                self._clients[client] = bucket
                if len(self._clients) > self._max_clients:
                    self._clients.popitem(last=False)
            else:
                self._clients.move_to_end(client)
            if not bucket.take(now) or (client not in self._allowed and not self._global.take(now)):
                self._rate_limited += 1
                self._unlogged["rate"] += 1
                return
            if len(self._queue) >= self.capacity:
                self._queue_dropped += 1
                self._unlogged["full"] += 1
                return
            was_empty = not self._queue
            self._queue.append((gen, msg))
            self.high_water = max(self.high_water, len(self._queue))
        if was_empty:
            self._wake()  # one wake-up per non-empty queue, not one per message

    def _client_of(self, msg: paho.MQTTMessage) -> str:
        """The commanding client's identity: `<client>` of `cmd/<name>/<client>`, "" without one."""
        try:
            full = msg.topic
        except UnicodeDecodeError:
            return "?"
        levels = full[len(self._prefix) :].split("/", 2)
        return levels[1][:128] if len(levels) > 1 else ""

    # -- the outbox thread ---------------------------------------------------------------------

    def take(self, limit: int) -> list[tuple[int, paho.MQTTMessage]]:
        """Up to `limit` queued commands, oldest first."""
        with self._lock:
            count = min(limit, len(self._queue))
            return [self._queue.popleft() for _ in range(count)]

    @property
    def depth(self) -> int:
        """Commands waiting now."""
        with self._lock:
            return len(self._queue)

    @property
    def counters(self) -> dict[str, int]:
        """`rate_limited` and `queue_dropped` since start, for `health.commands`."""
        with self._lock:
            return {"rate_limited": self._rate_limited, "queue_dropped": self._queue_dropped}

    def log_refusal(self) -> bool:
        """Whether a refusal may have its own log line (`REFUSALS_LOGGED` per interval); if not,
        it is counted in the next summary line."""
        now = self._monotonic()
        with self._lock:
            if now - self._window_start >= self._log_interval_s:
                self._window_start, self._refusals_in_window = now, 0
            if self._refusals_in_window < self._refusals_per_interval:
                self._refusals_in_window += 1
                return True
            self._unlogged["refusals"] += 1
            return False

    def report(self) -> None:
        """One summary line of what was dropped or not logged, at most every `LOG_INTERVAL_S`
        (called on every outbox tick; silent when there is nothing to say)."""
        now = self._monotonic()
        with self._lock:
            if not any(self._unlogged.values()):
                return
            if self._summaries and now - self._last_summary < self._log_interval_s:
                return
            since = now - self._last_summary
            unlogged = dict(self._unlogged)
            self._unlogged = dict.fromkeys(unlogged, 0)
            self._last_summary = now
            self._summaries += 1
        log.warning(
            "MQTT: commands in the last %.0f s: %d dropped over the rate limit, %d dropped with the "
            "queue full (at most %d waiting), %d refusal(s) not logged; see health.commands",
            since,
            unlogged["rate"],
            unlogged["full"],
            self.high_water,
            unlogged["refusals"],
        )
