"""Serve a generated micro-web on one loopback port, every host name by its Host header.

    with MicroWeb("demo-data/microweb/site") as web:
        ...  # fetch with fetch.resolve_overrides = {"*" = f"127.0.0.1:{web.port}"}

The fetcher connects to 127.0.0.1:PORT and sends the page's own Host header; the server
looks the (host, path, query) up in `routes.json` and answers with the planted status,
content type, delay, redirect or body. It speaks plain HTTP/1.1 with keep-alive: there is
no TLS, so the fetcher requests the http:// form of a link (every planted page has one).

Lookups forgive what link normalization forgives: host case, a port, a leading "www.", a
trailing slash, percent-encoding of unreserved characters, tracking parameters and the
order of query parameters. Anything not planted is a 404.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from pipeline.demo.pages import status_page
from pipeline.demo.site import ROUTES_FILE
from pipeline.urls import normalize_host

# Query keys the server ignores, like link normalization does ("utm_" is a prefix).
IGNORED_QUERY_KEYS = frozenset({"fbclid", "gclid", "dclid", "msclkid", "ref", "ref_src", "igshid"})
SERVER_NAME = "microweb/1"


@dataclass(frozen=True)
class Route:
    status: int
    content_type: str | None
    body: bytes
    delay_s: float
    location: str | None


def canonical_host(host: str) -> str:
    """Lowercase, no port, no trailing dot, no leading www., IDN as punycode."""
    host = host.strip().lower()
    if host.startswith("["):  # IPv6 literal
        return host.split("]")[0] + "]"
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return normalize_host(host) or host


def canonical_target(target: str) -> str:
    """Path and query as the route index keys them."""
    parts = urlsplit(target)
    path = unquote(parts.path) or "/"
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    pairs = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in IGNORED_QUERY_KEYS and not k.lower().startswith("utm_")
    ]
    query = urlencode(sorted(pairs))
    return f"{path}?{query}" if query else path


class SiteIndex:
    """The routes of a generated site, keyed by canonical host and target."""

    def __init__(self, site_dir: str | Path):
        site_dir = Path(site_dir)
        index_path = site_dir / ROUTES_FILE
        if not index_path.is_file():
            raise FileNotFoundError(
                f"{index_path} does not exist: run `python -m pipeline.demo generate DIR` "
                "and serve DIR/site"
            )
        index = json.loads(index_path.read_text(encoding="utf-8"))
        self.routes: dict[tuple[str, str], Route] = {}
        for raw in index["routes"]:
            key = (canonical_host(raw["host"]), canonical_target(raw["target"]))
            if key in self.routes:
                raise ValueError(f"{index_path}: two routes for http://{key[0]}{key[1]}")
            body = (site_dir / raw["body"]).read_bytes() if raw.get("body") else b""
            if not body and raw["status"] in (404, 410, 500):
                body = status_page(raw["status"])
            self.routes[key] = Route(
                status=raw["status"],
                content_type=raw.get("content_type") or ("text/html" if body else None),
                body=body,
                delay_s=float(raw.get("delay_s", 0.0)),
                location=raw.get("location"),
            )
        self.hosts = sorted({host for host, _ in self.routes})

    def lookup(self, host: str, target: str) -> Route | None:
        return self.routes.get((canonical_host(host), canonical_target(target)))


NOT_FOUND = Route(404, "text/html; charset=utf-8", status_page(404), 0.0, None)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the fetcher can reuse connections
    server_version = SERVER_NAME
    sys_version = ""
    server: _Server

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _answer(self, with_body: bool) -> None:
        target = self.path
        host = self.headers.get("Host", "")
        if target.startswith(("http://", "https://")):  # absolute-form request line
            parts = urlsplit(target)
            host, target = parts.netloc, parts.path + (f"?{parts.query}" if parts.query else "")
        if not host:
            self._send(Route(400, "text/plain", b"a Host header is required\n", 0.0, None), True)
            return
        route = self.server.index.lookup(host, target) or NOT_FOUND
        self.server.record(canonical_host(host), target, route.status)
        if route.delay_s > 0 and self.server.stopping.wait(route.delay_s):
            self.close_connection = True
            return
        self._send(route, with_body)

    def _send(self, route: Route, with_body: bool) -> None:
        self.send_response(route.status)
        if route.location:
            self.send_header("Location", route.location)
        if route.content_type:
            self.send_header("Content-Type", route.content_type)
        self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        if with_body and route.body:
            self.wfile.write(route.body)

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError):
            pass  # the client gave up (a fetcher's deadline on a slow page): nothing to do

    def log_message(self, format: str, *args: Any) -> None:
        pass  # `MicroWeb.requests` keeps what was asked


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a fetcher keeps many requests in flight
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], index: SiteIndex):
        super().__init__(address, _Handler)
        self.index = index
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str, int]] = []

    def record(self, host: str, target: str, status: int) -> None:
        with self._lock:
            self.requests.append((host, target, status))


class MicroWeb:
    """The micro-web served from a background thread; a context manager.

    `port` is known once constructed (the socket is bound and listening); requests are
    answered between `start()` and `stop()`.
    """

    def __init__(self, site_dir: str | Path, host: str = "127.0.0.1", port: int = 0):
        self.index = SiteIndex(site_dir)
        self._server = _Server((host, port), self.index)
        self._thread: threading.Thread | None = None
        self._state = threading.Lock()
        self._serving = False
        self._stopped = False

    @property
    def host(self) -> str:
        return self._server.server_address[0]

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def address(self) -> str:
        """ "ip:port", the value for fetch.resolve_overrides."""
        return f"{self.host}:{self.port}"

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """(host, target, status) of every request answered so far, in arrival order."""
        with self._server._lock:
            return list(self._server.requests)

    def start(self) -> MicroWeb:
        with self._state:
            if self._thread is None and not self._serving:
                self._serving = True
                self._thread = threading.Thread(
                    target=self._server.serve_forever,
                    kwargs={"poll_interval": 0.05},
                    name="microweb",
                    daemon=True,
                )
                self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve from the calling thread until `stop()` is called from another thread."""
        with self._state:
            if self._serving:
                raise RuntimeError("the micro-web is already serving")
            self._serving = True
        self._server.serve_forever(poll_interval=0.1)

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call more than once, from any thread."""
        with self._state:
            if self._stopped:
                return
            self._stopped = True
            serving, thread = self._serving, self._thread
        self._server.stopping.set()  # wakes handlers sleeping on a slow page
        if serving:
            self._server.shutdown()
        if thread is not None:
            thread.join()
        self._server.server_close()

    def __enter__(self) -> MicroWeb:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
