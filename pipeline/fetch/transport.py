"""HTTP for the fetch engine: requests to checked addresses only, bodies read under limits.

`Transport.open(url, ctx)` resolves the URL's host itself, checks the address
against the `AddressPolicy` and *pins* it: the connection classes connect only to a pinned
address and never resolve again, so DNS rebinding cannot reach a private address after the
check. For HTTPS the connection keeps the host name: it is sent as SNI and the certificate
is verified against it (unless `verify_tls` is off), whatever address was pinned. Each
worker thread binds its `RequestContext`: it carries the deadline of the
request in flight, and the connection registers its socket there so that the crawler's
watchdog can shut it at that deadline.

Bodies are read as a stream: `BodyDecoder` decodes gzip/deflate itself with a bounded output,
so memory stays under the cap even for a decompression bomb. `classify` maps whatever a
request raised to a recorded outcome.

(Not named http.py: `python pipeline/fetch/stage.py` puts this folder first on sys.path,
where such a module would hide the standard library's `http`.)
"""

from __future__ import annotations

import ipaddress
import random
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import idna
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from pipeline.config import FetchConfig
from pipeline.content import SNIFF_BYTES
from pipeline.fetch.records import Exchange, StepFailure

CHUNK_BYTES = 64 * 1024
REDIRECT_STATUS = (301, 302, 303, 307, 308)
# Below this many decoded bytes the ratio guard stays off: small pages compress very well.
BOMB_MIN_DECODED = 64 * 1024


# ---------------------------------------------------------------------------------------
# Addresses


class AddressPolicy:
    """Which resolved addresses a request may reach.

    `extra_public` lists networks to treat as public; only tests use it, to stand a
    loopback address in for a public one.
    """

    def __init__(self, allow_private: bool, extra_public: Iterable[str] = ()):
        self.allow_private = allow_private
        self.extra_public = [ipaddress.ip_network(n) for n in extra_public]

    def allows(self, ip_text: str) -> bool:
        ip = ipaddress.ip_address(ip_text)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if self.allow_private or any(ip in net for net in self.extra_public):
            return True
        return ip.is_global and not ip.is_multicast


def address_kind(ip_text: str) -> str:
    ip = ipaddress.ip_address(ip_text)
    for kind in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{kind}"):
            return kind
    return "not_global"


class RequestContext:
    """One thread's request in flight: its deadline, its socket, whether the watchdog cut it."""

    __slots__ = ("deadline", "sock", "killed")

    def __init__(self) -> None:
        self.deadline = float("inf")
        self.sock: socket.socket | None = None
        self.killed = False


class _Pins:
    """Host -> the checked address to connect to. Filled only after the policy check."""

    def __init__(self) -> None:
        self._pins: dict[tuple[str, int], tuple[str, int]] = {}
        self._lock = threading.Lock()

    def set(self, host: str, port: int, address: tuple[str, int]) -> None:
        with self._lock:
            self._pins[(host, port)] = address

    def get(self, host: str, port: int) -> tuple[str, int]:
        with self._lock:
            address = self._pins.get((host, port))
        if address is None:
            raise OSError(f"refusing to connect to {host}:{port}: address was never checked")
        return address


def _pinned_connection_classes(pins: _Pins, tls: threading.local) -> tuple[type, type]:
    def new_conn(self: HTTPConnection) -> socket.socket:
        ip, port = pins.get(self.host.rstrip(".").lower(), self.port)
        try:
            sock = socket.create_connection((ip, port), self.timeout)
        except TimeoutError as e:
            raise urllib3.exceptions.ConnectTimeoutError(self, f"connect to {ip} timed out") from e
        except OSError as e:
            raise urllib3.exceptions.NewConnectionError(self, f"connect to {ip}: {e}") from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ctx = getattr(tls, "ctx", None)
        if ctx is not None:
            ctx.sock = sock
        return sock

    def request(self: HTTPConnection, *args: Any, **kwargs: Any) -> None:
        ctx = getattr(tls, "ctx", None)
        if ctx is not None and self.sock is not None:
            ctx.sock = self.sock
        return type(self).__mro__[1].request(self, *args, **kwargs)

    http_cls = type("PinnedHTTPConnection", (HTTPConnection,), {"_new_conn": new_conn})
    https_cls = type("PinnedHTTPSConnection", (HTTPSConnection,), {"_new_conn": new_conn})
    http_cls.request = request
    https_cls.request = request
    return http_cls, https_cls


