"""HTTPS for the loopback fault web: a local CA (`trustme`) and certificates with faults.

`FaultWeb(tls=True)` serves HTTPS beside HTTP on every bind address. The server picks the
certificate by the SNI name the client sent (and records that name), so one listener can
serve a good certificate to one host and a broken one to the next:

    web.certificate("old.test", "expired")
    crawl with resolve_overrides {"*": web.address(), "*:443": web.address(tls=True)}
    and the crawler trusting web.tls.ca_file

Kinds: "valid" (the default for every name), "self_signed", "expired", "wrong_host" (issued
for another name), "incomplete_chain" (issued by an intermediate the server does not send).
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import tempfile
import threading
from pathlib import Path

import trustme

KINDS = ("valid", "self_signed", "expired", "wrong_host", "incomplete_chain")


class TlsCertificates:
    """The CA the crawler trusts, and a server context per (host, kind), made on demand."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self._intermediate = self.ca.create_child_ca()
        self._dir = tempfile.TemporaryDirectory(prefix="faultweb-tls-")
        self.ca_file = str(Path(self._dir.name) / "ca.pem")
        Path(self.ca_file).write_bytes(self.ca.cert_pem.bytes())
        self.kinds: dict[str, str] = {}  # host -> kind; "valid" when absent
        self.sni_names: list[str | None] = []  # every SNI name the server was sent
        self._contexts: dict[tuple[str, str], ssl.SSLContext] = {}
        self._lock = threading.Lock()
        self.default_context = self._context("default.test", "valid")
        self.default_context.sni_callback = self._choose

    def close(self) -> None:
        self._dir.cleanup()

    def _choose(self, ssl_object: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        with self._lock:
            self.sni_names.append(name)
            kind = self.kinds.get(name or "", "valid")
        ssl_object.context = self._context(name or "no-sni.test", kind)

    def _context(self, host: str, kind: str) -> ssl.SSLContext:
        key = (host, kind)
        with self._lock:
            if key not in self._contexts:
                self._contexts[key] = self._make_context(host, kind)
            return self._contexts[key]

    def _make_context(self, host: str, kind: str) -> ssl.SSLContext:
        if kind == "self_signed":
            stranger = trustme.CA()
            pem = stranger.private_key_pem.bytes() + stranger.cert_pem.bytes()
        elif kind == "expired":
            past = datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)
            leaf = self.ca.issue_cert(
                host, not_before=past, not_after=past + datetime.timedelta(days=30)
            )
            pem = leaf.private_key_and_cert_chain_pem.bytes()
        elif kind == "wrong_host":
            pem = self.ca.issue_cert("someone-else.test").private_key_and_cert_chain_pem.bytes()
        elif kind == "incomplete_chain":
            leaf = self._intermediate.issue_cert(host)
            pem = leaf.private_key_pem.bytes() + leaf.cert_chain_pems[0].bytes()  # no intermediate
        elif kind == "valid":
            pem = self.ca.issue_cert(host).private_key_and_cert_chain_pem.bytes()
        else:
            raise ValueError(f"certificate kind {kind!r}: use one of {KINDS}")
        path = Path(self._dir.name) / f"{kind}-{len(self._contexts)}.pem"
        path.write_bytes(pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(path)
        return context


def stalled_handshake(interval: float):
    """A raw TCP handler that reads the ClientHello, then trickles a never-ending TLS record:
    a slow-loris TLS handshake."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(4096)
            record = b"\x16\x03\x03\x40\x00" + b"\x02" * 0x4000  # a 16 KB ServerHello record
            for i in range(len(record)):
                writer.write(record[i : i + 1])
                await writer.drain()
                await asyncio.sleep(interval)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client gave up, or the web is stopping
        finally:
            writer.close()

    return serve
