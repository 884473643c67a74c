"""Which driver serves which sensor kind: the one place that maps config entries to driver objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cuas_node.config import (
    AcousticArraySensor,
    FpvRx5808Sensor,
    GenericRadarSensor,
    NmeaSensor,
    RemoteIdSensor,
    SensorConfig,
    TiMmwaveSensor,
)
from cuas_node.drivers.driver import SensorDriver, SensorHealth
from cuas_node.kernel.clock import Clock
from cuas_node.kernel.measurement import AnyMeasurement, SensorState


class UnsupportedSensor(Exception):
    """A configured sensor kind that this version has no driver for."""


class NoRadarInput(UnsupportedSensor, OSError):
    """A `radar` sensor opened by `run` with nothing to read its detections from. An `OSError`
    too, so the supervisor reports it as one line (no traceback) and keeps the sensor `down` with
    this message as its detail, while the node's other sensors run."""


class AwaitingInput:
    """The driver of a `radar` sensor in `run`: such a radar has no serial protocol of its own
    (its detections reach fusion through `cuas-node track`, or a future network input), so the
    config is valid and the core knows the sensor, but opening it says why nothing will come."""

    kind = "radar"

    def __init__(self, sensor_id: str) -> None:
        self.sensor_id = sensor_id
        self.state = SensorState.DOWN
        self.detail = "not opened"

    def open(self) -> None:
        raise NoRadarInput(
            f"sensor {self.sensor_id!r}: a `radar` sensor has no input in `cuas-node run` in this version "
            "(its detections are fed by `cuas-node track`); set enabled = false for it in run's config"
        )

    def read(self) -> list[AnyMeasurement]:
        return []

    def close(self) -> None:
        return None

    def health(self) -> SensorHealth:
        return SensorHealth(self.sensor_id, self.kind, self.state, 0, None, detail=self.detail)


def build_driver(
    sensor: SensorConfig, clock: Clock, hardware: Mapping[str, tuple[Any, Any]] | None = None
) -> SensorDriver:
    """The driver for one configured sensor. `hardware` maps a sensor id to injected bus objects
    (the simulator's register-level models) for sensors that are not serial ports."""
    if isinstance(sensor, NmeaSensor):
        from cuas_node.drivers.nmea.driver import NmeaDriver

        return NmeaDriver.from_port(sensor.id, sensor.port, clock, baudrate=sensor.baudrate)
    if isinstance(sensor, TiMmwaveSensor):
        from cuas_node.drivers.radar.cluster import ClusterOptions, RadarResolution
        from cuas_node.drivers.radar.static_map import StaticClutterMap
        from cuas_node.drivers.radar.ti_driver import TiMmwaveDriver

        static_map = None
        if sensor.static_map_file is not None:
            try:
                static_map = StaticClutterMap.load(sensor.static_map_file)
            except (OSError, ValueError) as exc:
                raise UnsupportedSensor(f"sensor {sensor.id!r}: static_map_file: {exc}") from None
        elif sensor.static_map_learn_frames:
            static_map = StaticClutterMap(learn_frames=sensor.static_map_learn_frames)
        return TiMmwaveDriver.from_port(
            sensor.id,
            sensor.port,
            clock,
            baudrate=sensor.baudrate,
            options=ClusterOptions(doppler_clutter_band_mps=sensor.doppler_clutter_band_mps),
            resolution=RadarResolution.iwr6843() if sensor.model == "iwr6843" else RadarResolution.xwr1642(),
            config_port=sensor.config_port,
            config_baudrate=sensor.config_baudrate,
            cfg_file=sensor.cfg_file,
            model=sensor.model,
            static_map=static_map,
        )
    if isinstance(sensor, GenericRadarSensor):
        return AwaitingInput(sensor.id)
    if isinstance(sensor, RemoteIdSensor):
        from cuas_node.drivers.remoteid.driver import RemoteIdDriver

        return RemoteIdDriver.from_port(
            sensor.id, sensor.port, clock, baudrate=sensor.baudrate, format=sensor.format
        )
    if isinstance(sensor, FpvRx5808Sensor):
        if hardware and sensor.id in hardware:
            from cuas_node.drivers.fpv.scanner import Rx5808Driver

            pins, adc = hardware[sensor.id]
            return Rx5808Driver(
                sensor.id, pins, adc, clock, receivers=fpv_receivers(sensor), settings=fpv_settings(sensor)
            )
        return _fpv_driver(sensor, clock)
    if isinstance(sensor, AcousticArraySensor):
        from cuas_node.drivers.acoustic.detector import configured_detector
        from cuas_node.drivers.acoustic.driver import AcousticArrayDriver

        try:
            detector = configured_detector(
                sensor.background_file, sensor.detection_threshold, sensor.false_alarms_per_hour
            )
        except ValueError as exc:  # BackgroundError: unreadable, damaged, other weights
            raise UnsupportedSensor(f"sensor {sensor.id!r}: background_file: {exc}") from None
        return AcousticArrayDriver.from_port(
            sensor.id,
            sensor.port,
            clock,
            baudrate=sensor.baudrate,
            detector=detector,
            **array_options(sensor),
        )
    raise UnsupportedSensor(f"sensor {sensor.id!r}: kind {sensor.kind!r} has no driver in this version")


