"""The live view in a real browser while `cuas-node sim demo` runs against a real Mosquitto.

Headless Chromium (Debian's package, through chromedriver) loads the page the node serves and is
compared with what an MQTT subscriber receives at the same time: the confirmed-track count of the
very `tracks` message the page shows, tracks drawn where their ENU position maps on the canvas,
every sensor in the health panel, and no console error (a CSP violation or a script error would
be one). Screenshots at phone (375 px) and laptop (1366 px) widths go to build/test-artifacts/web/.
Bad requests (unknown paths, huge headers, a stalled connection) against the running node must
leave it running and publishing.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MosquittoBroker, MqttSubscriber, free_port, wait_for_port
from tests.web_browser import ARTIFACTS, CHROMEDRIVER, CHROMIUM, browser, console_errors

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="chromium and chromedriver not installed (apt-get install chromium chromium-driver)",
)
ROOT = "cuas/v1/sim-demo"
PHONE = (375, 812)
LAPTOP = (1366, 800)

# One page script reads everything at one instant (the page redraws at up to 5 Hz): the frame last
# drawn, the view it was drawn with, and the canvas pixel at each located track's position as
# this test maps it (east right, north up, `scale` px per metre around the view's centre).
READ_FRAME = """
const v = window.cuasView, d = v && v.state.drawn;
if (!d || !d.tracks) return null;
const ctx = document.getElementById('plan').getContext('2d');
const points = [];
for (const t of d.tracks.tracks) {
  if (t.status === 'deleted' || t.bearing_only) continue;
  const x = d.width / 2 + (t.enu_m[0] - d.view.centreE) * d.view.scale;
  const y = d.height / 2 - (t.enu_m[1] - d.view.centreN) * d.view.scale;
  const rgba = (x >= 0 && y >= 0 && x < d.width && y < d.height)
    ? Array.from(ctx.getImageData(Math.round(x * d.dpr), Math.round(y * d.dpr), 1, 1).data) : null;
  points.push({id: t.id, status: t.status, label: t.class.label, x: x, y: y, rgba: rgba});
}
return {seq: d.tracks.seq, width: d.width, height: d.height, points: points, colors: v.classColors,
        inner_width: window.innerWidth};
"""
READ_STATUS = """
return {seq: document.getElementById('tracks-seq').textContent,
        confirmed: document.getElementById('confirmed-count').textContent,
        rows: Array.from(document.querySelectorAll('#tracks tbody tr')).map(r => r.dataset.id),
        sensors: Array.from(document.querySelectorAll('#sensors tbody tr')).map(r => r.dataset.sensor)};
