"""Sensor drivers: one module per wire protocol, each a sans-IO parser plus the driver that feeds it."""
