"""HTTP basic authentication against `web.password_file` (any user name: the page is read-only and
has one audience, the technicians of this node).

The password is read once at start; it is compared in constant time and never written anywhere
(log, response, page). Without TLS it crosses the network in base64: docs/web.md says to use
`tls_cert_file` when `bind` is not loopback, and the preflight warns."""

from __future__ import annotations

import base64
import binascii
import hmac
import ssl
from pathlib import Path

from cuas_node.config import ConfigError, WebSection

REALM = 'Basic realm="cuas-node", charset="UTF-8"'


def read_web_password(path: Path) -> str:
    """The password in `path` (surrounding whitespace removed); a clear `ConfigError` otherwise."""
    key = "web.password_file (env CUAS_WEB__PASSWORD_FILE)"
    try:
        password = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError([f"{key}: cannot read: {exc.strerror or exc}"], str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{key}: not UTF-8 text"], str(path)) from None
    if not password:
        raise ConfigError([f"{key}: the file is empty"], str(path))
    return password


def authorised(header: str | None, password: str | None) -> bool:
    """Whether an `Authorization` header carries the password (always true without one)."""
    if password is None:
        return True
    if not header or header[:6].lower() != "basic ":
        return False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    _user, sep, given = decoded.partition(b":")
    return bool(sep) and hmac.compare_digest(given, password.encode("utf-8"))


def tls_context(web: WebSection) -> ssl.SSLContext | None:
    """The server's TLS context when `tls_cert_file`/`tls_key_file` are set (TLS 1.2 or later);
    a clear `ConfigError` when they cannot be read or do not match."""
    if web.tls_cert_file is None or web.tls_key_file is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(web.tls_cert_file, web.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            [
                "web.tls_cert_file, web.tls_key_file (env CUAS_WEB__TLS_CERT_FILE, CUAS_WEB__TLS_KEY_FILE): "
                f"cannot load the certificate and key: {reason}"
            ],
            str(web.tls_cert_file),
        ) from None
    return ctx
