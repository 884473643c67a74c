"""`cuas-node watch` against real brokers: it says what keeps it from a broker (never a silent
wait), uses the config's credentials, and ends quietly when its reader goes away (`| head`)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cuas_node.cli import main
from cuas_node.watch import watch
from tests.conftest import MosquittoBroker, free_port

STATUS = json.dumps({"type": "status", "state": "online", "session": 3})


def _publish(
    broker: MosquittoBroker, messages: list[tuple[str, str]], user: tuple[str, str] | None = None
) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2)
    if user is not None:
        client.username_pw_set(*user)
    client.connect(broker.host, broker.port)
    client.loop_start()
    for topic, payload in messages:
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5.0)
    client.loop_stop()
    client.disconnect()


def _first_line(stream: IO[bytes], timeout: float) -> bytes:
    """The first line of a subprocess's output, b"" if none comes in `timeout` (no hanging test)."""
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else b""


def test_a_port_nothing_listens_on_is_said_with_the_reason_and_exit_1() -> None:
    port = free_port()
    out, err = io.StringIO(), io.StringIO()
    assert watch("127.0.0.1", port, "cuas/v1", duration=1.0, plain=True, out=out, err=err) == 1
    assert out.getvalue() == ""
    said = err.getvalue().splitlines()
    assert said[0] == f"cuas-node watch: cannot connect to 127.0.0.1:{port}: Connection refused (retrying)"
    assert said[-1] == f"cuas-node watch: never reached the broker at 127.0.0.1:{port}"
    assert len(said) == 2  # paho's own retries say nothing new
    screen = io.StringIO()
    assert watch("127.0.0.1", port, "cuas/v1", duration=1.0, out=screen, err=io.StringIO()) == 1
    assert f"cannot connect to 127.0.0.1:{port}: Connection refused" in screen.getvalue()


def test_a_port_that_closes_without_an_mqtt_answer_is_said(tmp_path: Path) -> None:
    """What a TLS listener does with a plain client: accepts, then closes. Said as it happens."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def refuse() -> None:
        with contextlib.suppress(OSError):
            while True:
                listener.accept()[0].close()

    threading.Thread(target=refuse, daemon=True).start()
    port = listener.getsockname()[1]
    err = io.StringIO()
    try:
        assert watch("127.0.0.1", port, "cuas/v1", duration=2.0, plain=True, out=io.StringIO(), err=err) == 1
    finally:
        listener.close()
    said = err.getvalue().splitlines()
    assert said[0].startswith(
        f"cuas-node watch: 127.0.0.1:{port} closed the connection without an MQTT answer"
    )
    assert said[-1] == f"cuas-node watch: never reached the broker at 127.0.0.1:{port}"


def test_the_configs_credentials_reach_a_broker_that_asks_for_them(
    make_mosquitto: Callable[..., MosquittoBroker],
    broker_files: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd not installed")
    passwd = broker_files / "passwd"
    passwd.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "ops", "s3cret"], check=True)
    passwd.chmod(0o644)
    broker = make_mosquitto(f"allow_anonymous false\npassword_file {passwd}\n")
    _publish(broker, [("cuas/v1/mast-1/status", STATUS)], ("ops", "s3cret"))
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    config = tmp_path / "node.toml"
    config.write_text(
        f'[node]\nid = "viewer"\n\n[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
        f'username = "ops"\npassword_file = "{secret}"\n'
    )
    # Without them: the broker's refusal, by name.
    assert (
        main(["watch", "--port", str(broker.port), "--host", "127.0.0.1", "--duration", "2", "--plain"]) == 1
    )
    out, err = capsys.readouterr()
    assert out == "" and "refused the connection: Not authorized" in err
    # Nor sent to another broker than the config's (here the same one by another name).
    assert main(["watch", "--config", str(config), "--host", "localhost", "--duration", "2", "--plain"]) == 1
    out, err = capsys.readouterr()
    assert f"localhost:{broker.port} is not the config's broker" in err and "Not authorized" in err
    # With the config's: its node's retained status.
    assert main(["watch", "--config", str(config), "--duration", "3", "--plain"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"mast-1 status {STATUS}"] and err == ""


def test_a_reader_that_goes_away_ends_the_watch_quietly(mosquitto: MosquittoBroker) -> None:
    _publish(mosquitto, [("cuas/v1/mast-1/status", STATUS)])
    proc = subprocess.Popen(
        [sys.executable, "-m", "cuas_node.cli", "watch", "--port", str(mosquitto.port), "--plain"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        assert _first_line(proc.stdout, 10.0).startswith(b"mast-1 status ")
        proc.stdout.close()  # `watch ... | head -1`
        for n in range(50):  # messages it can no longer write
            _publish(mosquitto, [("cuas/v1/mast-1/status", STATUS.replace("3", str(n + 4)))])
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.wait(timeout=10) == 0
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_until_offline_ends_on_a_screen_that_shows_the_node_offline(mosquitto: MosquittoBroker) -> None:
    """`--until-offline` (the demo's): the last screen is the node gone offline, not its last
    online view, and says the watch ends there."""
    _publish(mosquitto, [("cuas/v1/mast-1/status", STATUS)])
    out = io.StringIO()
    done: list[int] = []
    viewer = threading.Thread(
        target=lambda: done.append(
            watch("127.0.0.1", mosquitto.port, "cuas/v1", duration=20.0, until_offline=True, out=out)
        )
    )
    viewer.start()
    for _ in range(200):
        if "mast-1: online" in out.getvalue():
            break
        time.sleep(0.05)
    assert "mast-1: online" in out.getvalue()  # (before it, "offline" would be history)
    _publish(mosquitto, [("cuas/v1/mast-1/status", STATUS.replace("online", "offline"))])
    viewer.join(timeout=10)
    assert done == [0]
    last = out.getvalue().rsplit("\x1b[H\x1b[2J", 1)[-1]
    assert "node mast-1: offline" in last and last.endswith("the node went offline: end of watch\n")