class _PinnedAdapter(HTTPAdapter):
    def __init__(self, http_cls: type, https_cls: type, **kwargs: Any):
        self._http_pool = type("PinnedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_cls})
        self._https_pool = type(
            "PinnedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_cls}
        )
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": self._http_pool,
            "https": self._https_pool,
        }


class _BlockAllCookies(requests.cookies.cookielib.DefaultCookiePolicy):
    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False


# ---------------------------------------------------------------------------------------
# Requests


class Transport:
    """One pooled `requests.Session` whose connections reach checked, pinned addresses only."""

    def __init__(self, config: FetchConfig, policy: AddressPolicy, ca_file: str | None = None):
        """`ca_file`: the certificate authorities to trust instead of the system's (tests)."""
        self.config = config
        self.policy = policy
        self._tls = threading.local()
        self._pins = _Pins()
        self._resolved: dict[tuple[str, int], tuple[str, int] | StepFailure] = {}
        http_cls, https_cls = _pinned_connection_classes(self._pins, self._tls)
        adapter = _PinnedAdapter(
            http_cls,
            https_cls,
            pool_connections=4096,
            pool_maxsize=max(config.max_per_host, 1),
            pool_block=False,
            max_retries=0,
        )
        session = requests.Session()
        session.trust_env = False  # no proxies or netrc from the environment: we pin addresses
        session.cookies.set_policy(_BlockAllCookies())
        session.verify = (ca_file or True) if config.verify_tls else False
        if not config.verify_tls:
            # The fetch log marks every such page instead of a warning per request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        session.headers.clear()
        session.headers.update(
            {
                "User-Agent": config.user_agent,
                "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
                "Accept-Encoding": "gzip, deflate",
                "Accept-Language": "en;q=1.0, *;q=0.5",
            }
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session

    def bind(self, ctx: RequestContext) -> None:
        """Make `ctx` the calling thread's context: its connections register their sockets there."""
        self._tls.ctx = ctx

    def open(
        self, url: str, ctx: RequestContext, extra_headers: dict | None = None
    ) -> tuple[requests.Response, str]:
        """GET `url` before `ctx.deadline`, without following redirects; the response
        streams. Returns it and the address it came from."""
        remaining = max(ctx.deadline - time.monotonic(), 0.001)
        ip, _ = self._resolve(url)
        timeout = (
            min(self.config.connect_timeout_s, remaining),
            min(self.config.read_timeout_s, remaining),
        )
        try:
            response = self._session.get(
                url,
                headers=extra_headers,
                stream=True,
                allow_redirects=False,
                timeout=timeout,
            )
        except Exception as e:
            raise classify(e, ctx) from None
        return response, ip

    def close(self) -> None:
        self._session.close()

    def _resolve(self, url: str) -> tuple[str, int]:
        """Resolve and check a URL's host; pins the checked address for the connection."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StepFailure("bad_url", "scheme" if parts.hostname else "no host")
        try:
            # Pinned by the ASCII (punycode) name: that is the name urllib3 connects with.
            host = idna.encode(parts.hostname.rstrip("."), uts46=True).decode("ascii")
        except idna.IDNAError:
            raise StepFailure("bad_url", "host name") from None
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise StepFailure("bad_url", "port") from None
        key = (host, port)
        cached = self._resolved.get(key)
        if cached is None:
            cached = self._resolved[key] = self._lookup(host, port)
        if isinstance(cached, StepFailure):
            raise cached
        self._pins.set(host, port, cached)
        return cached

    def _lookup(self, host: str, port: int) -> tuple[str, int] | StepFailure:
        overrides = self.config.resolve_overrides
        override = next(
            (overrides[k] for k in (f"{host}:{port}", host, f"*:{port}", "*") if k in overrides),
            None,
        )
        if override:
            ip, _, override_port = override.rpartition(":")
            address = (ip.strip("[]"), int(override_port))
        else:
            try:
                ipaddress.ip_address(host)
                infos = [(None, None, None, None, (host, port))]
            except ValueError:
                try:
                    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                except (OSError, UnicodeError) as e:
                    return StepFailure("dns_error", type(e).__name__)
            if not infos:
                return StepFailure("dns_error", "no address")
            address = (infos[0][4][0], port)
        if not self.policy.allows(address[0]):
            return StepFailure("blocked_address", address_kind(address[0]))
        return address


def classify(error: Exception, ctx: RequestContext) -> StepFailure:
    """Map a requests/urllib3/socket error to an outcome; a watchdog kill is a timeout."""
    if isinstance(error, StepFailure):
        return error
    if ctx.killed:
        return StepFailure("timeout", "DeadlineExceeded")
    name = type(error).__name__
    text = repr(error)
    if isinstance(
        error, requests.exceptions.ConnectTimeout | urllib3.exceptions.ConnectTimeoutError
    ):
        return StepFailure("timeout", "ConnectTimeout")
    if isinstance(error, requests.exceptions.ReadTimeout | urllib3.exceptions.ReadTimeoutError):
        return StepFailure("timeout", "ReadTimeout")
    if isinstance(error, TimeoutError | socket.timeout):
        return StepFailure("timeout", "ReadTimeout")
    if isinstance(error, requests.exceptions.SSLError | urllib3.exceptions.SSLError):
        return StepFailure("tls_error", tls_reason(error))
    if isinstance(error, requests.exceptions.InvalidURL | requests.exceptions.InvalidSchema):
        return StepFailure("bad_url", name)
    if "NameResolutionError" in text:
        return StepFailure("dns_error", "NameResolutionError")
    if isinstance(
        error,
        requests.exceptions.ConnectionError
        | requests.exceptions.ChunkedEncodingError
        | urllib3.exceptions.HTTPError
        | ConnectionError
        | OSError,
    ):
        kind = "ConnectionReset" if "reset" in text.lower() else name
        return StepFailure("connection_error", kind)
    return StepFailure("internal_error", name)


# OpenSSL's X509_V_ERR_* codes for the certificate faults met on the web.
CERTIFICATE_FAULTS = {
    10: "expired",
    18: "self_signed",
    19: "self_signed_in_chain",
    20: "incomplete_chain",  # unable to get the local issuer: an intermediate is missing
    21: "incomplete_chain",  # unable to verify the first certificate
    62: "hostname_mismatch",
}


def tls_reason(error: BaseException) -> str:
    """Why a TLS connection failed, from the ssl error inside the wrapped exception."""
    seen: set[int] = set()
    todo: list[BaseException] = [error]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ssl.SSLCertVerificationError):
            message = (e.verify_message or "").replace(" ", "_")
            return CERTIFICATE_FAULTS.get(e.verify_code, f"certificate:{message}"[:80])
        if isinstance(e, ssl.SSLError) and e.reason:
            return f"handshake:{e.reason.lower()}"[:80]
        todo += [a for a in e.args if isinstance(a, BaseException)]
        links = (e.__cause__, e.__context__, getattr(e, "reason", None))
        todo += [x for x in links if isinstance(x, BaseException)]
    return type(error).__name__


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(base_s: float, attempt: int, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [base/2, base * 2^(attempt-1)]."""
    top = base_s * (2 ** max(attempt - 1, 0))
    return rng.uniform(min(base_s / 2, top), top)


# ---------------------------------------------------------------------------------------
# Bodies


class BodyDecoder:
    """Decodes a streamed body, enforcing the size cap and the decompression-ratio guard.

    `feed` returns False once the body is complete for our purposes (cap reached).
    Raises StepFailure for a bomb, a dropped oversize body or a broken encoding.
    """

    def __init__(self, content_encoding: str, max_bytes: int, max_ratio: float, oversize: str):
        encoding = content_encoding.strip().lower()
        if encoding in ("", "identity"):
            self._zlib = None
        elif encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 32)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj()
        else:
            raise StepFailure("bad_encoding", f"content-encoding:{encoding[:40]}")
        self.encoding = encoding
        self.max_bytes, self.max_ratio, self.oversize = max_bytes, max_ratio, oversize
        self.wire_bytes = 0
        self.parts: list[bytes] = []
        self.size = 0
        self.truncated = False

    def feed(self, wire: bytes) -> bool:
        self.wire_bytes += len(wire)
        room = self.max_bytes + 1 - self.size
        if self._zlib is None:
            decoded, more = wire[:room], len(wire) > room
        else:
            decoded = self._decompress(wire, room)
            more = bool(self._zlib.unconsumed_tail)
        self.parts.append(decoded)
        self.size += len(decoded)
        # Ratio over the wire bytes actually consumed: a capped decompression leaves a tail.
        consumed = self.wire_bytes - len(self._zlib.unconsumed_tail) if self._zlib else 0
        if (
            self._zlib is not None
            and self.size >= BOMB_MIN_DECODED
            and self.size > self.max_ratio * max(consumed, 1)
        ):
            raise StepFailure("decompression_bomb", f"ratio>{self.max_ratio:g}")
        if self.size > self.max_bytes or more:
            if self.oversize == "drop":
                raise StepFailure("too_large", f"body>{self.max_bytes}")
            self.truncated = True
            return False
        return True

    def _decompress(self, wire: bytes, room: int) -> bytes:
        try:
            return self._zlib.decompress(self._zlib.unconsumed_tail + wire, room)
        except zlib.error:
            if self.encoding == "deflate" and self.wire_bytes == len(wire):
                # Some servers send raw deflate without the zlib header.
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                return self._decompress(wire, room)
            raise StepFailure("bad_encoding", "corrupt " + self.encoding) from None

    def body(self) -> bytes:
        data = b"".join(self.parts)
        return data[: self.max_bytes]

    def head(self) -> bytes:
        return b"".join(self.parts)[:SNIFF_BYTES]


