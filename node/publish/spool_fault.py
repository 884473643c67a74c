"""Whether the spool can use its card: `ok`, or `degraded` with the reason, said once.

Why a separate object: a card that fails (full, turned read-only after I/O errors, a directory the
service may not write) fails for every write, several times a second. The spool must then keep
working from memory, say so in **one** log line (not one per message), show it in health
(`spool.state`, `spool.error`), touch the card again only every `retry_s` (so a full card does not
collect an empty segment file per message), and notice by itself when the card works again (one
more line). Each kind of operation (`segment`: create, write or sync a segment; `cursor`: save the
delivery position; `delete`: remove a delivered segment) fails and recovers on its own; the spool
is degraded while any of them is failing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

# The spool's log lines keep the logger name they always had (operators filter on it).
log = logging.getLogger("cuas_node.publish.spool")

RETRY_S = 5.0  # how often a failing card is tried again

_CONSEQUENCE = {
    "segment": "keeping new messages in memory (still delivered in order, up to the spool's size "
    "bound, but lost if the node dies)",
    "cursor": "the delivery position is not saved (after a crash more messages are sent twice)",
    "delete": "delivered segments stay on the card (sent again after a restart)",
}


class DiskFault:
    """The card's state as the spool sees it (see the module docstring for the why)."""

    def __init__(
        self, directory: Path, retry_s: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.directory = directory
        self.retry_s = RETRY_S if retry_s is None else retry_s  # read here: tests shorten RETRY_S
        self._clock = clock
        self._failing: dict[str, str] = {}  # kind -> what went wrong
        self._retry_at: dict[str, float] = {}
        self.error = ""  # the latest failure, while degraded

    @property
    def state(self) -> str:
        """`ok`, or `degraded` while any kind of operation is failing."""
        return "degraded" if self._failing else "ok"

    def failing(self, kind: str) -> bool:
        return kind in self._failing

    def may_try(self, kind: str) -> bool:
        """Whether to touch the card for `kind` now: always while it works, every `retry_s` after
        a failure."""
        return kind not in self._failing or self._clock() >= self._retry_at[kind]

    def failed(self, kind: str, what: str, exc: OSError | str) -> None:
        """`what` (e.g. "cannot create seg-….log") failed with `exc`: degrade, logged once."""
        reason = exc if isinstance(exc, str) else (exc.strerror or str(exc))
        text = f"{what} in {self.directory} ({reason})"
        first = not self._failing
        new_kind = kind not in self._failing
        self._failing[kind] = text
        self._retry_at[kind] = self._clock() + self.retry_s
        self.error = text
        if first:
            log.error("spool: %s; %s; trying again every %g s", text, _CONSEQUENCE[kind], self.retry_s)
        elif new_kind:
            log.debug("spool: also %s", text)

    def succeeded(self, kind: str) -> None:
        """`kind` worked: when nothing else is failing, the card is fine again (logged once)."""
        if kind not in self._failing:
            return
        if len(self._failing) > 1:
            del self._failing[kind]
            self.error = next(iter(self._failing.values()))
            return
        # Logged before health turns ok (`_failing` emptied: another thread may ask at any time),
        # so that whoever sees "ok" finds the line that says why.
        log.warning("spool: %s can be written again; new messages are crash-safe again", self.directory)
        del self._failing[kind]
        self.error = ""

    def health(self) -> dict[str, str]:
        """`state`, and `error` while degraded."""
        return {"state": "degraded", "error": self.error} if self._failing else {"state": "ok"}
