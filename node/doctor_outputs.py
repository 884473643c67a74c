"""`doctor` lines for the standard outputs (docs/outputs.md): one line per configured output.

Why a real connection: the failures of a TAK link are a server that is not listening, a firewall,
and (with mutual TLS) a CA, client certificate or host name that do not match; only opening the
link as the node would finds them, so the check opens it with the node's own transport and closes
it again without sending anything.
"""

from __future__ import annotations

import ssl

from cuas_node.config import Config
from cuas_node.doctor_checklist import Checklist
from cuas_node.doctor_homeassistant import NAME as HA_NAME
from cuas_node.doctor_homeassistant import homeassistant_line
from cuas_node.outputs.cot_link import CotLink
from cuas_node.outputs.sapient_link import SapientLink


class OutputChecks(Checklist):
    def check_outputs(self, config: Config) -> None:
        self.check_sapient(config)
        line = homeassistant_line(config, self.timeout_s)
        if line is not None:
            self.add(line[0], HA_NAME, line[1], line[2])
        for index, section in enumerate(config.outputs.cot):
            name = f"output {section.name or f'cot{index}'}"
            if not section.enabled:
                self.add("PASS", name, f"{section.url}: disabled")
                continue
            link = CotLink(section.url, section.tls_cert_file, section.tls_key_file, section.tls_ca_file)
            try:
                link.open(self.timeout_s)
                if section.url.startswith("tls://"):
                    # TLS 1.3 servers check the client's certificate after the handshake: a
                    # refusal arrives as an alert just after `open`.
                    link.wait(min(1.0, self.timeout_s))
            except (OSError, ValueError) as exc:
                self.add("FAIL", name, f"{section.url}: {type(exc).__name__}: {exc}", _fix(exc, section.url))
                continue
            finally:
                link.close()
            if section.url.startswith("udp://"):
                self.add("PASS", name, f"{section.url}: socket ready (UDP is not acknowledged: watch ATAK)")
            else:
                verified = ", TLS verified" if section.url.startswith("tls://") else ""
                self.add("PASS", name, f"{section.url}: connected{verified}")

    def check_sapient(self, config: Config) -> None:
        """The SAPIENT peer: the connection only (TCP, TLS verified). Registering from `doctor`
        would announce a second ASM with the running node's id, so registration is left to it."""
        section = config.outputs.sapient
        if section is None:
            return
        link = SapientLink(
            section.host,
            section.port,
            _NoHandler(),
            tls=section.tls,
            tls_ca_file=section.tls_ca_file,
            tls_cert_file=section.tls_cert_file,
            tls_key_file=section.tls_key_file,
        )
        if not section.enabled:
            self.add("PASS", "output sapient", f"{link.target}: disabled")
            return
        try:
            link.connect(self.timeout_s)
        except (OSError, ValueError) as exc:
            fix = (
                _fix(exc, link.target)
                .replace("TAK server", "SAPIENT middleware")
                .replace("[[outputs.cot]]", "[outputs.sapient]")
            )
            self.add("FAIL", "output sapient", f"{link.target}: {type(exc).__name__}: {exc}", fix)
            return
        finally:
            link.close()
        verified = ", TLS verified" if section.tls else ""
        self.add(
            "PASS", "output sapient", f"{link.target}: connected{verified} (the node registers when it runs)"
        )


class _NoHandler:
    def registration(self) -> bytes:
        return b""

    def handle(self, message: object) -> list[bytes]:
        return []


def _fix(exc: BaseException, url: str) -> str:
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and len(chain) < 10:
        chain.append(link)
        link = link.__cause__ or link.__context__
    if "cannot load tls_cert_file" in str(exc):
        return "tls_cert_file and tls_key_file must be the node's PEM certificate and its private key"
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain):
        return (
            "tls_ca_file must hold the CA that signed the server's certificate, and the url's host "
            "must be a name in that certificate"
        )
    if any(isinstance(e, ssl.SSLError) for e in chain):
        return "the server refused the node's certificate: it must be signed by the server's CA"
    if isinstance(exc, ConnectionRefusedError):
        return f"is the TAK server running and listening on {url.rsplit('/', 1)[-1]}? (firewall, port)"
    if isinstance(exc, TimeoutError):
        return "no answer: check the address, the route and the firewall"
    return "check the url and the files in [[outputs.cot]] (docs/config.md)"
