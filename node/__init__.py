"""cuas-node: the daemon core (config, runtime, fusion, publishing, CLI)."""

__version__ = "0.1.0"
SCHEMA_VERSION = "1.2"
