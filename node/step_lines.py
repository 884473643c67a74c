"""What core steps produce, as the JSON lines of `replay` and `track`: one `tracks` line per
tracks message and one `alert` line per zone alert event, in the order they happen.

Every document is built by the wire module (`cuas_node.publish.wire`), as on MQTT; `seq` counts
from 1 per topic in each run, so every line validates against docs/schemas/. The session is the
caller's (`replay_loop.SESSION` for both commands: track ids `0.<n>`).
"""

from __future__ import annotations

from typing import IO

from cuas_node.core.step import StepResult
from cuas_node.publish import wire


class StepLines:
    def __init__(self, node_id: str, session: int, out: IO[str] | None) -> None:
        self.node_id = node_id
        self.session = session
        self.out = out
        self.tracks_messages = 0
        self.alerts = 0

    def write(self, result: StepResult) -> bool:
        """The lines of one step's result; False when it holds no tracks message (nothing written)."""
        if result.tracks is None:
            return False
        session = self.session
        records = [wire.track_record(r, session) for r in result.tracks]
        self.tracks_messages += 1
        self._emit(wire.tracks_message(self.node_id, session, self.tracks_messages, result.t, records))
        for event in result.alerts:
            self.alerts += 1
            record = wire.alert_record(event, session)
            self._emit(wire.alert_message(self.node_id, session, self.alerts, record))
        return True

    def _emit(self, document: dict[str, object]) -> None:
        if self.out is not None:
            self.out.write(wire.dumps(document) + "\n")
