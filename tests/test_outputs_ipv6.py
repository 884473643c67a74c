"""The standard outputs with IPv6 literal hosts over the ::1 loopback: CoT urls in brackets
(`tcp://[::1]:port`, `udp://[::1]:port`, `tls://[::1]:port` with the certificate naming the
address; IPv6 multicast opened with hop limit 1), `doctor` on them, and a SAPIENT `host` that is an
IPv6 address. Skipped where the machine has no IPv6 loopback."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cuas_node.config import ConfigError, build_config
from cuas_node.kernel.reports import NodePosition
from cuas_node.outputs.cot_link import CotLink
from cuas_node.outputs.outputs import Outputs
from tests.certs import self_signed
from tests.reports import track
from tests.test_outputs import SESSION, TcpPeer, make_outputs, udp_event_uids, wait_until


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")


@pytest.fixture
def peer6() -> Iterator[TcpPeer]:
    peer = TcpPeer(0, host="::1")
    yield peer
    peer.close()


def test_tcp_to_an_ipv6_literal_delivers_and_health_names_it(peer6: TcpPeer) -> None:
    url = f"tcp://[::1]:{peer6.port}"
    outputs = make_outputs(url)
    outputs.start()
    try:
        outputs.position(NodePosition(52.0, 4.0, 10.0, "config"))
        outputs.tracks(1.0, [track(number=1)])
        wait_until(lambda: len(peer6.events) >= 2)
        health = outputs.health()[0]
        assert health["state"] == "connected" and health["target"] == url
    finally:
        outputs.stop()
    assert peer6.uids() == ["cuas.mast-1", f"cuas.mast-1.{SESSION}.1"]


def test_udp_to_an_ipv6_literal_sends_one_event_per_datagram() -> None:
    assert udp_event_uids("::1") == ["cuas.mast-1", f"cuas.mast-1.{SESSION}.1", f"cuas.mast-1.{SESSION}.2"]


def test_ipv6_multicast_opens_with_hop_limit_one() -> None:
    """Opened, never sent: a multicast datagram would leave the loopback (and a link-local group
    needs a real interface, which the loopback is not)."""
    link = CotLink("udp://[ff15::1]:6969")
    try:
        link.open(5.0)
    except OSError as exc:  # a machine with IPv6 on the loopback only has no multicast route
        pytest.skip(f"no IPv6 multicast route here: {exc}")
    try:
        sock = link._writer.socket
        assert sock.family == socket.AF_INET6
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS) == 1
        assert sock.getpeername()[:2] == ("ff15::1", 6969)
    finally:
        link.close()


class TlsPeer6:
    """A mutual-TLS server on ::1 whose certificate names IP ::1 and that trusts `client_ca`."""

    def __init__(self, tmp_path: Path, client_ca: Path) -> None:
        cert, key = self_signed(tmp_path, "server6", "tak6", "IP:::1")
        self.cert = cert
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
        self.server = socket.create_server(("::1", 0), family=socket.AF_INET6)
        self.port = self.server.getsockname()[1]
        self.received = b""
        threading.Thread(target=self._serve, args=(context,), daemon=True).start()

    def _serve(self, context: ssl.SSLContext) -> None:
        raw, _ = self.server.accept()
        with context.wrap_socket(raw, server_side=True) as conn:
            while chunk := conn.recv(65536):
                self.received += chunk

    def close(self) -> None:
        self.server.close()


def test_mutual_tls_to_an_ipv6_literal_checks_the_address_in_the_certificate(tmp_path: Path) -> None:
    client_cert, client_key = self_signed(tmp_path, "node6", "node6")
    peer = TlsPeer6(tmp_path, client_cert)
    files = {
        "tls_cert_file": str(client_cert),
        "tls_key_file": str(client_key),
        "tls_ca_file": str(peer.cert),
    }
    outputs = make_outputs(f"tls://[::1]:{peer.port}", **files)
    outputs.start()
    try:
        outputs.position(NodePosition(52.0, 4.0, 10.0, "config"))
        wait_until(lambda: b'uid="cuas.mast-1"' in peer.received)
        assert outputs.health()[0]["state"] == "connected"
    finally:
        outputs.stop()
        peer.close()


def test_doctor_checks_ipv6_outputs(peer6: TcpPeer) -> None:
    from cuas_node.doctor_outputs import OutputChecks

    closed = socket.create_server(("::1", 0), family=socket.AF_INET6)
    dead = closed.getsockname()[1]
    closed.close()
    cots = [
        {"name": "up6", "url": f"tcp://[::1]:{peer6.port}"},
        {"name": "down6", "url": f"tcp://[::1]:{dead}"},
    ]
    config = build_config({"node": {"id": "mast-1"}, "outputs": {"cot": cots}}, "test")
    checks = OutputChecks(timeout_s=3.0)
    checks.check_outputs(config)
    lines = {c.name: c for c in checks.checks}
    assert (
        lines["output up6"].status == "PASS"
        and f"[::1]:{peer6.port}: connected" in lines["output up6"].message
    )
    down = lines["output down6"]
    assert down.status == "FAIL" and "ConnectionRefusedError" in down.message and f"[::1]:{dead}" in down.fix


def test_ipv6_urls_and_hosts_in_the_config() -> None:
    good = [
        "tcp://[::1]:8087",
        "tls://[2001:db8::5]:8089",
        "udp://[ff02::1%eth0]:6969",
        "udp://[ff15::1]:6969",
    ]
    for url in good:
        build_config({"node": {"id": "n"}, "outputs": {"cot": [{"url": url, **tls_files(url)}]}}, "t")
    for bad, words in (
        ("tcp://::1:8087", "outputs.cot[0].url"),  # no brackets: the port is ambiguous
        ("tcp://[::g]:8087", "an IPv6 address in brackets"),
        ("tcp://[1::2::3]:8087", "is not an IPv6 address"),
        ("udp://[ff02::1]:6969", "link-local: name the interface, e.g. udp://[ff02::1%eth0]:6969"),
        ("tcp://[fe80::5]:8087", "link-local"),
        ("tcp://[::1]:0", "1..65535"),
    ):
        with pytest.raises(ConfigError) as info:
            build_config({"node": {"id": "n"}, "outputs": {"cot": [{"url": bad}]}}, "t")
        assert words in str(info.value), (bad, str(info.value))
    for host in ("::1", "2001:db8::7", "fe80::7%eth0"):
        section = {"host": host, "port": 15020}
        config = build_config({"node": {"id": "n"}, "outputs": {"sapient": section}}, "t")
        [w] = Outputs.from_config(config, 1, time.time).workers
        assert w.health()["target"] == f"tcp://[{host}]:15020"
    for host, words in (
        ("1:2:x", "neither a host name nor an IPv4 or IPv6 address"),
        ("fe80::7", "link-local"),
    ):
        with pytest.raises(ConfigError) as info:
            build_config({"node": {"id": "n"}, "outputs": {"sapient": {"host": host, "port": 1}}}, "t")
        assert words in str(info.value)


def test_sapient_to_an_ipv6_host_registers() -> None:
    from tests.test_sapient_apex import MiniPeer

    peer = MiniPeer(accept=True, host="::1")
    config = build_config(
        {"node": {"id": "mast-1"}, "outputs": {"sapient": {"host": "::1", "port": peer.port}}}, "t"
    )
    [w] = Outputs.from_config(config, 1, time.time).workers
    w.start()
    try:
        wait_until(lambda: w.state == "connected")
        assert peer.attempts == 1 and w.health()["target"] == f"tcp://[::1]:{peer.port}"
    finally:
        w.stop()
        peer.close()


def tls_files(url: str) -> dict[str, str]:
    return {"tls_cert_file": "/c", "tls_key_file": "/k"} if url.startswith("tls") else {}
