"""Doctor check of the MQTT broker: one real connection with the node's TLS and credentials,
with every way it can fail turned into a message and a fix.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

from cuas_node.config import Config, ConfigError, password_path, read_password
from cuas_node.doctor_checklist import Checklist, Status
from cuas_node.preflight import (
    PLAINTEXT_FIX,
    SECRET_MODE,
    SECRET_OWNER,
    describe_file,
    is_loopback,
    plaintext_password,
    secret_file_issues,
    secret_files,
    secret_fix,
)


class BrokerChecks(Checklist):
    """The broker lines of the checklist: how the credentials travel, the secret files, and one
    real connection."""

    def check_credentials(self, config: Config) -> None:
        """A password sent without TLS to another machine is readable by anyone on the path: FAIL
        (`run` only warns, so a bench setup still starts)."""
        mqtt = config.mqtt
        if mqtt.username is None or password_path(mqtt) is None:
            return
        plain = plaintext_password(config)
        if plain is not None:
            self.add("FAIL", "credentials", plain, PLAINTEXT_FIX)
        elif mqtt.tls:
            self.add("PASS", "credentials", f"the password of {mqtt.username!r} is sent over TLS")
        elif is_loopback(mqtt.host):
            self.add("PASS", "credentials", f"the password of {mqtt.username!r} stays on this machine")

    def check_secret_files(self, config: Config) -> None:
        """Each secret file's owner and mode: WARN unless only root and the service can read it
        (the documented setting is root:cuas 0640). A missing file is the start-up line's FAIL."""
        identity = self.probe.identity()
        for key, path in secret_files(config):
            try:
                info = path.stat()
            except OSError:
                continue
            name = key.split(" ", 1)[0]
            issues = secret_file_issues(info, identity)
            if issues:
                self.add(
                    "WARN",
                    name,
                    f"{path} is {describe_file(info)}: {'; '.join(issues)}",
                    f"make it {SECRET_OWNER} {SECRET_MODE:04o}: {secret_fix(path)}",
                )
            else:
                self.add("PASS", name, f"{path} is {describe_file(info)}")

    def check_broker(self, config: Config) -> None:
        mqtt = config.mqtt
        where = f"{mqtt.host}:{mqtt.port}" + (" (TLS)" if mqtt.tls else "")
        status, message, fix = broker_check(config, self.timeout_s)
        self.add(status, "broker", f"{where}: {message}", fix)


def broker_check(config: Config, timeout_s: float) -> tuple[Status, str, str]:
    """Connect once with the node's TLS and credentials (under a `-doctor` client id, so a running
    node is not kicked off), and classify what went wrong."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    mqtt = config.mqtt
    client_id = (mqtt.client_id or f"cuas-node-{config.node.id}") + "-doctor"
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv311
    )
    client.connect_timeout = timeout_s
    try:
        if mqtt.username is not None:
            client.username_pw_set(mqtt.username, read_password(mqtt))
        if mqtt.tls:
            client.tls_set(
                ca_certs=str(mqtt.ca_file) if mqtt.ca_file else None,
                certfile=str(mqtt.cert_file) if mqtt.cert_file else None,
                keyfile=str(mqtt.key_file) if mqtt.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
    except ConfigError as exc:
        return "FAIL", "; ".join(exc.problems), "fix mqtt.password_file (readable by the service user)"
    except (OSError, ssl.SSLError) as exc:
        return "FAIL", f"cannot load TLS files: {exc}", "check mqtt.ca_file, cert_file, key_file"
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        outcome["reason"] = reason
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(mqtt.host, mqtt.port, keepalive=max(5, int(timeout_s) + 5))
    except ssl.SSLCertVerificationError as exc:
        return (
            "FAIL",
            f"TLS certificate not accepted: {exc.verify_message}",
            "set mqtt.ca_file to the CA that signed the broker's certificate; check the host name and the "
            "clock (an unsynced clock makes valid certificates look expired)",
        )
    except ssl.SSLError as exc:
        return (
            "FAIL",
            f"TLS handshake failed: {exc}",
            "is the port a TLS listener? (8883 usually is, 1883 is not)",
        )
    except socket.gaierror as exc:
        return "FAIL", f"host name does not resolve: {exc}", "check mqtt.host and DNS (/etc/resolv.conf)"
    except ConnectionRefusedError:
        return "FAIL", "connection refused", "check mqtt.port and that the broker runs and listens there"
    except (TimeoutError, OSError) as exc:
        return "FAIL", f"unreachable: {exc}", "check the network path and firewall to the broker"
    client.loop_start()
    try:
        if not done.wait(timeout_s):
            return "FAIL", f"no CONNACK in {timeout_s:g} s", "is this an MQTT port? check mqtt.tls"
        reason = outcome["reason"]
        if getattr(reason, "is_failure", False):
            text = str(reason)
            fix = "check mqtt.username and the password file"
            if "authori" in text.lower() and mqtt.username is not None:
                fix += ", and the broker's ACL for this client id"
            return "FAIL", f"broker refused the connection: {text}", fix
        return "PASS", "connected" + (" with credentials" if mqtt.username else ""), ""
    finally:
        client.disconnect()
        client.loop_stop()
