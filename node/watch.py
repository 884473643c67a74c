"""`cuas-node watch`: what the node sees, in a terminal: live tracks and sensor health per node.

It is a plain MQTT subscriber, so it shows exactly what a central server receives.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cuas_node.config import MqttSection, read_password
from cuas_node.publish.client import tls_context

_CLEAR = "\x1b[H\x1b[2J"


@dataclass
class NodeView:
    status: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    tracks: dict[str, dict[str, Any]] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)  # active, by alert_id
    messages: int = 0


class WatchState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.nodes: dict[str, NodeView] = {}
        self.changed = threading.Event()

    def handle(self, topic: str, payload: bytes) -> tuple[str, str] | None:
        parts = topic.split("/")
        if len(parts) < 2:
            return None
        node_id, name = parts[-2], parts[-1]
        try:
            msg = json.loads(payload) if payload else {}
        except ValueError:
            return None
        with self.lock:
            view = self.nodes.setdefault(node_id, NodeView())
            view.messages += 1
            if name == "status":
                view.status = msg
            elif name == "info":
                view.info = msg
            elif name == "health":
                view.health = msg
            elif name == "alerts" and "alert_id" in msg:
                if msg.get("state") == "cleared":
                    view.alerts.pop(msg["alert_id"], None)
                else:
                    view.alerts[msg["alert_id"]] = msg
            elif name == "tracks":
                for track in msg.get("tracks", []):
                    if track.get("status") == "deleted":
                        view.tracks.pop(track["id"], None)
                    else:
                        view.tracks[track["id"]] = track
                live = {t["id"] for t in msg.get("tracks", [])}
                for stale in [tid for tid in view.tracks if tid not in live]:
                    del view.tracks[stale]
        self.changed.set()
        return node_id, name


def _track_line(track: dict[str, Any], id_width: int = 10) -> str:
    e, n, u = track.get("enu_m", [0.0, 0.0, 0.0])
    ve, vn, vu = track.get("vel_enu_mps", [0.0, 0.0, 0.0])
    rng = math.sqrt(e * e + n * n + u * u)
    bearing = math.degrees(math.atan2(e, n)) % 360
    speed = math.sqrt(ve * ve + vn * vn + vu * vu)
    cls = track.get("class", {})
    notes = []
    if track.get("bearing_only"):
        notes.append("bearing-only (range is a guess)")
    rid = track.get("remote_id")
    if rid:
        notes.append(f"RID {rid.get('uas_id', '?')} {rid.get('consistency', '?').upper()}")
    return (
        f"  {track['id']:<{id_width}} {track['status']:<10} "
        f"{cls.get('label', '?'):<11}{cls.get('confidence', 0):>5.2f} "
        f"{track.get('lat', 0):>11.6f} {track.get('lon', 0):>11.6f} {track.get('alt_m', 0):>7.1f} "
        f"{rng:>7.1f} {bearing:>6.1f} {speed:>6.1f}  {','.join(track.get('sensors', []))}"
        + ("  " + "; ".join(notes) if notes else "")
    )


def _id_order(track_id: str) -> tuple[tuple[int, ...], str]:
    """`<session>.<n>` ids in numeric order (so 1796283582.3 comes before 1796283582.296)."""
    try:
        return tuple(int(part) for part in track_id.split(".")), ""
    except ValueError:
        return (), track_id


def _rates(sensor: dict[str, Any]) -> str:
    """The sensor's named rates (`frames_per_s` → "frames/s"), else its measurements per second."""
    named = [
        f"{value:.1f} {key.removesuffix('_per_s')}/s"
        for key, value in sensor.items()
        if key.endswith("_per_s") and isinstance(value, int | float)
    ]
    return ", ".join(named) if named else f"{sensor.get('rate_hz', 0):.1f}/s"


def _alert_line(alert: dict[str, Any]) -> str:
    zone = alert.get("zone", {})
    track = alert.get("track", {})
    label = track.get("class", {}).get("label", "?")
    acked = f"  acknowledged by {alert['ack'].get('by', '?')}" if alert.get("ack") else ""
    return (
        f"  ALERT {str(zone.get('level', '?')).upper():<8} zone {zone.get('id', '?')}: "
        f"track {track.get('id', '?')} ({label}) {alert.get('state', '?')}{acked}"
    )


