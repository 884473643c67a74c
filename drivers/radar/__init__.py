"""Radar: the TI mmWave out-of-box demo (`ti_frames` data-UART TLV parser, `ti_cli` chirp
configuration over the CLI UART, `ti_driver`), point clustering into detections (`cluster`) and the
learned static clutter map (`static_map`). Profiles for the shipped boards are in `ti_profiles/`."""
