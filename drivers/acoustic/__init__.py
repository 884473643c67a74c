"""Acoustic array sensor: framed-PCM protocol, geometry, SRP-PHAT direction finding, drone detector."""

from drivers.acoustic.driver import AcousticArrayDriver, AcousticPipeline
from drivers.acoustic.geometry import ArrayGeometry, preset, resolve

__all__ = ["AcousticArrayDriver", "AcousticPipeline", "ArrayGeometry", "preset", "resolve"]
