"""Driver for a TI mmWave radar running the SDK 3.x out-of-box demo, read from its data UART.

It only listens: configuring the chirp profile over the CLI UART is a separate concern (a later
issue), so the same driver serves a board configured by hand, by the node, or a simulator.
"""

from __future__ import annotations

from drivers.base import Driver, SerialTransport, Transport
from drivers.radar_cluster import ClusterOptions, PointClusterer, RadarResolution
from drivers.ti_mmwave import TiFrame, TiFrameParser
from node.clock import Clock
from node.measurement import AnyMeasurement

DATA_BAUDRATE = 921600


class TiMmwaveDriver(Driver[TiFrame]):
    """One `RadarDetection` per cluster of moving points in each frame."""

    kind = "ti-mmwave"

    def __init__(
        self,
        sensor_id: str,
        transport: Transport,
        clock: Clock,
        *,
        options: ClusterOptions | None = None,
        clusterer: PointClusterer | None = None,
        resolution: RadarResolution | None = None,
        parser: TiFrameParser | None = None,
    ) -> None:
        """`options` (from the config file) or a ready `clusterer` (e.g. with a custom clutter filter)."""
        if options is not None and clusterer is not None:
            raise ValueError("give either options or clusterer, not both")
        super().__init__(sensor_id, transport, parser or TiFrameParser(), clock)
        self.clusterer = clusterer or PointClusterer.from_options(options or ClusterOptions())
        self.resolution = resolution or RadarResolution()

    @classmethod
    def from_port(
        cls,
        sensor_id: str,
        port: str,
        clock: Clock,
        *,
        baudrate: int = DATA_BAUDRATE,
        options: ClusterOptions | None = None,
        clusterer: PointClusterer | None = None,
        resolution: RadarResolution | None = None,
    ) -> TiMmwaveDriver:
        """The usual wiring: the board's data port (e.g. /dev/ttyACM1 on an XDS110 EVM)."""
        transport = SerialTransport(port, baudrate)
        return cls(sensor_id, transport, clock, options=options, clusterer=clusterer, resolution=resolution)

    def to_measurements(self, record: TiFrame, t_capture: float, t_receive: float) -> list[AnyMeasurement]:
        return list(
            self.clusterer.detections(
                record.points,
                record.snr_db,
                sensor_id=self.sensor_id,
                t_capture=t_capture,
                t_receive=t_receive,
                resolution=self.resolution,
            )
        )
