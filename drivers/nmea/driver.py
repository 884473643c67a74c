"""The GNSS receiver driver: NMEA epochs from a serial port into `GpsFix` measurements."""

from __future__ import annotations

from cuas_node.drivers.driver import Driver
from cuas_node.drivers.nmea.parser import NmeaFix, NmeaParser
from cuas_node.drivers.transport import SerialTransport, Transport
from cuas_node.kernel.clock import Clock
from cuas_node.kernel.measurement import AnyMeasurement, GpsFix


class NmeaDriver(Driver[NmeaFix]):
    """The node's GNSS receiver: yields a GpsFix for every epoch with a valid position."""

    kind = "nmea"

    def __init__(self, sensor_id: str, transport: Transport, clock: Clock) -> None:
        super().__init__(sensor_id, transport, NmeaParser(), clock)

    @classmethod
    def from_port(cls, sensor_id: str, port: str, clock: Clock, baudrate: int = 9600) -> NmeaDriver:
        """A receiver on a serial port (`/dev/serial0` on the Pi); most ship at 9600 baud."""
        return cls(sensor_id, SerialTransport(port, baudrate), clock)

    def to_measurements(self, record: NmeaFix, t_capture: float, t_receive: float) -> list[AnyMeasurement]:
        if not record.valid or record.lat is None or record.lon is None or record.quality is None:
            return []
        # The receiver's own UTC is the best capture time there is; the host clock is the fallback
        # only until a date has been seen.
        return [
            GpsFix(
                sensor_id=self.sensor_id,
                t_capture=record.t if record.t is not None else t_capture,
                t_receive=t_receive,
                lat=record.lat,
                lon=record.lon,
                alt_msl_m=record.alt_msl_m,
                geoid_sep_m=record.geoid_sep_m,
                quality=record.quality,
                num_sats=record.num_sats,
                hdop=record.hdop,
            )
        ]
