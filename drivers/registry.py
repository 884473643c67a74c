"""Which driver serves which sensor kind: the one place that maps config entries to driver objects."""

from __future__ import annotations

from typing import Any

from drivers.base import Driver
from node.clock import Clock
from node.config import NmeaSensor, SensorConfig, TiMmwaveSensor


class UnsupportedSensor(Exception):
    """A configured sensor kind that this version has no driver for."""


def build_driver(sensor: SensorConfig, clock: Clock) -> Driver[Any]:
    if isinstance(sensor, NmeaSensor):
        from drivers.nmea import NmeaDriver

        return NmeaDriver.from_port(sensor.id, sensor.port, clock, baudrate=sensor.baudrate)
    if isinstance(sensor, TiMmwaveSensor):
        from drivers.radar_cluster import ClusterOptions, RadarResolution
        from drivers.ti_driver import TiMmwaveDriver

        return TiMmwaveDriver.from_port(
            sensor.id,
            sensor.port,
            clock,
            baudrate=sensor.baudrate,
            options=ClusterOptions(doppler_clutter_band_mps=sensor.doppler_clutter_band_mps),
            resolution=RadarResolution.iwr6843() if sensor.model == "iwr6843" else RadarResolution.xwr1642(),
        )
    raise UnsupportedSensor(f"sensor {sensor.id!r}: kind {sensor.kind!r} has no driver in this version")
