"""A loopback web with faults on demand, for the crawler's tests and its benchmark.

One asyncio HTTP/1.1 server (keep-alive, GET/HEAD) answers every host name by its Host
header; the crawler reaches it through `fetch.resolve_overrides`. Routes map (host, path)
to a reply or to a coroutine that misbehaves on purpose: trickling bytes, resetting the
connection, redirecting in circles. It also emulates the two archives the fetch stage falls
back on: a Common Crawl CDX index with a WARC data server (byte ranges), and the Wayback
Machine's availability API with its raw replay.

    with FaultWeb() as web:
        web.page("news.test", "/a", "<html>...</html>")
        web.route("slow.test", "/", trickle(b"<html>" * 100, interval=0.2))
        config = replace(fetch_config, resolve_overrides={"*": web.address()})

With `tls=True` every bind address also serves HTTPS (`web.address(tls=True)`), with a
certificate per SNI name from a local CA (tests/faultweb_tls.py); `listen_raw` serves one
raw TCP handler on a port of its own, for faults below HTTP.

Only 127.0.0.0/8 addresses are bound. Run alone it serves a generated web for the
benchmark in its own process: `python -m tests.faultweb bench --port-file F`.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import io
import json
import socket
import struct
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from tests.faultweb_tls import TlsCertificates

REASONS = {
    200: "OK",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Found",
    404: "Not Found",
    410: "Gone",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
HTML = "text/html; charset=utf-8"


@dataclass
class Request:
    method: str
    host: str
    path: str  # path with query
    headers: dict[str, str]

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=lambda: [("Content-Type", HTML)])
    delay: float = 0.0  # seconds before the status line

    def encode_head(self, length: int | None = None) -> bytes:
        lines = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in self.headers]
        if not any(k.lower() == "content-length" for k, _ in self.headers):
            lines.append(f"Content-Length: {len(self.body) if length is None else length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


Writer = asyncio.StreamWriter
Handler = Callable[[Request, Writer], Awaitable[bool]]  # returns False to close the connection


def as_handler(reply: Reply | Handler) -> Handler:
    if not isinstance(reply, Reply):
        return reply

    async def send(request: Request, writer: Writer) -> bool:
        if reply.delay:
            await asyncio.sleep(reply.delay)
        writer.write(reply.encode_head())
        if request.method != "HEAD":
            writer.write(reply.body)
        await writer.drain()
        return True

    return send


# --- misbehaviours --------------------------------------------------------------------------


def trickle(body: bytes, interval: float, content_type: str = HTML) -> Handler:
    """Headers at once, then the body one byte per `interval` (a slow-loris server)."""

    async def send(request: Request, writer: Writer) -> bool:
        writer.write(Reply(200, body, [("Content-Type", content_type)]).encode_head())
        await writer.drain()
        for i in range(len(body)):
            writer.write(body[i : i + 1])
            await writer.drain()
            await asyncio.sleep(interval)
        return True

    return send


def trickle_headers(interval: float) -> Handler:
    """The status line and headers themselves one byte at a time, forever."""

    async def send(request: Request, writer: Writer) -> bool:
        head = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 100_000
        for i in range(len(head)):
            writer.write(head[i : i + 1])
            await writer.drain()
            await asyncio.sleep(interval)
        return False

    return send


def reset() -> Handler:
    """Close the connection with a TCP reset before answering."""

    async def send(request: Request, writer: Writer) -> bool:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        return False

    return send


def sequence(*replies: Reply | Handler) -> Handler:
    """A different reply on each request; the last one repeats."""
    handlers = [as_handler(r) for r in replies]
    calls = Counter()

    async def send(request: Request, writer: Writer) -> bool:
        n = calls["n"]
        calls["n"] += 1
        return await handlers[min(n, len(handlers) - 1)](request, writer)

    return send


def redirect(location: str, status: int = 302) -> Reply:
    return Reply(status, b"", [("Location", location), ("Content-Type", HTML)])


def gzip_bomb(decoded_bytes: int) -> Reply:
    """A gzip body that inflates to `decoded_bytes` of zeros (about 1000:1)."""
    body = gzip.compress(b"\0" * decoded_bytes, compresslevel=9)
    return Reply(200, body, [("Content-Type", HTML), ("Content-Encoding", "gzip")])


def big_binary(size: int, interval: float = 0.05, content_type: str = "image/png") -> Handler:
    """A large binary body sent in slow 64 KB pieces; a fetcher that reads it takes long."""

    async def send(request: Request, writer: Writer) -> bool:
        piece = b"\x89PNG" + b"\1" * (64 * 1024 - 4)
        writer.write(Reply(200, b"", [("Content-Type", content_type)]).encode_head(size))
        sent = 0
        try:
            while sent < size:
                writer.write(piece[: size - sent])
                await writer.drain()
                sent += len(piece)
                await asyncio.sleep(interval)
        except ConnectionError:
            pass
        return False

    return send


# --- archive emulations ---------------------------------------------------------------------


class ArchiveEmulation:
    """Common Crawl (CDX index + WARC data with byte ranges) and Wayback on one FaultWeb.

    `add_commoncrawl(url, html)` writes a WARC record into an in-memory file and indexes it;
    `add_wayback(url, html, timestamp)` stores a snapshot.
    """

    INDEX_HOST, DATA_HOST, WAYBACK_HOST = "index.cc.test", "data.cc.test", "archive.test"
    INDEX_PATH = "/CC-TEST-index"
    WARC_NAME = "crawl-data/CC-TEST/segments/1/warc/test-00000.warc.gz"

    def __init__(self, web: FaultWeb):
        self.web = web
        self.cdx: dict[str, list[dict]] = {}
        self.warc = io.BytesIO()
        self.snapshots: dict[str, tuple[str, bytes | None]] = {}  # url -> (timestamp, html)
        self.redirects: dict[str, tuple[int, str]] = {}  # url -> (status, target)
        web.route(self.INDEX_HOST, self.INDEX_PATH, self._index)
        web.route(self.DATA_HOST, "*", self._data)
        web.route(self.WAYBACK_HOST, "*", self._wayback)

    @classmethod
    def endpoints(cls) -> dict[str, str]:
        return {
            "commoncrawl_index": f"http://{cls.INDEX_HOST}{cls.INDEX_PATH}",
            "commoncrawl_data": f"http://{cls.DATA_HOST}/",
            "wayback_endpoint": f"http://{cls.WAYBACK_HOST}",
        }

    def add_commoncrawl(self, url: str, html: bytes, status: int = 200) -> None:
        from warcio.statusandheaders import StatusAndHeaders
        from warcio.warcwriter import WARCWriter

        offset = self.warc.tell()
        writer = WARCWriter(self.warc, gzip=True)
        http = StatusAndHeaders(
            f"{status} {REASONS.get(status, 'Status')}",
            [("Content-Type", HTML), ("Content-Length", str(len(html)))],
            protocol="HTTP/1.1",
        )
        record = writer.create_warc_record(
            url, "response", payload=io.BytesIO(html), http_headers=http
        )
        writer.write_record(record)
        row = {
            "urlkey": url,
            "timestamp": "20180101000000",
            "url": url,
            "mime": "text/html",
            "mime-detected": "text/html",
            "status": str(status),
            "digest": hashlib.sha1(html).hexdigest(),
            "length": str(self.warc.tell() - offset),
            "offset": str(offset),
            "filename": self.WARC_NAME,
        }
        self.cdx.setdefault(url, []).append(row)

    def add_wayback(self, url: str, html: bytes, timestamp: str = "20170615000000") -> None:
        self.snapshots[url] = (timestamp, html)

    def add_wayback_redirect(
        self, url: str, target: str, timestamp: str = "20160101000000", status: int = 301
    ) -> None:
        """A snapshot of a redirect: replayed as the 3xx, its Location the target's replay."""
        self.snapshots[url] = (timestamp, None)
        self.redirects[url] = (status, target)

    async def _index(self, request: Request, writer: Writer) -> bool:
        url = request.query.get("url", [""])[0]
        rows = self.cdx.get(url)
        if not rows:
            reply = Reply(
                404, b'{"message": "No Captures found"}', [("Content-Type", "text/plain")]
            )
        else:
            body = "".join(json.dumps(r) + "\n" for r in rows).encode()
            reply = Reply(200, body, [("Content-Type", "text/x-ndjson")])
        return await as_handler(reply)(request, writer)

    async def _data(self, request: Request, writer: Writer) -> bool:
        if urlsplit(request.path).path.lstrip("/") != self.WARC_NAME:
            return await as_handler(Reply(404))(request, writer)
        data = self.warc.getvalue()
        spec = request.headers.get("range", "")
        if spec.startswith("bytes="):
            start, _, end = spec[6:].partition("-")
            part = data[int(start) : int(end) + 1]
            headers = [
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", f"bytes {start}-{end}/{len(data)}"),
            ]
            return await as_handler(Reply(206, part, headers))(request, writer)
        return await as_handler(Reply(200, data, [("Content-Type", "application/warc")]))(
            request, writer
        )

    async def _wayback(self, request: Request, writer: Writer) -> bool:
        path = urlsplit(request.path).path
        if path == "/wayback/available":
            url = request.query.get("url", [""])[0]
            snap = self.snapshots.get(url)
            closest = (
                {
                    "status": str(self.redirects.get(url, (200,))[0]),
                    "available": True,
                    "url": f"http://web.archive.org/web/{snap[0]}/{url}",
                    "timestamp": snap[0],
                }
                if snap
                else {}
            )
            body = json.dumps(
                {"url": url, "archived_snapshots": {"closest": closest} if snap else {}}
            )
            reply = Reply(200, body.encode(), [("Content-Type", "application/json")])
            return await as_handler(reply)(request, writer)
        if path.startswith("/web/"):
            stamp, _, url = request.path[len("/web/") :].partition("/")
            snap = self.snapshots.get(unquote(url))
            if snap and stamp == snap[0] + "id_" and unquote(url) in self.redirects:
                status, target = self.redirects[unquote(url)]
                when = self.snapshots.get(target, snap)[0]  # the target's closest capture
                location = f"http://{self.WAYBACK_HOST}/web/{when}id_/{target}"
                return await as_handler(redirect(location, status))(request, writer)
            if snap and stamp == snap[0] + "id_":
                headers = [("Content-Type", HTML), ("X-Archive-Orig-Server", "old")]
                return await as_handler(Reply(200, snap[1], headers))(request, writer)
        return await as_handler(Reply(404))(request, writer)