def read_limited(response: requests.Response, limit: int, ctx: RequestContext) -> bytes:
    """A small body (robots.txt, archive lookups) read whole, decoded, up to `limit` bytes."""
    complete = False
    try:
        decoder = BodyDecoder(response.headers.get("Content-Encoding", ""), limit, 1e9, "truncate")
        while True:
            chunk = response.raw.read(CHUNK_BYTES, decode_content=False)
            if ctx.killed or time.monotonic() > ctx.deadline:
                raise StepFailure("timeout", "DeadlineExceeded")
            if not chunk:
                complete = True
                break
            if not decoder.feed(chunk):
                break
    except StepFailure:
        raise
    except Exception as e:
        raise classify(e, ctx) from None
    finally:
        let_go(response, complete)
    return decoder.body()


def drain(response: requests.Response, limit: int = 64 * 1024) -> bool:
    """Read a small unwanted body (a redirect's, an error page's) so the connection can be
    reused; False when it is large or broken and the connection should be dropped instead."""
    length = response.headers.get("Content-Length", "")
    if not length.isdigit() or int(length) > limit:
        return False  # unknown or large: never wait on a body nobody needs
    try:
        got = 0
        while got <= limit:
            chunk = response.raw.read(CHUNK_BYTES, decode_content=False)
            if not chunk:
                return True
            got += len(chunk)
    except Exception:
        return False
    return False