def _age(age_s: Any) -> str:
    """A sensor's data age: '-' before its first data (health sends null, or NaN)."""
    if not isinstance(age_s, int | float) or not math.isfinite(age_s):
        return f"{'-':>7}"
    return f"{age_s:>6.1f}s"


def render(state: WatchState) -> str:
    lines: list[str] = []
    with state.lock:
        if not state.nodes:
            return "waiting for nodes...\n"
        for node_id, view in sorted(state.nodes.items()):
            st = view.status.get("state", "?")
            pos = view.info.get("position", {})
            where = (
                f"{pos.get('lat', 0):.6f},{pos.get('lon', 0):.6f} ({pos.get('source', '?')})"
                if pos
                else "unknown"
            )
            lines.append(
                f"node {node_id}: {st}   session {view.status.get('session', '?')}   position {where}"
            )
            broker = view.health.get("broker")
            for s in view.health.get("sensors", []):
                lines.append(
                    f"  sensor {s['id']:<12} {s['kind']:<15} {s['state']:<9} {_rates(s):<34} "
                    f"age {_age(s.get('age_s'))}  {s.get('detail', '')}"
                )
            if broker:
                fusion = view.health.get("fusion", {})
                lines.append(
                    f"  fusion: {fusion.get('confirmed', 0)} confirmed, "
                    f"{fusion.get('coasting', 0)} coasting, "
                    f"{fusion.get('tentative', 0)} tentative; queue {fusion.get('queue_depth', 0)}, "
                    f"cycle {fusion.get('cycle_ms', 0):.2f} ms"
                )
            for alert in sorted(view.alerts.values(), key=lambda a: str(a.get("since", 0))):
                lines.append(_alert_line(alert))
            id_width = max([10, *(len(str(t["id"])) for t in view.tracks.values())])
            lines.append(
                f"  {'track':<{id_width}} {'status':<10} {'class':<11}{'conf':>5} {'lat':>11} {'lon':>11} "
                f"{'alt_m':>7} {'range':>7} {'brg':>6} {'m/s':>6}  sensors"
            )
            for track in sorted(view.tracks.values(), key=lambda t: _id_order(str(t["id"]))):
                lines.append(_track_line(track, id_width))
            lines.append("")
    return "\n".join(lines) + "\n"


_NO_ANSWER_S = 5.0  # a broker that gives no MQTT answer this long is said to be silent


