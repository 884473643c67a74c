"""The configured standard outputs as one object the runtime feeds beside the MQTT publisher.

`Outputs.from_config` builds one `OutputWorker` per enabled `[[outputs.cot]]` and one for
`[outputs.sapient]`; the runtime calls
`tracks`/`position` from the fusion thread (each a non-blocking queue append per output) and puts
`health()` into its `health` message. A node without outputs gets an empty set that costs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from cuas_node import __version__
from cuas_node.config import Config, CotOutput, SapientOutput
from cuas_node.kernel.reports import NodePosition, TrackReport
from cuas_node.outputs.cot import CotCodec, CotSettings
from cuas_node.outputs.cot_link import CotLink
from cuas_node.outputs.sapient import SapientCodec
from cuas_node.outputs.sapient_link import SapientLink
from cuas_node.outputs.sapient_msgs import SapientSettings, SensorInfo, node_uuid
from cuas_node.outputs.worker import OutputWorker, PositionItem, TracksItem
from cuas_node.web.scene import coverage


def cot_worker(
    section: CotOutput, index: int, config: Config, session: int, now: Callable[[], float]
) -> OutputWorker:
    settings = CotSettings(
        node_id=config.node.id,
        session=session,
        uid_prefix=section.uid_prefix,
        affiliation=section.affiliation,
        track_rate_hz=section.track_rate_hz,
        coast_s=config.fusion.delete_after_s,
        node_marker_interval_s=section.node_marker_interval_s,
        sensor_kinds={s.id: s.kind for s in config.sensors},
    )
    link = CotLink(section.url, section.tls_cert_file, section.tls_key_file, section.tls_ca_file)
    name = section.name or f"cot{index}"
    return OutputWorker(name, "cot", link, CotCodec(settings), now, queue_size=section.queue_size)


def sapient_settings(section: SapientOutput, config: Config, session: int) -> SapientSettings:
    return SapientSettings(
        node_id=config.node.id,
        node_uuid=section.node_id or node_uuid(config.node.id),
        session=session,
        sensors=tuple(SensorInfo(s.id, s.kind, coverage(s)) for s in config.sensors if s.enabled),
        status_interval_s=section.status_interval_s,
        software_version=__version__,
    )


def sapient_link(section: SapientOutput, handler: Any) -> SapientLink:
    return SapientLink(
        section.host,
        section.port,
        handler,
        tls=section.tls,
        tls_ca_file=section.tls_ca_file,
        tls_cert_file=section.tls_cert_file,
        tls_key_file=section.tls_key_file,
    )


def sapient_worker(
    section: SapientOutput, config: Config, session: int, now: Callable[[], float]
) -> OutputWorker:
    """The SAPIENT ASM output; message timestamps use the wall clock (the peer checks them)."""
    codec = SapientCodec(sapient_settings(section, config, session), time.time)
    link = sapient_link(section, codec)
    return OutputWorker("sapient", "sapient", link, codec, now, queue_size=section.queue_size)


class Outputs:
    """Zero or more running outputs; every method is safe to call with none."""

    def __init__(self, workers: Sequence[OutputWorker] = ()) -> None:
        self.workers = list(workers)

    @classmethod
    def from_config(cls, config: Config, session: int, now: Callable[[], float]) -> Outputs:
        workers = [
            cot_worker(section, index, config, session, now)
            for index, section in enumerate(config.outputs.cot)
            if section.enabled
        ]
        sapient = config.outputs.sapient
        if sapient is not None and sapient.enabled:
            workers.append(sapient_worker(sapient, config, session, now))
        return cls(workers)

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop every output at once (each flushes its queue and says its goodbye in parallel),
        so that the node's stop takes at most `timeout_s` however many outputs are dead."""
        for worker in self.workers:
            worker.request_stop()
        deadline = time.monotonic() + timeout_s
        for worker in self.workers:
            worker.stop(max(deadline - time.monotonic(), 0.0))

    def tracks(self, t: float, tracks: Sequence[TrackReport]) -> None:
        if self.workers:
            item = TracksItem(t, tuple(tracks))
            for worker in self.workers:
                worker.submit(item)

    def position(self, position: NodePosition | None) -> None:
        for worker in self.workers:
            worker.submit(PositionItem(position))

    def health(self) -> list[dict[str, Any]]:
        return [worker.health() for worker in self.workers]
