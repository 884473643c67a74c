"""The transport of the SAPIENT output: TCP (optionally TLS), length-prefixed `SapientMessage`s.

Why the handshake lives here: a SAPIENT peer ignores everything from a node before its
registration, and answers the registration with `registration_ack`. So `open` connects, sends the
codec's registration and waits for that answer; a refusal (`acceptance` false, or an `error`
message) raises `RegistrationRefused` with the peer's reasons, which the worker logs and retries
with back-off like any connection failure. While connected, `wait` reads what the peer sends and
hands each message to the codec, sending its answers at once (a `task` gets its `task_ack`).
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import struct
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from google.protobuf.message import DecodeError

from cuas_node.outputs.sapient_msgs import MAX_FRAME_BYTES, SapientMessage

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 5.0
CLOSE_LINGER_S = 0.5  # how long `close` waits for the peer to read our last messages and close


class RegistrationRefused(ConnectionError):
    """The peer answered the registration with a refusal (its reasons are the message)."""


class Handler(Protocol):
    def registration(self) -> bytes: ...
    def handle(self, message: SapientMessage) -> list[bytes]: ...


class SapientLink:
    """One connection to a SAPIENT middleware or fusion node; used by the output thread only."""

    def __init__(
        self,
        host: str,
        port: int,
        handler: Handler,
        tls: bool = False,
        tls_ca_file: Path | None = None,
        tls_cert_file: Path | None = None,
        tls_key_file: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.handler = handler
        self.tls = tls
        self._ca, self._cert, self._key = tls_ca_file, tls_cert_file, tls_key_file
        self._sock: socket.socket | None = None
        self._buffer = b""
        self.registered_at: float | None = None

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address, as in a url
        return f"{'tls' if self.tls else 'tcp'}://{host}:{self.port}"

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self._ca) if self._ca else None)
        if self._cert is not None and self._key is not None:
            try:
                context.load_cert_chain(str(self._cert), str(self._key))
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"cannot load tls_cert_file/tls_key_file: {exc}") from exc
        return context

    def connect(self, timeout_s: float) -> None:
        """Only the connection (TCP, TLS handshake): what `doctor` checks without registering."""
        sock = socket.create_connection((self.host, self.port), timeout=timeout_s)
        try:
            if self.tls:
                sock = self._context().wrap_socket(sock, server_hostname=self.host)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._buffer = b""

    def open(self, timeout_s: float) -> None:
        self.connect(timeout_s)
        self.send([self.handler.registration()])
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no registration_ack within {timeout_s:g} s")
            for message in self._receive(left):
                content = message.WhichOneof("content")
                if content == "registration_ack":
                    ack = message.registration_ack
                    if not ack.acceptance:
                        reasons = "; ".join(ack.ack_response_reason) or "no reason given"
                        raise RegistrationRefused(f"registration refused: {reasons}")
                    self.registered_at = time.time()
                    log.info("SAPIENT registration accepted by %s", self.target)
                    return
                if content == "error":
                    text = "; ".join(message.error.error_message) or "no text"
                    raise RegistrationRefused(f"registration refused with an error: {text}")
                log.debug("SAPIENT: %s before registration_ack ignored", content)

    def send(self, frames: Sequence[bytes], timeout_s: float | None = None) -> None:
        if self._sock is None:
            raise ConnectionError("not connected")
        self._sock.settimeout(SEND_TIMEOUT_S if timeout_s is None else timeout_s)
        self._sock.sendall(b"".join(frames))

    def wait(self, timeout_s: float) -> None:
        for message in self._receive(timeout_s):
            replies = self.handler.handle(message)
            if replies:
                self.send(replies)

    def _receive(self, timeout_s: float) -> list[SapientMessage]:
        """The whole messages that arrive within `timeout_s` (none is fine)."""
        sock = self._sock
        if sock is None:
            raise ConnectionError("not connected")
        pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
        if not pending:
            readable, _, _ = select.select([sock], [], [], max(timeout_s, 0.0))
            if not readable:
                return []
        sock.settimeout(max(timeout_s, 0.01))
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ssl.SSLWantReadError):
            return []
        if not chunk:
            raise ConnectionError("the peer closed the connection")
        self._buffer += chunk
        messages: list[SapientMessage] = []
        while len(self._buffer) >= 4:
            (length,) = struct.unpack_from("<I", self._buffer)
            if length > MAX_FRAME_BYTES:
                raise ConnectionError(f"a {length}-byte frame: not a SAPIENT stream")
            if len(self._buffer) < 4 + length:
                break
            body, self._buffer = self._buffer[4 : 4 + length], self._buffer[4 + length :]
            try:
                messages.append(SapientMessage.FromString(body))
            except DecodeError:
                log.warning("SAPIENT: an undecodable %d-byte message from %s ignored", length, self.target)
        return messages

    def close(self) -> None:
        """End the connection in order: our end of the stream first, then what the peer still
        sends is read (and dropped) until it closes too, for up to CLOSE_LINGER_S. Closing a
        socket with unread data would reset the connection, and a reset may discard our last
        messages (the goodbye) before the peer has read them."""
        sock, self._sock = self._sock, None
        self._buffer = b""
        if sock is None:
            return
        try:
            if isinstance(sock, ssl.SSLSocket):
                sock.settimeout(CLOSE_LINGER_S)
                sock = sock.unwrap()  # TLS close_notify (both ways), then the TCP stream as below
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + CLOSE_LINGER_S
            while (left := deadline - time.monotonic()) > 0:
                readable, _, _ = select.select([sock], [], [], left)
                if readable and not sock.recv(65536):
                    break  # the peer closed its end: everything we sent was read
        except (OSError, ValueError):
            pass  # already broken: nothing more to deliver
        finally:
            sock.close()
