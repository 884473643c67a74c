"""The TAK transport of a CoT output: `udp://`, `tcp://` or `tls://` through pytak.

Why pytak and how it fits a threaded node: pytak (PyPI, Apache-2.0, pure Python) is the maintained
TAK client library; its `protocol_factory` opens exactly the transports TAK uses (UDP unicast and
multicast, TCP, mutual TLS with hostname checking) but is asyncio code. Its worker classes and
`CLITool` would want the whole process as an asyncio application, which this node is not, so
only `protocol_factory` is used, on a private event loop that this output's thread runs: each
`open`, `send` and `wait` runs that loop for a bounded time. A read task drains what a TAK server
sends back (other clients' events), so the server never blocks on us, and its end tells us at once
that the server closed the connection.

IPv6 literal hosts (`tcp://[2001:db8::5]:8087`, `udp://[ff02::1]:6969`): pytak 7.6 opens them
only for `tls://` (its TCP and UDP paths keep the brackets, and its UDP path binds IPv4), so for
those two the link makes the same connection pytak would, with pytak's own pieces: asyncio's
stream for TCP (all that pytak's TCP path is) and pytak's datagram client for UDP, plus the
multicast hop limit of 1 that pytak sets for IPv4 multicast. A link-local address takes its
interface as a zone: `udp://[ff02::1%eth0]:6969`.
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import ipaddress
import logging
import socket
import ssl
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

with warnings.catch_warnings():
    # pytak warns at import that its optional extras (cryptography for certificate enrollment,
    # aiohttp for TAK Server's HTTP API) are missing; this node uses neither.
    warnings.simplefilter("ignore")
    import pytak
    from pytak import asyncio_dgram

log = logging.getLogger(__name__)

SCHEMES = ("udp", "tcp", "tls")


class CotLink:
    """One CoT destination; `open`/`send`/`wait`/`close` from the output thread only."""

    def __init__(
        self,
        url: str,
        tls_cert_file: Path | None = None,
        tls_key_file: Path | None = None,
        tls_ca_file: Path | None = None,
        send_timeout_s: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES or not parts.hostname or parts.port is None:
            raise ValueError(f"CoT url must be udp://, tcp:// or tls://host:port, not {url!r}")
        self.url = url
        self.scheme = parts.scheme
        self.hostname = parts.hostname
        self.port = parts.port
        self.ipv6 = is_ipv6(parts.hostname)
        self._send_timeout_s = send_timeout_s
        options = {"COT_URL": url.replace("udp://", "udp+wo://", 1)}  # write only: bind no reader
        if self.scheme == "tls":
            if tls_cert_file is None or tls_key_file is None:
                raise ValueError("a tls:// CoT url needs tls_cert_file and tls_key_file (mutual TLS)")
            options["PYTAK_TLS_CLIENT_CERT"] = str(tls_cert_file)
            options["PYTAK_TLS_CLIENT_KEY"] = str(tls_key_file)
            if tls_ca_file is not None:
                options["PYTAK_TLS_CLIENT_CAFILE"] = str(tls_ca_file)
            options["PYTAK_TLS_SERVER_EXPECTED_HOSTNAME"] = self.hostname  # checked against its cert
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_dict({"cot": options})
        self._config = parser["cot"]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: Any = None
        self._reader_task: asyncio.Task[None] | None = None

    @property
    def target(self) -> str:
        return self.url

    def _run(self, coro: Any, timeout_s: float) -> Any:
        assert self._loop is not None
        return self._loop.run_until_complete(asyncio.wait_for(coro, timeout_s))

    def open(self, timeout_s: float) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            reader, self._writer = self._run(self._connect(), timeout_s)
        except TimeoutError:
            raise TimeoutError(f"no connection to {self.url} within {timeout_s:g} s") from None
        except SyntaxError as exc:  # pytak's way of saying a certificate or setting is wrong
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLCertVerificationError):
                why = cause.verify_message
                raise ConnectionError(f"server certificate verify failed for {self.hostname}: {why}") from exc
            raise OSError(str(exc)) from exc
        except ValueError as exc:  # pytak could not load the client certificate or key
            raise OSError(f"cannot load tls_cert_file/tls_key_file: {exc.__cause__ or exc}") from exc
        if reader is not None and self.scheme != "udp":
            self._reader_task = self._loop.create_task(_drain(reader))

    async def _connect(self) -> tuple[Any, Any]:
        """pytak's connection for this url (see the module's note on IPv6 literals)."""
        if not self.ipv6 or self.scheme == "tls":
            return await pytak.protocol_factory(self._config)
        if self.scheme == "tcp":
            return await asyncio.open_connection(self.hostname, self.port)
        client = await asyncio_dgram.connect((self.hostname, self.port))
        if ipaddress.IPv6Address(self.hostname.split("%")[0]).is_multicast:
            client.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
        return None, client

    def send(self, frames: Sequence[bytes], timeout_s: float | None = None) -> None:
        limit = self._send_timeout_s if timeout_s is None else timeout_s
        data = b"".join(frames)
        if self.scheme == "udp":
            for frame in frames:  # one event per datagram, as TAK clients expect
                self._run(self._writer.send(frame), limit)
            return
        self._check_open()
        self._writer.write(data)
        self._run(self._writer.drain(), limit)

    def wait(self, timeout_s: float) -> None:
        assert self._loop is not None
        self._loop.run_until_complete(asyncio.sleep(timeout_s))
        self._check_open()

    def _check_open(self) -> None:
        task = self._reader_task
        if task is not None and task.done():
            error = task.exception()
            raise ConnectionError(
                f"{self.url} closed the connection" + (f": {error}" if error else "")
            ) from error

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            if self._reader_task is not None:
                self._reader_task.cancel()
                with contextlib.suppress(BaseException):
                    loop.run_until_complete(self._reader_task)
            if self._writer is not None:
                self._writer.close()
                if hasattr(self._writer, "wait_closed"):
                    with contextlib.suppress(Exception):
                        loop.run_until_complete(asyncio.wait_for(self._writer.wait_closed(), 1.0))
        finally:
            self._reader_task = None
            self._writer = None
            loop.close()


async def _drain(reader: asyncio.StreamReader) -> None:
    """Read and discard until the server closes the stream (returns) or it breaks (raises)."""
    while await reader.read(65536):
        pass


def is_ipv6(host: str) -> bool:
    """True for an IPv6 literal (with or without a `%zone`), False for a name or an IPv4 address."""
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False
