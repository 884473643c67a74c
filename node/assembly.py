"""The composition root's translations: a validated `Config` into the frozen values each layer takes.

Fusion and the core step never see the configuration file's models; the runtime, replay, eval
and `track` build them here, so every entry point wires the node the same way. What fusion
alone takes is `cuas_node.fusion_setup` (the calibration tools use it without the core step);
drivers are built from the same config by `cuas_node.driver_factory`.
"""

from __future__ import annotations

from collections.abc import Iterable

from cuas_node.config import Config, ZoneSection
from cuas_node.core.step import CoreParams, CoreSetup
from cuas_node.core.zones import ZoneSpec
from cuas_node.fusion_setup import fusion_setup


def core_params(config: Config) -> CoreParams:
    return CoreParams(
        reorder_window_s=config.fusion.reorder_window_s,
        tracks_max_rate_hz=config.mqtt.tracks_max_rate_hz,
        alert_update_s=config.fusion.alert_update_s,
        alert_clear_s=config.fusion.alert_clear_s,
        rid_only_alerts_per_min=config.fusion.rid_only_alerts_per_min,
    )


def zone_specs(sections: Iterable[ZoneSection]) -> tuple[ZoneSpec, ...]:
    return tuple(
        ZoneSpec(
            id=z.id,
            level=z.level,
            polygon=tuple((float(lat), float(lon)) for lat, lon in z.polygon),
            floor_m=z.floor_m,
            ceiling_m=z.ceiling_m,
            classes=frozenset(z.classes),
        )
        for z in sections
    )


def core_setup(config: Config) -> CoreSetup:
    return CoreSetup(fusion_setup(config), core_params(config), zone_specs(config.zones))