# --- the server -------------------------------------------------------------------------------


class FaultWeb:
    """The loopback server; a context manager that runs it on a background thread."""

    def __init__(self, hosts: tuple[str, ...] = ("127.0.0.1",), tls: bool = False):
        self.bind_hosts = hosts
        self.tls = TlsCertificates() if tls else None
        self.tls_ports: dict[str, int] = {}
        self.routes: dict[tuple[str, str], Handler] = {}
        self.fallback: Handler | None = None
        self.hits: Counter = Counter()  # (host, path) -> requests
        self.connections = 0
        self.ports: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._lock = threading.Lock()

    # routes
    def route(self, host: str, path: str, reply: Reply | Handler) -> None:
        """`path` "*" answers every path of the host."""
        self.routes[(host, path)] = as_handler(reply)

    def page(self, host: str, path: str, html: str | bytes, **headers: str) -> None:
        body = html.encode() if isinstance(html, str) else html
        extra = [(k.replace("_", "-"), v) for k, v in headers.items()]
        content_type = [("Content-Type", HTML)] if "Content-Type" not in headers else []
        self.route(host, path, Reply(200, body, content_type + extra))

    def hits_for(self, host: str, path: str) -> int:
        with self._lock:
            return self.hits[(host, path)]

    def address(self, ip: str = "127.0.0.1", tls: bool = False) -> str:
        return f"{ip}:{(self.tls_ports if tls else self.ports)[ip]}"

    def certificate(self, host: str, kind: str) -> None:
        """Serve `host` a certificate of this kind (see tests/faultweb_tls.py)."""
        self.tls.kinds[host] = kind

    def listen_raw(self, handler: Callable[[asyncio.StreamReader, Writer], Awaitable[None]]) -> str:
        """Serve `handler` on a new 127.0.0.1 port; returns its "ip:port"."""

        async def open_server() -> int:
            server = await asyncio.start_server(handler, "127.0.0.1", 0)
            self._servers.append(server)
            return server.sockets[0].getsockname()[1]

        port = asyncio.run_coroutine_threadsafe(open_server(), self._loop).result(10)
        return f"127.0.0.1:{port}"

    # lifecycle
    def __enter__(self) -> FaultWeb:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("faultweb did not start")

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shutdown() -> None:
            for server in self._servers:
                server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if self.tls is not None:
            self.tls.close()

    def _run(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self.serve())
        ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def serve(self) -> None:
        for host in self.bind_hosts:
            server = await asyncio.start_server(self._connection, host, 0, backlog=1024)
            self.ports[host] = server.sockets[0].getsockname()[1]
            self._servers.append(server)
            if self.tls is not None:
                server = await asyncio.start_server(
                    self._connection, host, 0, backlog=1024, ssl=self.tls.default_context
                )
                self.tls_ports[host] = server.sockets[0].getsockname()[1]
                self._servers.append(server)

    async def _connection(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        with self._lock:
            self.connections += 1
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                with self._lock:
                    self.hits[(request.host, request.path)] += 1
                handler = (
                    self.routes.get((request.host, request.path))
                    or self.routes.get((request.host, urlsplit(request.path).path))
                    or self.routes.get((request.host, "*"))
                    or self.fallback
                    or as_handler(Reply(404, b"not found"))
                )
                keep = await handler(request, writer)
                if not keep or request.headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            if not writer.transport.is_closing():
                writer.close()


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if headers.get("content-length", "0").isdigit() and int(headers.get("content-length", 0)):
        await reader.readexactly(int(headers["content-length"]))
    host = headers.get("host", "").rsplit(":", 1)[0] if "]" not in headers.get("host", "") else ""
    return Request(method, host.lower(), target, headers)


# --- benchmark web ------------------------------------------------------------------------------


def bench_page(host: str, path: str, size: int) -> bytes:
    """A deterministic HTML page of about `size` bytes."""
    seed = hashlib.sha256(f"{host}{path}".encode()).hexdigest()
    words = " ".join(seed[i : i + 6] for i in range(0, 60, 6))
    paragraph = f"<p>{words} " * 4 + "</p>\n"
    body = paragraph * max(1, size // len(paragraph))
    return f"<!doctype html><html><head><title>{host}{path}</title></head><body>{body}</body></html>".encode()


def bench_web(latency: float, page_bytes: int) -> FaultWeb:
    """Every host serves robots.txt (allow all) and a generated page at every other path,
    each after `latency` seconds."""
    web = FaultWeb()
    cache: dict[int, bytes] = {}

    async def serve(request: Request, writer: Writer) -> bool:
        await asyncio.sleep(latency)
        if request.path == "/robots.txt":
            body, content_type = b"User-agent: *\nDisallow: /private/\n", "text/plain"
        else:
            key = hash((request.host, request.path)) % 64  # 64 distinct pages are enough
            body = cache.get(key) or cache.setdefault(
                key, bench_page(request.host, str(key), page_bytes)
            )
            content_type = HTML
        writer.write(Reply(200, body, [("Content-Type", content_type)]).encode_head())
        writer.write(body)
        await writer.drain()
        return True

    web.fallback = serve
    return web


def main() -> None:
    parser = argparse.ArgumentParser(description="serve the benchmark web on 127.0.0.1")
    parser.add_argument("mode", choices=["bench"])
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--page-bytes", type=int, default=8000)
    parser.add_argument("--commoncrawl-urls", help="a file of URLs the Common Crawl stub holds")
    args = parser.parse_args()
    web = bench_web(args.latency, args.page_bytes)
    if args.commoncrawl_urls:
        archive = ArchiveEmulation(web)
        for url in Path(args.commoncrawl_urls).read_text().split():
            archive.add_commoncrawl(url, bench_page(url, "", args.page_bytes))

    async def run() -> None:
        await web.serve()
        Path(args.port_file).write_text(str(web.ports["127.0.0.1"]))
        while True:
            await asyncio.sleep(3600)

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
