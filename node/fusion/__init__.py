"""Fusion: calibration applied, association, filtering and track management on stacked numpy arrays.

Knows nothing of wire formats or configuration files: it takes frozen parameters (`params.py`)
and measurements from the kernel, and returns typed track reports.
"""
