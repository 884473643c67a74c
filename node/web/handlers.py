"""The HTTP endpoints (Tornado request handlers). Everything is GET (and HEAD): the page cannot
change anything on the node; any other method gets 405 from Tornado.

`/` the page; `/static/<file>` its script and style; `/api/tracks`, `/api/health`, `/api/info` the
latest MQTT documents byte for byte; `/api/alerts` the active alerts; `/api/scene` the coverage,
zones and tiles; `/api/events` the live stream (Server-Sent Events); `/tiles/{z}/{x}/{y}.png` the
offline tiles when `web.tiles_dir` is set. Unknown paths get 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from http import HTTPStatus
from pathlib import Path
from typing import Any

from tornado.iostream import StreamClosedError
from tornado.web import RequestHandler

from cuas_node.web.auth import REALM, authorised
from cuas_node.web.live import Client, Live

KEEPALIVE_S = 15.0  # an SSE comment this often, so a vanished browser is noticed and proxies stay open


class Base(RequestHandler):
    """Authentication, hardening headers and terse errors for every endpoint."""

    live: Live
    password: str | None

    def initialize(self, live: Live, password: str | None, **kwargs: Any) -> None:
        self.live = live
        self.password = password
        self.extra = kwargs

    def set_default_headers(self) -> None:
        self.set_header("Server", "cuas-node")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Cache-Control", "no-store")

    def prepare(self) -> None:
        self.live.count("requests")
        if not authorised(self.request.headers.get("Authorization"), self.password):
            self.live.count("unauthorised")
            self.send_error(401)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """A short plain reason, never the request (nothing a client sent is echoed back)."""
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        if status_code == 401:  # here: send_error clears the headers set before it
            self.set_header("WWW-Authenticate", REALM)
        self.finish(f"{status_code} {HTTPStatus(status_code).phrase}\n")

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if not isinstance(value, StreamClosedError):
            super().log_exception(typ, value, tb)


class Asset(Base):
    """The page and its files, held in memory (package data, read once at start)."""

    def get(self, name: str = "index.html") -> None:
        assets: dict[str, tuple[str, bytes]] = self.extra["assets"]
        if name not in assets:
            self.send_error(404)
            return
        content_type, body = assets[name]
        self.set_header("Content-Type", content_type)
        if name == "index.html":
            self.set_header("Content-Security-Policy", self.extra["csp"])
        self.finish(body)


class Document(Base):
    """`/api/<name>`: the latest document, exactly as it went to MQTT (503 before the first)."""

    def get(self, name: str) -> None:
        if name == "alerts":
            body: bytes | None = self.live.alerts_document()
        else:
            body = self.live.docs.get(name)
        if body is None:
            self.set_status(503)
            self.set_header("Retry-After", "1")
            body = json.dumps({"error": f"no {name} message yet"}).encode()
        self.set_header("Content-Type", "application/json")
        self.finish(body)


class Events(Base):
    """`/api/events`: Server-Sent Events `info`, `tracks`, `health`, `alert` (one alert message)
    and `alerts` (the active ones, at connect), each `data` a JSON document."""

    client: Client | None = None

    async def get(self) -> None:
        live = self.live
        if len(live.clients) >= live.max_clients:
            live.count("refused")
            self.set_header("Retry-After", "5")
            self.send_error(503)
            return
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("X-Accel-Buffering", "no")
        client = Client()
        client.drop = self.request.connection.close  # type: ignore[union-attr]
        self.client = client
        live.clients.add(client)
        live.count("connections")
        loop_time = self.request.connection.stream.io_loop.time  # type: ignore[union-attr]
        try:
            self.write(b"retry: 2000\n\n" + live.snapshot())
            await self.flush()
            while True:
                deadline = loop_time() + KEEPALIVE_S
                try:
                    chunk = await _get(client, deadline - loop_time())
                except TimeoutError:
                    chunk = b": keepalive\n\n"
                if chunk is None:
                    break
                self.write(chunk)
                await self.flush()
        except StreamClosedError:
            pass
        finally:
            live.clients.discard(client)

    def on_connection_close(self) -> None:
        if self.client is not None:
            self.live.clients.discard(self.client)
            # full: the handler is blocked writing, and sees the closed stream there
            with contextlib.suppress(asyncio.QueueFull):
                self.client.queue.put_nowait(None)


async def _get(client: Client, timeout: float) -> bytes | None:
    return await asyncio.wait_for(client.queue.get(), timeout)


class Tile(Base):
    """`/tiles/{z}/{x}/{y}.png` from `web.tiles_dir`: the path is three integers, so nothing
    outside the directory can be named."""

    def get(self, z: str, x: str, y: str) -> None:
        root: Path = self.extra["tiles_dir"]
        path = root / str(int(z)) / str(int(x)) / f"{int(y)}.png"
        try:
            body = path.read_bytes()
        except OSError:
            self.send_error(404)
            return
        self.set_header("Content-Type", "image/png")
        self.set_header("Cache-Control", "max-age=86400")
        self.finish(body)


class NotFound(Base):
    """Every path that is not one of the above (after authentication: no probing without it)."""

    def get(self, *args: str) -> None:
        self.send_error(404)

    head = get