def background_mismatch(driver: SensorDriver) -> str:
    """A warning when an acoustic array's site background was learnt on another path than the
    driver's pipeline (one beam, or another array: `Background.mismatch`), else "". Such a file
    still loads, as files written before the path was recorded must; its threshold was set on
    other scores than the driver compares it with, so the pre-flight (`run`, `config check`,
    `doctor`) says so."""
    from cuas_node.drivers.acoustic.driver import AcousticArrayDriver

    if not isinstance(driver, AcousticArrayDriver) or driver.detector.background is None:
        return ""
    return driver.detector.background.mismatch(driver.geometry.identity)


def array_options(sensor: AcousticArraySensor) -> dict[str, Any]:
    """An acoustic array's pipeline settings from its config section: geometry (with its
    channel map), mount pose, direction finding, capsule tolerance. The driver's and `acoustic
    score`'s, so that a recording of the array is scored as its stream is."""
    from cuas_node.drivers.acoustic.doa import DoaOptions
    from cuas_node.drivers.acoustic.geometry import resolve

    return {
        "geometry": resolve(sensor.geometry, sensor.channel_map),
        "pose": sensor.mount.pose(),
        "doa": DoaOptions(band_hz=sensor.band_hz, max_sources=sensor.max_sources),
        "sensitivity_tolerance_db": sensor.sensitivity_tolerance_db,
    }


def fpv_receivers(sensor: FpvRx5808Sensor) -> list[Any]:
    import math

    from cuas_node.drivers.fpv.scanner import AntennaPattern, Receiver, RssiCurve

    curve = RssiCurve(sensor.rssi_v_low, sensor.rssi_dbm_low, sensor.rssi_v_high, sensor.rssi_dbm_high)
    if not sensor.receivers:
        return [Receiver(sensor.adc_channel, curve=curve)]
    return [
        Receiver(
            r.adc_channel,
            antenna=AntennaPattern(
                boresight_rad=math.radians(r.boresight_deg),
                beamwidth_rad=None if r.beamwidth_deg is None else math.radians(r.beamwidth_deg),
                gain_dbi=r.gain_dbi,
            ),
            curve=curve,
        )
        for r in sensor.receivers
    ]


def fpv_settings(sensor: FpvRx5808Sensor) -> Any:
    from cuas_node.drivers.fpv.scanner import ScanSettings

    return ScanSettings(
        bands=sensor.bands,
        exclude=frozenset(sensor.exclude),
        settle_s=sensor.settle_ms / 1000.0,
        enter_db=sensor.enter_db,
        exit_db=sensor.exit_db,
        confirm_sweeps=sensor.confirm_sweeps,
    )


def _fpv_driver(sensor: FpvRx5808Sensor, clock: Clock) -> SensorDriver:
    from cuas_node.drivers.fpv.scanner import Rx5808Driver

    return Rx5808Driver.from_pi(
        sensor.id,
        clock,
        data_pin=sensor.data_pin,
        clock_pin=sensor.clock_pin,
        select_pin=sensor.select_pin,
        bus=sensor.bus,
        cs_pin=sensor.adc_cs_pin,
        receivers=fpv_receivers(sensor),
        settings=fpv_settings(sensor),
    )