"""


class Node:
    def __init__(self, proc: subprocess.Popen[str], port: int, sub: MqttSubscriber, log: Path) -> None:
        self.proc, self.port, self.sub, self.log = proc, port, sub, log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def tracks(self, seq: int, timeout: float = 10.0) -> dict[str, Any]:
        """The MQTT `tracks` message with this `seq` (the page may be a hair ahead of the broker)."""
        got = self.sub.wait_for(
            lambda m: m.topic.endswith("/tracks") and m.payload.get("seq") == seq, timeout=timeout
        )
        payload: dict[str, Any] = got.payload
        return payload


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """`cuas-node sim demo` at real time with the web view on a free loopback port."""
    from tests.conftest import MOSQUITTO

    if MOSQUITTO is None:
        pytest.skip("mosquitto binary not installed")
    work = tmp_path_factory.mktemp("web-sim")
    broker = MosquittoBroker(work)
    broker.start()
    port = free_port()
    cfg = work / "node.toml"
    cfg.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nhealth_interval_s = 1.0\n'
        f'[web]\nenabled = true\nport = {port}\n[logging]\nlevel = "INFO"\n'
        # A standard output, so that the health panel has one to show (UDP: nobody need listen).
        f'[[outputs.cot]]\nname = "atak"\nurl = "udp://127.0.0.1:{free_port()}"\n'
    )
    sub = MqttSubscriber(broker.host, broker.port, f"{ROOT}/#")
    env = {**os.environ, "XDG_STATE_HOME": str(work / "state")}
    log = work / "node.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cuas_node.cli", "sim", "demo", "--config", str(cfg), "--duration", "240"],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
    try:
        if not wait_for_port("127.0.0.1", port, 30.0):
            pytest.fail(f"the web view did not listen:\n{log.read_text()[-3000:]}")
        # Confirmed tracks and a health message before any browser looks.
        sub.wait_for(
            lambda m: (
                m.topic.endswith("/tracks") and any(t["status"] == "confirmed" for t in m.payload["tracks"])
            ),
            timeout=60,
        )
        sub.wait_for(lambda m: m.topic.endswith("/health"), timeout=30)
        yield Node(proc, port, sub, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        sub.close()
        broker.stop()


@pytest.fixture
def chrome(tmp_path: Path) -> Iterator[Callable[[tuple[int, int]], Any]]:
    drivers: list[Any] = []

    def make(size: tuple[int, int]) -> Any:
        driver = browser(tmp_path / f"profile-{len(drivers)}", *size)
        drivers.append(driver)
        driver.set_window_size(*size)
        return driver

    yield make
    for driver in drivers:
        driver.quit()


def _wait(driver: Any, script: str, ok: Callable[[Any], bool], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if ok(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"the page did not get there within {timeout} s; last: {value}")
        time.sleep(0.2)


def _rgb(hex_colour: str) -> list[int]:
    return [int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]


def _isolated(points: list[dict[str, Any]], width: int, height: int) -> list[dict[str, Any]]:
    """Confirmed tracks whose centre no other track's symbol or label can cover, well inside the
    canvas (clear of the map buttons and the legend)."""
    inside = [
        p
        for p in points
        if p["status"] == "confirmed"
        and p["rgba"] is not None
        and 20 < p["x"] < width - 80
        and 50 < p["y"] < height - 30
    ]
    return [
        p
        for p in inside
        if all(abs(p["x"] - q["x"]) > 250 or abs(p["y"] - q["y"]) > 30 for q in points if q is not p)
    ]


@pytest.mark.parametrize("size", [PHONE, LAPTOP], ids=["phone-375", "laptop-1366"])
def test_page_shows_what_mqtt_consumers_get(
    node: Node, chrome: Callable[..., Any], size: tuple[int, int]
) -> None:
    driver = chrome(size)
    driver.get(node.url)
    status = _wait(driver, READ_STATUS, lambda s: s["seq"] not in ("", "-") and int(s["confirmed"]) > 0)
    # The confirmed count the page shows is that of the very message whose seq it shows.
    message = node.tracks(int(status["seq"]))
    confirmed = [t for t in message["tracks"] if t["status"] == "confirmed"]
    assert int(status["confirmed"]) == len(confirmed) > 0
    shown = {t["id"] for t in message["tracks"] if t["status"] != "deleted"}
    assert set(status["rows"]) == shown  # the table lists that message's tracks

    # Tracks are drawn where their position maps: the class colour at each isolated track's centre.
    frame = _wait(
        driver, READ_FRAME, lambda f: f is not None and bool(_isolated(f["points"], f["width"], f["height"]))
    )
    assert frame["inner_width"] == size[0]
    drawn = node.tracks(frame["seq"])
    assert {p["id"] for p in frame["points"]} == {
        t["id"] for t in drawn["tracks"] if t["status"] != "deleted" and not t.get("bearing_only")
    }
    for point in _isolated(frame["points"], frame["width"], frame["height"]):
        assert point["rgba"][:3] == _rgb(frame["colors"][point["label"]]), point

    # Every sensor of the latest health message has its row in the health panel.
    health = [m.payload for m in node.sub.snapshot("/health")][-1]
    status = _wait(driver, READ_STATUS, lambda s: len(s["sensors"]) > 0)
    assert sorted(status["sensors"]) == sorted(s["id"] for s in health["sensors"])
    assert set(status["sensors"]) == {"radar-1", "mic-1", "rid-1", "fpv-1", "gps"}
    # ... and the standard outputs theirs.
    blocks = driver.find_element("id", "health-blocks").text
    assert "cot atak → udp://127.0.0.1:" in blocks and "sent" in blocks, blocks

    # A row selected in the table opens that track's details.
    row = driver.find_element("css selector", "#tracks tbody tr")
    row_id = row.get_attribute("data-id")
    row.click()
    assert driver.find_element("id", "details-panel").is_displayed()
    assert driver.find_element("id", "details-id").text == row_id

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"live-view-{size[0]}px.png"))
    assert console_errors(driver) == []


def test_api_documents_are_the_mqtt_messages(node: Node, schemas: dict[str, Any]) -> None:
    """`/api/tracks` and `/api/health` are the MQTT documents (one encoder), valid by the schemas."""
    import jsonschema

    for name in ("tracks", "health"):
        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
        conn.request("GET", f"/api/{name}")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type") == "application/json"
        doc = json.loads(response.read())
        conn.close()
        got = node.sub.wait_for(
            lambda m, doc=doc, name=name: m.topic.endswith(f"/{name}") and m.payload.get("seq") == doc["seq"],
            timeout=10,
        )
        assert got.payload == doc
        jsonschema.validate(doc, schemas[name])
    assert doc["web"]["state"] == "serving"  # the live view's own block in health


def test_bad_requests_never_stop_the_node(node: Node) -> None:
    def request(method: str, path: str, headers: dict[str, str] | None = None) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
        try:
            conn.request(method, path, headers=headers or {})
            return conn.getresponse().status
        except (ConnectionError, http.client.HTTPException):
            return 0  # the server closed the connection: a refusal too
        finally:
            conn.close()

    stalled = socket.create_connection(("127.0.0.1", node.port))
    stalled.sendall(b"GET /api/tracks HTTP/1.1\r\nHost: x\r\n")  # and never the end of the headers
    silent = socket.create_connection(("127.0.0.1", node.port))  # an SSE client that never reads
    silent.sendall(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        assert request("GET", "/no/such/path") == 404
        assert request("GET", "/api/nothing") == 404
        assert request("GET", "/static/../../etc/passwd") == 404
        assert request("POST", "/api/tracks") == 405
        assert request("DELETE", "/") == 405
        assert request("GET", "/api/tracks", {"X-Huge": "a" * 100_000}) in (0, 431)
        before = node.sub.snapshot("/tracks")[-1].payload["seq"]
        assert request("GET", "/api/tracks") == 200
    finally:
        stalled.close()
        silent.close()
    node.sub.wait_for(lambda m: m.topic.endswith("/tracks") and m.payload["seq"] > before, timeout=10)
    assert node.proc.poll() is None, node.log.read_text()[-3000:]


def _png(rgb: tuple[int, int, int]) -> bytes:
    """A 1×1 PNG of one colour (the page scales each tile to its place)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" + bytes(rgb)))
        + chunk(b"IEND", b"")
    )