def let_go(response: requests.Response, complete: bool) -> None:
    """Give a fully read connection back to the pool; close a partly read one."""
    raw = response.raw
    if not complete:
        raw.close()
    raw.release_conn()


# ---------------------------------------------------------------------------------------
# Exchanges as stored


def exchange_of(url: str, ip: str | None, response: requests.Response) -> Exchange:
    """The request and the response's head as they go into the WARC; the body comes later."""
    request = response.request
    wire_host = urlsplit(request.url or url).netloc  # the prepared URL's host is punycode
    request_headers = [("Host", wire_host)] + [(k, v) for k, v in request.headers.items()]
    raw = response.raw
    version = {10: "HTTP/1.0", 11: "HTTP/1.1"}.get(getattr(raw, "version", 11), "HTTP/1.1")
    return Exchange(
        url=url,
        ip=ip,
        method=request.method or "GET",
        request_headers=request_headers,
        status=response.status_code,
        reason=response.reason or "",
        http_version=version,
        response_headers=list(raw.headers.items()),
        body=b"",
    )


_RENAMED = {"content-encoding", "content-length", "transfer-encoding"}


def stored_headers(headers: list[tuple[str, str]], body_len: int) -> list[tuple[str, str]]:
    """Headers for the decoded body as stored, the wire's framing kept under X-Crawler-*."""
    out = []
    for name, value in headers:
        if name.lower() in _RENAMED:
            out.append((f"X-Crawler-{name}", value))
        else:
            out.append((name, value))
    out.append(("Content-Length", str(body_len)))
    return out