def watch(
    host: str,
    port: int,
    root: str,
    node: str = "+",
    *,
    duration: float | None = None,
    plain: bool = False,
    until_offline: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
    mqtt_section: MqttSection | None = None,
) -> int:
    """Subscribe and show until `duration` ends (or Ctrl-C, or the node goes offline with
    `until_offline`). 0, or 1 when the broker was never reached (a port or host that takes no
    connection, one that closes it or never answers, credentials it refused): what keeps it from
    connecting is said on `err` as it happens (and on the screen), never a silent wait.
    `mqtt_section`: the config's broker settings, for its credentials and TLS (used only towards
    that broker); `out` and `err` default to stdout and stderr."""
    out, err = sys.stdout if out is None else out, sys.stderr if err is None else err
    started = time.monotonic()
    deadline = None if duration is None else started + duration
    state = WatchState()
    went_offline = threading.Event()
    seen_online: set[str] = set()
    link = _Link(f"{host}:{port}", err)

    def on_connect(client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        link.answered = True
        if reason.is_failure:
            link.trouble(f"the broker at {link.address} refused the connection: {reason}")
            return
        link.connected()
        client.subscribe(f"{root}/{node}/#", qos=1)

    def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:  # (our own disconnect at the end)
            return
        if link.problem is None:
            link.trouble(f"lost the broker at {link.address}: {reason} (reconnecting)")
        elif not link.answered:  # closed before any CONNACK: not an MQTT listener as configured
            link.trouble(
                f"{link.address} closed the connection without an MQTT answer (a TLS port? the "
                "config's TLS and credentials come with --config) (retrying)"
            )

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        seen = state.handle(msg.topic, bytes(msg.payload))
        if seen is None:
            return
        node_id, name = seen
        if plain:
            link.write(out, f"{node_id} {name} {msg.payload.decode(errors='replace')}\n")
        if until_offline and name == "status":
            # A retained "offline" from an earlier run is history: wait for this run to end.
            current = state.nodes[node_id].status.get("state")
            if current == "online":
                seen_online.add(node_id)
            elif current == "offline" and node_id in seen_online:
                went_offline.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    # paho's connect (and each retry) waits this long for the socket: within --duration
    client.connect_timeout = min(_NO_ANSWER_S, max(duration or _NO_ANSWER_S, 0.1))
    if mqtt_section is not None:
        if mqtt_section.username is not None:
            client.username_pw_set(mqtt_section.username, read_password(mqtt_section))
        if mqtt_section.tls:
            client.tls_set_context(tls_context(mqtt_section))
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    client.on_connect_fail = lambda _c, _u: link.unreachable()
    head = f"cuas-node watch  {host}:{port}  {root}/{node}\n\n"
    try:
        try:  # once in the foreground, for the reason (refused, no such host); then paho's loop retries
            client.connect(host, port, keepalive=30)
        except (OSError, ValueError) as exc:
            link.trouble(
                f"cannot connect to {link.address}: {getattr(exc, 'strerror', None) or exc} (retrying)"
            )
            client.connect_async(host, port, keepalive=30)
        client.loop_start()
        while (deadline is None or time.monotonic() < deadline) and not link.closed:
            if went_offline.is_set():
                if not plain:  # the last screen shows it offline, and says the watch ends
                    link.write(out, _CLEAR + head + render(state) + "the node went offline: end of watch\n")
                break
            if not (link.answered or link.told) and time.monotonic() - started > _NO_ANSWER_S:
                link.trouble(f"no MQTT answer from {link.address} in {_NO_ANSWER_S:g} s (still trying)")
            state.changed.wait(0.5)
            state.changed.clear()
            if not plain:
                body = render(state) if link.problem is None else link.problem + "\n"
                link.write(out, _CLEAR + head + body)
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        client.loop_stop()
        client.disconnect()
    if not link.ever_connected:
        link.say(f"never reached the broker at {link.address}")
        return 1
    return 0


class _Link:
    """What `watch` tells of its broker connection (each new trouble once, on `err`), and its
    output: a reader that went away (`watch | head`) ends the watch quietly."""

    def __init__(self, address: str, err: TextIO) -> None:
        self.address, self._err = address, err
        self.problem: str | None = f"connecting to {address}..."
        self.ever_connected = False
        self.answered = False  # a CONNACK came, accepting or refusing
        self.told = False  # a trouble was said
        self.closed = False  # the output's reader is gone
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        """A line on stderr; one whose reader is gone (`2>&1 | head`) is dropped."""
        with contextlib.suppress(OSError, ValueError):
            print(f"cuas-node watch: {text}", file=self._err, flush=True)

    def trouble(self, problem: str) -> None:
        with self._lock:
            if problem == self.problem:
                return
            self.problem, self.told = problem, True
        self.say(problem)

    def unreachable(self) -> None:
        """paho's loop failed to connect again (it says no more): keep the reason already told."""
        if not (self.problem or "").startswith(f"cannot connect to {self.address}"):
            self.trouble(f"cannot connect to {self.address} (retrying)")

    def connected(self) -> None:
        with self._lock:
            told, again = self.told and self.problem is not None, self.ever_connected
            self.problem, self.ever_connected, self.answered = None, True, True
        if told:  # after a trouble said, that it is over
            self.say(f"connected to {self.address}" + (" again" if again else ""))

    def write(self, out: TextIO, text: str) -> None:
        if self.closed:
            return
        try:
            out.write(text)
            out.flush()
        except BrokenPipeError:
            self.closed = True
            # Python flushes stdout once more at exit: point it where that cannot fail.
            with contextlib.suppress(OSError, ValueError):
                target = out.fileno()
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, target)
                os.close(null)
