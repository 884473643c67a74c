"""Calibration data and the procedures that produce it (mount pose, time offsets)."""