def test_offline_tiles_under_the_plan(chrome: Callable[..., Any], tmp_path: Path) -> None:
    """With `web.tiles_dir`, the plan view is laid on the node's own tiles (no internet)."""
    import math

    from cuas_node.config import build_config
    from cuas_node.web.scene import scene
    from cuas_node.web.server import WebServer

    lat, lon = 52.0116, 4.3571
    tiles = tmp_path / "tiles"
    colour = (18, 52, 86)
    png = _png(colour)
    for z in range(10, 20):  # every level the page may pick, a few tiles around the node
        n = 2**z
        x0 = int((lon + 180) / 360 * n)
        y0 = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
        for x in range(x0 - 4, x0 + 5):
            (tiles / str(z) / str(x)).mkdir(parents=True, exist_ok=True)
            for y in range(y0 - 4, y0 + 5):
                (tiles / str(z) / str(x) / f"{y}.png").write_bytes(png)
    config = build_config(
        {
            "node": {"id": "tiles-1", "position": {"lat": lat, "lon": lon, "alt_m": 10.0}},
            "web": {"enabled": True, "port": free_port(), "tiles_dir": str(tiles)},
        },
        "test",
    )
    server = WebServer(config.web, scene(config))
    assert server.start()
    try:
        origin = {"lat": lat, "lon": lon, "alt_m": 10.0}
        server.offer(
            "info", json.dumps({"type": "info", "node_id": "tiles-1", "enu_origin": origin}).encode()
        )
        server.offer("tracks", json.dumps({"type": "tracks", "seq": 1, "t": 1.0, "tracks": []}).encode())
        driver = chrome(LAPTOP)
        driver.get(server.url)
        share = (
            "const c = document.getElementById('plan');"
            "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "let k = 0; for (let i = 0; i < d.length; i += 4)"
            f" if (d[i] === {colour[0]} && d[i + 1] === {colour[1]} && d[i + 2] === {colour[2]}) k++;"
            "return k / (d.length / 4);"
        )
        assert _wait(driver, share, lambda s: s > 0.5) > 0.5  # most of the plan is the tiles' colour
        assert console_errors(driver) == []
    finally:
        server.stop()
