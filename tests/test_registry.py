"""Config entries become the right drivers, and a missing device is an OSError the runtime retries."""

from __future__ import annotations

import math

import pytest

from cuas_node.config import FpvRx5808Sensor, build_config
from cuas_node.driver_factory import build_driver, fpv_receivers
from cuas_node.kernel.clock import SystemClock


def _sensors() -> list[dict[str, object]]:
    return [
        {"kind": "nmea", "id": "gps", "port": "/dev/cuas-test-none-1"},
        {"kind": "ti-mmwave", "id": "radar", "port": "/dev/cuas-test-none-2", "model": "xwr1642"},
        {"kind": "remoteid", "id": "rid", "port": "/dev/cuas-test-none-3", "format": "drone-mesh-mapper"},
        {
            "kind": "fpv-rx5808",
            "id": "fpv",
            "receivers": [
                {"adc_channel": 0, "boresight_deg": -45, "beamwidth_deg": 60},
                {"adc_channel": 1, "boresight_deg": 45, "beamwidth_deg": 60},
            ],
        },
    ]


def test_every_kind_builds_its_driver_and_missing_hardware_is_an_oserror() -> None:
    config = build_config({"node": {"id": "n"}, "sensors": _sensors()}, "test")
    drivers = [build_driver(s, SystemClock()) for s in config.sensors]
    assert [d.kind for d in drivers] == ["nmea", "ti-mmwave", "remoteid", "fpv-rx5808"]
    for driver in drivers:
        with pytest.raises(OSError):
            driver.open()  # no such port / no Pi: the runtime logs once and retries with back-off


def test_fpv_receivers_from_config() -> None:
    sensor = FpvRx5808Sensor.model_validate(_sensors()[3])
    receivers = fpv_receivers(sensor)
    assert [r.adc_channel for r in receivers] == [0, 1]
    assert receivers[0].antenna.boresight_rad == pytest.approx(math.radians(-45))
    assert receivers[1].antenna.directional


def test_fpv_hysteresis_must_be_consistent() -> None:
    from cuas_node.config import ConfigError

    with pytest.raises(ConfigError, match="exit_db"):
        build_config(
            {
                "node": {"id": "n"},
                "sensors": [{"kind": "fpv-rx5808", "id": "f", "enter_db": 5, "exit_db": 8}],
            },
            "test",
        )
