"""The configured standard outputs as one object the runtime feeds beside the MQTT publisher.

`Outputs.from_config` builds one `OutputWorker` per enabled `[[outputs.cot]]` and one for
`[outputs.sapient]`, and the Home Assistant output (`homeassistant.py`) on the node's MQTT
publisher when `[outputs.homeassistant]` is set or a previous run's HA entities must be removed;
the runtime calls
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
from cuas_node.outputs.ha_discovery import HaSettings
from cuas_node.outputs.homeassistant import HomeAssistantOutput, RetainedPublisher, read_marker
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


def homeassistant_settings(config: Config) -> HaSettings:
    """The HA device of this config (the section's prefix and name, else the defaults)."""
    section = config.outputs.homeassistant
    return HaSettings(
        node_id=config.node.id,
        topic_root=config.mqtt.topic_root,
        discovery_prefix=section.discovery_prefix if section is not None else "homeassistant",
        device_name=(section.device_name if section is not None else None) or f"cuas-node {config.node.id}",
        sensors=tuple(s.id for s in config.sensors if s.enabled),
        sw_version=__version__,
        qos=config.mqtt.qos,
    )


def homeassistant_target(config: Config) -> str:
    """Where the HA output goes, for health and doctor: the node's broker and the prefix."""
    return f"mqtt://{config.mqtt.host}:{config.mqtt.port}/{homeassistant_settings(config).discovery_prefix}"


def homeassistant_output(
    config: Config, mqtt: RetainedPublisher, now: Callable[[], float]
) -> HomeAssistantOutput | None:
    """The HA output: enabled, disabled (it removes the entities it would publish and any a
    previous run left), or, with the section gone, removing what a previous run left; None when
    there is nothing to do."""
    section = config.outputs.homeassistant
    known = read_marker(config.node.state_dir)
    if section is None and not known:
        return None
    return HomeAssistantOutput(
        homeassistant_settings(config),
        mqtt,
        config.node.state_dir,
        now,
        homeassistant_target(config),
        enabled=section is not None and section.enabled,
        drone_classes=section.drone_classes if section is not None else (),
        state_interval_s=section.state_interval_s if section is not None else 1.0,
        alert_expiry_s=max(3.0 * config.fusion.alert_update_s, 10.0),
        queue_size=section.queue_size if section is not None else 256,
        known=known,
        clear_own=section is not None,
    )


class Outputs:
    """Zero or more running outputs; every method is safe to call with none."""

    def __init__(
        self, workers: Sequence[OutputWorker] = (), homeassistant: HomeAssistantOutput | None = None
    ) -> None:
        self.workers = list(workers)
        self.homeassistant = homeassistant

    @classmethod
    def from_config(
        cls,
        config: Config,
        session: int,
        now: Callable[[], float],
        mqtt: RetainedPublisher | None = None,
    ) -> Outputs:
        """`mqtt`: the node's MQTT publisher, which the Home Assistant output publishes through
        (without it, as in replay, there is no HA output)."""
        workers = [
            cot_worker(section, index, config, session, now)
            for index, section in enumerate(config.outputs.cot)
            if section.enabled
        ]
        sapient = config.outputs.sapient
        if sapient is not None and sapient.enabled:
            workers.append(sapient_worker(sapient, config, session, now))
        homeassistant = homeassistant_output(config, mqtt, now) if mqtt is not None else None
        return cls(workers, homeassistant)

    def start(self) -> None:
        for worker in self.workers:
            worker.start()
        if self.homeassistant is not None:
            self.homeassistant.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop every output at once (each flushes its queue and says its goodbye in parallel),
        so that the node's stop takes at most `timeout_s` however many outputs are dead."""
        for worker in self.workers:
            worker.request_stop()
        deadline = time.monotonic() + timeout_s
        for worker in self.workers:
            worker.stop(max(deadline - time.monotonic(), 0.0))
        if self.homeassistant is not None:
            self.homeassistant.stop()

    def tracks(self, t: float, tracks: Sequence[TrackReport]) -> None:
        if self.workers:
            item = TracksItem(t, tuple(tracks))
            for worker in self.workers:
                worker.submit(item)

    def position(self, position: NodePosition | None) -> None:
        for worker in self.workers:
            worker.submit(PositionItem(position))

    def health(self) -> list[dict[str, Any]]:
        entries = [worker.health() for worker in self.workers]
        if self.homeassistant is not None:
            entries.append(self.homeassistant.health())
        return entries
