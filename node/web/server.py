"""`WebServer`: the live view's HTTP(S) server on its own thread and event loop (Tornado).

Why Tornado: a well-kept, pure-Python-first HTTP/1.1 server with no dependencies of its own (it
installs from one wheel on a Pi), with the limits a node exposed to a site network needs (header
size, body size, idle and body timeouts), TLS through the stdlib `ssl`, and streaming responses
for Server-Sent Events, in one small event loop instead of a thread per browser.

The node never waits for it: `offer` (the MQTT publisher's listener) only hands bytes to
`live.Handoff`; a port that cannot be bound is logged and reported in health (`web.state`
`failed`), and the node runs on without its page (`doctor` checks the port beforehand).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.netutil import bind_sockets
from tornado.web import Application

from cuas_node.config import Config, WebSection
from cuas_node.config_sections import ZoneSection
from cuas_node.web.auth import read_web_password, tls_context
from cuas_node.web.handlers import Asset, Document, Events, NotFound, Tile
from cuas_node.web.live import Handoff, Live
from cuas_node.web.scene import scene, zone_entries

log = logging.getLogger(__name__)
# One line per request would flood the journal (the page polls nothing, but each browser reconnects):
# failures (4xx, 5xx) are still logged by Tornado at WARNING and above.
logging.getLogger("tornado.access").setLevel(logging.WARNING)

MAX_HEADER_BYTES = 16 * 1024  # a request with larger headers is refused (431 / connection closed)
MAX_BODY_BYTES = 1024  # nothing is posted to a read-only page
IDLE_TIMEOUT_S = 30.0  # also the time a client has to send its request headers
BODY_TIMEOUT_S = 10.0
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


def load_assets() -> dict[str, tuple[str, bytes]]:
    """The page's files from the package (`cuas_node.web/static`, package data)."""
    static = resources.files("cuas_node.web") / "static"
    return {name: (kind, (static / name).read_bytes()) for name, kind in ASSETS.items()}


