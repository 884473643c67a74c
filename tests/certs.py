"""Self-signed certificates for TLS tests (the web view, CoT clients, SAPIENT peers), by openssl."""

from __future__ import annotations

import subprocess
from pathlib import Path


def self_signed(
    directory: Path, name: str, common_name: str, alt_name: str | None = None
) -> tuple[Path, Path]:
    """(certificate, key) of a one-day self-signed RSA certificate for `common_name`, with
    `alt_name` (e.g. "IP:127.0.0.1", "DNS:localhost") as its subjectAltName when given."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-subj", f"/CN={common_name}"]
    if alt_name is not None:
        command += ["-addext", f"subjectAltName={alt_name}"]
    made = subprocess.run([*command, "-keyout", str(key), "-out", str(cert)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    return cert, key
