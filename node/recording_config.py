"""A recording's config header, both ways: the running node's config (and the calibration files it
references) into the pcapng header at `record` time, and back into a config for `replay`.

They live together because they are each other's inverse: what one writes, the other must read.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cuas_node import __version__
from cuas_node.config import Config, ConfigError, build_config, deep_merge
from cuas_node.drivers.record_pcapng import HEADER_PREFIX, Recording

log = logging.getLogger(__name__)

CALIBRATION_FIELDS = ("static_map_file", "cfg_file", "background_file", "reflectors_file")


def recording_header(config: Config) -> dict[str, Any]:
    """The node's config (as JSON) and the content of every calibration file it references, so
    replay can rebuild the same drivers and fusion on another machine. Secrets are never in the
    config itself (only paths to them), and the files embedded here are not secret."""
    files: dict[str, str] = {}
    for sensor in config.sensors:
        for name in CALIBRATION_FIELDS:
            path = getattr(sensor, name, None)
            if path is None:
                continue
            try:
                files[str(path)] = base64.b64encode(Path(path).read_bytes()).decode()
            except OSError as exc:
                log.warning("recording: cannot embed %s (%s): %s", name, path, exc)
    return {
        "format": HEADER_PREFIX,
        "software_version": __version__,
        "config": config.model_dump(mode="json"),
        "files": files,
    }


def replay_config(
    recording: Recording, overrides: Mapping[str, Any] | None, workdir: Path, source: str
) -> Config:
    """The recorded config, rebuilt for replay: calibration files restored from the recording,
    recording off, radar CLI ports dropped (nothing answers them), `overrides` (e.g. a broker or
    a node id for `--publish`) merged on top; sensors always come from the recording."""
    header = recording.header
    if header is None or "config" not in header:
        raise ConfigError(
            ["the file carries no cuas-node config header (not made by cuas-node record?)"], source
        )
    data: dict[str, Any] = dict(header["config"])
    restored: dict[str, str] = {}
    for index, (original, content) in enumerate(sorted(header.get("files", {}).items())):
        target = workdir / f"{index}-{Path(original).name}"
        target.write_bytes(base64.b64decode(content))
        restored[original] = str(target)
    sensors = []
    for sensor in data.get("sensors", []):
        entry = dict(sensor)
        for key in CALIBRATION_FIELDS:
            if entry.get(key) is not None:
                entry[key] = restored.get(str(entry[key]), entry[key])
        if entry.get("kind") == "ti-mmwave":
            entry["config_port"] = None
        sensors.append(entry)
    data["sensors"] = sensors
    if overrides:
        extra = dict(overrides)
        extra.pop("sensors", None)
        data = deep_merge(data, extra)
    data["record"] = {**data.get("record", {}), "enabled": False}
    return build_config(data, source)