def content_security_policy(tiles: str | None) -> str:
    """Only this node's own files and API; map tiles from the configured host if any."""
    img = "'self' data:"
    if tiles is not None and "://" in tiles:
        scheme, rest = tiles.split("://", 1)
        img += f" {scheme}://{rest.split('/', 1)[0]}"
    return (
        f"default-src 'self'; img-src {img}; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


def _encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


class WebServer:
    """Start with `start()` (binds at once, serves on its own thread); `stop()` closes everything."""

    def __init__(self, web: WebSection, scene: dict[str, Any]) -> None:
        self.config = web
        # Secrets are read here, before anything starts: a bad file is a ConfigError (exit 78).
        self.password = read_web_password(web.password_file) if web.password_file is not None else None
        self.tls = tls_context(web)
        self.handoff = Handoff()
        self.live = Live(web.max_clients)
        self.scene = scene
        self.live.docs["scene"] = _encode(scene)  # before the loop runs: no other thread yet
        self.state = "stopped"
        self.detail = ""
        self.cpu_s = 0.0
        self.port: int | None = None  # the bound port (config's, or the one the OS chose for 0)
        self._loop: IOLoop | None = None
        self._server: HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # -- what the rest of the node calls --------------------------------------------------------

    def offer(self, name: str, data: bytes) -> None:
        """The MQTT publisher's listener: O(1), never blocks (see `live.Handoff`)."""
        self.handoff.offer(name, data)

    def zones_replaced(self, zones: Sequence[ZoneSection]) -> None:
        """A `zone_update` command replaced the zones (called on the fusion thread): open pages
        get the new scene at once, new ones from `GET /api/scene`."""
        self.scene = {**self.scene, "zones": zone_entries(zones)}
        self.offer("scene", _encode(self.scene))

    def health(self) -> dict[str, Any]:
        """Health's `web` block: state, and the counters since start."""
        block: dict[str, Any] = {"state": self.state}
        if self.detail:
            block["detail"] = self.detail
        block.update(self.live.counters())
        block["cpu_s"] = round(self.cpu_s, 3)
        return block

    @property
    def url(self) -> str:
        scheme = "https" if self.config.tls_cert_file is not None else "http"
        host = self.config.bind if ":" not in self.config.bind else f"[{self.config.bind}]"
        return f"{scheme}://{host}:{self.port}/"

    def start(self) -> bool:
        """Bind and serve; False (logged, and `state` = failed in health) if the port cannot be had."""
        try:
            sockets = bind_sockets(self.config.port, self.config.bind)
        except OSError as exc:
            self.state, self.detail = (
                "failed",
                f"cannot serve on {self.config.bind}:{self.config.port}: {exc}",
            )
            log.error("web: %s; the node runs on without its web view (`cuas-node doctor`)", self.detail)
            return False
        ssl_ctx = self.tls
        self.port = int(sockets[0].getsockname()[1])
        self._thread = threading.Thread(target=self._serve, args=(sockets, ssl_ctx), name="web", daemon=True)
        self._thread.start()
        self._ready.wait(10.0)
        log.info("web: live view on %s%s", self.url, " (password)" if self.password else "")
        return True

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return
        loop.add_callback(self._shutdown)
        self._thread.join(timeout=5.0)
        self.state = "stopped"

    # -- the server's own thread -----------------------------------------------------------------

    def application(self) -> Application:
        common = {"live": self.live, "password": self.password}
        csp = content_security_policy(self.scene.get("tiles"))
        assets = {"assets": load_assets(), "csp": csp}
        routes: list[Any] = [
            (r"/", Asset, {**common, **assets}),
            (r"/static/([a-z]+\.[a-z]+)", Asset, {**common, **assets}),
            (r"/api/(tracks|health|info|alerts|scene)", Document, common),
            (r"/api/events", Events, common),
        ]
        if self.config.tiles_dir is not None:
            routes.append(
                (
                    r"/tiles/(\d{1,2})/(\d{1,9})/(\d{1,9})\.png",
                    Tile,
                    {**common, "tiles_dir": self.config.tiles_dir},
                )
            )
        return Application(routes, default_handler_class=NotFound, default_handler_args=common)

    def _serve(self, sockets: list[Any], ssl_ctx: ssl.SSLContext | None) -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        loop = IOLoop.current()
        self._loop = loop
        self._server = HTTPServer(
            self.application(),
            ssl_options=ssl_ctx,
            max_header_size=MAX_HEADER_BYTES,
            max_body_size=MAX_BODY_BYTES,
            idle_connection_timeout=IDLE_TIMEOUT_S,
            body_timeout=BODY_TIMEOUT_S,
        )
        self._server.add_sockets(sockets)
        self.handoff.wake = lambda: loop.add_callback(self._receive)
        loop.add_callback(self._receive)  # what arrived before the loop ran
        self.state = "serving"
        self._ready.set()
        try:
            loop.start()
        except Exception as exc:  # the loop itself failed: say so in health, the node goes on
            self.state, self.detail = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("web: the server stopped")
        finally:
            loop.close(all_fds=True)

    def _receive(self) -> None:
        latest, alerts = self.handoff.take()
        self.live.receive(latest, alerts)
        self.cpu_s = time.thread_time()  # this thread's CPU time: what serving the page costs

    async def _shutdown(self) -> None:
        self.handoff.wake = None
        if self._server is not None:
            self._server.stop()
        self.live.close_all()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.close_all_connections(), 2.0)
        IOLoop.current().stop()


def serve(
    config: Config,
    add_listener: Callable[[Callable[[str, bytes], None]], None],
    health_blocks: dict[str, Callable[[], dict[str, Any]]],
    zone_listeners: list[Callable[[Sequence[ZoneSection]], None]],
) -> WebServer:
    """Start the live view of a running node: its counters become health's `web` block and it
    listens to the publisher (`MqttPublisher.add_listener`) and to zone changes
    (`Runtime.zone_listeners`). A port that cannot be bound is logged
    and reported in health; the node runs on."""
    web = WebServer(config.web, scene(config))
    health_blocks["web"] = web.health
    web.start()
    add_listener(web.offer)
    zone_listeners.append(web.zones_replaced)
    return web
