"""The fetch engine: a polite, safe crawler that keeps many requests in flight.

Plain code with no Beam in it; `pipeline/fetch/stage.py` runs one `Crawler` per batch of hosts.

    crawler = Crawler(config.fetch, config.links)
    for result in crawler.crawl([FetchTask(url, normalized_url), ...]):
        ...  # result.outcome is "ok" or the reason it is not; result.exchanges go to the WARC

Every HTTP request (robots.txt, each redirect hop, each retry, each archive lookup) is one
*step* that passes its host's politeness gate: at most `max_per_host` in flight and
`min_host_delay_s` between two starts. Worker threads take the next step whose host is
free, so a slow host never holds a thread that another host could use, and a retry waits
in a timer heap, not in a sleeping thread.

Safety: every hop's host is resolved here, the address is checked, and the connection is
made to that checked address (the connection class never resolves again), so DNS
rebinding cannot reach a private address after the check. A watchdog shuts the socket of
any request past its URL's total deadline, so a server that trickles a byte a second is
cut off even while a read is blocked.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import random
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from queue import Queue
from typing import Any
from urllib import robotparser
from urllib.parse import urljoin, urlsplit

import idna
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from pipeline.config import FetchConfig, LinksConfig
from pipeline.content import (
    AMBIGUOUS_TYPES,
    HTML_TYPES,
    SNIFF_BYTES,
    charset_param,
    choose_charset,
    judge_content_type,
    mime_of,
)
from pipeline.fetch import archive
from pipeline.urls import link_drop_reason

# Failures that belong to the host, not to the request that met them.
HOST_FAILURES = {"blocked_address", "dns_error", "bad_url"}
CHUNK_BYTES = 64 * 1024
# Below this many decoded bytes the ratio guard stays off: small pages compress very well.
BOMB_MIN_DECODED = 64 * 1024
TRANSIENT_STATUS = {429, 500, 502, 503, 504}
# Live failures after which the archive is worth asking: the page may simply be gone.
ARCHIVE_WORTHY = {"dns_error", "connection_error", "timeout", "http_4xx", "http_5xx", "tls_error"}


# ---------------------------------------------------------------------------------------
# Records in flight


@dataclass(frozen=True)
class FetchTask:
    url: str  # what is requested first
    normalized_url: str  # the link's key, carried through to the fetch log


@dataclass
class Exchange:
    """One HTTP request and its response, as they go into the WARC."""

    url: str
    ip: str | None
    method: str
    request_headers: list[tuple[str, str]]
    status: int
    reason: str
    http_version: str
    response_headers: list[tuple[str, str]]  # as stored: Content-Encoding renamed
    body: bytes
    truncated: bool = False
    source_uri: str | None = None  # where an archived copy came from


@dataclass
class FetchResult:
    task: FetchTask
    outcome: str  # "ok" or the reason it is not (a counter name)
    error_class: str | None = None
    status: int | None = None
    final_url: str | None = None
    redirects: list[str] = field(default_factory=list)
    content_type: str | None = None
    charset: str | None = None
    body_bytes: int = 0
    truncated: bool = False
    elapsed_s: float = 0.0
    attempts: int = 0
    fetched_at: float = 0.0  # epoch seconds
    source: str = "live"
    exchanges: list[Exchange] = field(default_factory=list)  # only for outcome "ok"

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


class StepFailure(Exception):
    """A step ended in a recorded outcome (not a bug): outcome and error class."""

    def __init__(self, outcome: str, error_class: str, status: int | None = None):
        super().__init__(f"{outcome}: {error_class}")
        self.outcome, self.error_class, self.status = outcome, error_class, status


# ---------------------------------------------------------------------------------------
# Plain functions: addresses, content types, charsets, bodies, retries


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


def robots_product_token(user_agent: str) -> str:
    return user_agent.split("/", 1)[0].split()[0].strip().lower()


class RobotsRules:
    """One host's robots.txt, judged for our user agent (RFC 9309 failure rules)."""

    def __init__(self, user_agent: str, text: str | None, allow_all: bool = False):
        self.user_agent = robots_product_token(user_agent)
        self.allow_all = allow_all
        self.deny_all = text is None and not allow_all
        self._parser = robotparser.RobotFileParser()
        if text is not None:
            self._parser.parse(text.splitlines())

    def allows(self, url: str) -> bool:
        if self.allow_all:
            return True
        if self.deny_all:
            return False
        return self._parser.can_fetch(self.user_agent, url)


# ---------------------------------------------------------------------------------------
# HTTP: connections pinned to checked addresses, deadlines enforced by a watchdog


class _Context:
    """What the watchdog knows about one thread's request in flight."""

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
# Scheduling: per-host gates, delayed retries, robots


@dataclass
class _Job:
    task: FetchTask
    url: str
    kind: str = "page"  # page, robots, or an archive step (see pipeline.fetch.archive)
    hops: list[str] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    attempts: int = 0  # on the current hop
    total_attempts: int = 0
    started: float = 0.0
    deadline: float = 0.0
    not_before: float = 0.0
    live_failure: FetchResult | None = None
    archive_state: dict = field(default_factory=dict)


@dataclass
class _Host:
    key: str
    queue: deque = field(default_factory=deque)
    awaiting_robots: list = field(default_factory=list)
    active: int = 0
    next_allowed: float = 0.0
    in_ready: bool = False
    timer_at: float | None = None
    robots: RobotsRules | None = None
    robots_pending: bool = False
    robots_failure: StepFailure | None = None


class Crawler:
    """Crawls a batch of URLs with `config.concurrency` worker threads; see the module doc."""

    def __init__(
        self,
        config: FetchConfig,
        links_config: LinksConfig,
        *,
        seed: int = 0,
        address_policy: AddressPolicy | None = None,
    ):
        self.config = config
        self.links_config = links_config
        self.policy = address_policy or AddressPolicy(config.allow_private_networks)
        self.rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._clock = time.monotonic
        self._tls = threading.local()
        self._pins = _Pins()
        self._resolved: dict[tuple[str, int], tuple[str, int] | StepFailure] = {}
        self._archive_sources = archive.parse_sources(config.archive_fallback)
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
        # Scheduler state, guarded by _cond.
        self._cond = threading.Condition()
        self._hosts: dict[str, _Host] = {}
        self._ready: deque[str] = deque()
        self._timers: list[tuple[float, str]] = []
        self._delayed: list[tuple[float, int, _Job]] = []
        self._seq = itertools.count()
        self._outstanding = 0
        self._contexts: list[_Context] = []

    # -- public ---------------------------------------------------------------------------

    def crawl(self, tasks: Iterable[FetchTask]) -> Iterator[FetchResult]:
        """Fetch every task; yields one result per task, in completion order."""
        results: Queue = Queue(maxsize=max(self.config.concurrency, 8) * 2)
        jobs = [_Job(task=t, url=t.url) for t in tasks]
        if not jobs:
            return
        self._outstanding = len(jobs)
        self._results = results
        stop = threading.Event()
        with self._cond:
            for job in jobs:
                self._enqueue(job)
        workers = [
            threading.Thread(target=self._worker, name=f"fetch-{i}", daemon=True)
            for i in range(max(1, min(self.config.concurrency, len(jobs) * 2)))
        ]
        watchdog = threading.Thread(target=self._watchdog, args=(stop,), daemon=True)
        watchdog.start()
        for w in workers:
            w.start()
        try:
            for _ in range(len(jobs)):
                yield results.get()
        finally:
            with self._cond:
                self._outstanding = 0
                self._cond.notify_all()
            stop.set()
            for w in workers:
                w.join(timeout=self.config.total_timeout_s + 5)

    def close(self) -> None:
        self._session.close()

    # -- scheduler --------------------------------------------------------------------------

    def _host(self, key: str) -> _Host:
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Host(key)
        return host

    def _enqueue(self, job: _Job) -> None:
        """Put a job on its host's queue (lock held); robots.txt first for a new host."""
        key = _host_key(job.url)
        host = self._host(key)
        if job.kind == "page" and self.config.respect_robots:
            if host.robots_failure is not None:
                self._finish_failed(job, host.robots_failure)
                return
            if host.robots is None:
                host.awaiting_robots.append(job)
                if not host.robots_pending:
                    host.robots_pending = True
                    robots_url = _robots_url(job.url)
                    host.queue.appendleft(
                        _Job(task=FetchTask(robots_url, robots_url), url=robots_url, kind="robots")
                    )
                    self._check_host(host)
                return
            if not host.robots.allows(job.url):
                self._finish_failed(job, StepFailure("robots_disallowed", "robots.txt"))
                return
        host.queue.append(job)
        self._check_host(host)

    def _check_host(self, host: _Host) -> None:
        if not host.queue or host.active >= self.config.max_per_host:
            return
        now = self._clock()
        if host.next_allowed <= now:
            if not host.in_ready:
                host.in_ready = True
                self._ready.append(host.key)
                self._cond.notify()
        elif host.timer_at is None or host.timer_at > host.next_allowed:
            host.timer_at = host.next_allowed
            heapq.heappush(self._timers, (host.next_allowed, host.key))
            self._cond.notify()

    def _take(self) -> _Job | None:
        with self._cond:
            while True:
                if self._outstanding <= 0:
                    return None
                now = self._clock()
                while self._delayed and self._delayed[0][0] <= now:
                    self._enqueue(heapq.heappop(self._delayed)[2])
                while self._timers and self._timers[0][0] <= now:
                    _, key = heapq.heappop(self._timers)
                    host = self._hosts[key]
                    host.timer_at = None
                    self._check_host(host)
                while self._ready:
                    host = self._hosts[self._ready.popleft()]
                    host.in_ready = False
                    if (
                        not host.queue
                        or host.active >= self.config.max_per_host
                        or host.next_allowed > now
                    ):
                        self._check_host(host)
                        continue
                    job = host.queue.popleft()
                    host.active += 1
                    host.next_allowed = now + self.config.min_host_delay_s
                    self._check_host(host)
                    return job
                wake = [t[0] for t in (self._timers[:1] + self._delayed[:1])]
                self._cond.wait(timeout=max(0.0, min(wake) - now) if wake else 0.5)

    def _release(self, host_key: str, hold_until: float = 0.0) -> None:
        host = self._hosts[host_key]
        host.active -= 1
        host.next_allowed = max(host.next_allowed, hold_until)
        self._check_host(host)

    def _delay(self, job: _Job, until: float) -> None:
        heapq.heappush(self._delayed, (until, next(self._seq), job))
        self._cond.notify()

    def _finish(self, result: FetchResult) -> None:
        """Hand a result to the caller (lock held)."""
        self._outstanding -= 1
        self._results.put(result)
        if self._outstanding <= 0:
            self._cond.notify_all()

    def _finish_failed(self, job: _Job, failure: StepFailure) -> None:
        result = self._failed_result(job, failure)
        if job.kind == "page" and self._archive_sources and result.outcome in ARCHIVE_WORTHY:
            self._start_archive(job, result)
            return
        if job.live_failure is not None:
            result = job.live_failure
        self._finish(result)

    # -- workers ----------------------------------------------------------------------------

    def _worker(self) -> None:
        ctx = _Context()
        self._tls.ctx = ctx
        with self._cond:
            self._contexts.append(ctx)
        while True:
            job = self._take()
            if job is None:
                return
            host_key = _host_key(job.url)  # the step may move the job to another host
            hold_until = 0.0
            try:
                hold_until = self._step(job, ctx)
            except Exception as e:  # a bug in one step must not hang the batch
                with self._cond:
                    self._finish_failed(job, StepFailure("internal_error", type(e).__name__))
            finally:
                ctx.deadline, ctx.sock, ctx.killed = float("inf"), None, False
                with self._cond:
                    self._release(host_key, hold_until)

    def _watchdog(self, stop: threading.Event) -> None:
        while not stop.wait(0.05):
            now = self._clock()
            with self._cond:
                contexts = list(self._contexts)
            for ctx in contexts:
                sock = ctx.sock
                if sock is not None and now > ctx.deadline and not ctx.killed:
                    ctx.killed = True
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def _step(self, job: _Job, ctx: _Context) -> float:
        """Run one request of a job and move the job on. Returns a host hold-until time."""
        now = self._clock()
        if job.started == 0.0:
            job.started = now
            job.deadline = now + self.config.total_timeout_s
        if now >= job.deadline:
            with self._cond:
                self._finish_failed(job, StepFailure("timeout", "DeadlineExceeded"))
            return 0.0
        ctx.deadline = job.deadline
        job.attempts += 1
        job.total_attempts += 1
        if job.kind == "robots":
            self._robots_step(job, ctx)
            return 0.0
        if job.kind != "page":
            self._archive_step(job, ctx)
            return 0.0
        try:
            outcome = self._page_hop(job, ctx)
        except StepFailure as failure:
            return self._after_failure(job, failure, None)
        except _Retryable as r:
            return self._after_failure(job, r.failure, r.retry_after)
        if isinstance(outcome, str):  # a redirect target
            with self._cond:
                self._follow(job, outcome)
            return 0.0
        with self._cond:
            self._finish(outcome)
        return 0.0

    def _after_failure(self, job: _Job, failure: StepFailure, retry_after: float | None) -> float:
        now = self._clock()
        transient = failure.outcome in ("connection_error",) or failure.status in TRANSIENT_STATUS
        with self._cond:
            if retry_after is not None and retry_after > self.config.max_retry_after_s:
                failure.error_class = f"RetryAfter>{self.config.max_retry_after_s:g}s"
                self._finish_failed(job, failure)
                return 0.0
            if not transient or job.attempts > self.config.max_retries:
                self._finish_failed(job, failure)
                return 0.0
            with self._rng_lock:
                wait = backoff_delay(self.config.backoff_base_s, job.attempts, self.rng)
            if retry_after is not None:
                wait = max(wait, retry_after)
            if now + wait >= job.deadline:
                self._finish_failed(job, failure)
                return 0.0
            self._delay(job, now + wait)
        return now + retry_after if retry_after is not None else 0.0

    def _follow(self, job: _Job, target: str) -> None:
        """Move a job to its redirect target (lock held), checking the hop like a link."""
        seen = {_without_fragment(u) for u in [job.task.url, *job.hops]}
        if _without_fragment(target) in seen:
            self._finish_failed(job, StepFailure("redirect_loop", "loop"))
            return
        job.hops.append(target)
        if len(job.hops) > self.config.max_redirects:
            self._finish_failed(
                job, StepFailure("too_many_redirects", f">{self.config.max_redirects}")
            )
            return
        if urlsplit(target).scheme not in ("http", "https"):
            self._finish_failed(job, StepFailure("bad_url", "redirect scheme"))
            return
        reason = link_drop_reason(target, self.links_config)
        if reason is not None:
            self._finish_failed(job, StepFailure("filtered_redirect", reason))
            return
        job.url = target
        job.attempts = 0
        self._enqueue(job)

    # -- one HTTP exchange -------------------------------------------------------------------

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
        override = overrides.get(host) or overrides.get("*")
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
            return StepFailure("blocked_address", _address_kind(address[0]))
        return address

    def _open(self, job: _Job, ctx: _Context, url: str, extra_headers: dict | None = None):
        remaining = max(job.deadline - self._clock(), 0.001)
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
            raise _classify(e, ctx) from None
        return response, ip

    def _page_hop(self, job: _Job, ctx: _Context) -> FetchResult | str:
        response, ip = self._open(job, ctx, job.url)
        complete = False
        try:
            status = response.status_code
            exchange = _exchange(job.url, ip, response)
            if status not in (200, 203):
                complete = _drain(response)
            if status in (301, 302, 303, 307, 308):
                location = response.headers.get("Location")
                if not location:
                    raise StepFailure("http_3xx", "no Location", status)
                job.exchanges.append(exchange)
                return _without_fragment(urljoin(job.url, location.strip()))
            if status in TRANSIENT_STATUS:
                retry_after = None
                if status in (429, 503):
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                raise _Retryable(
                    StepFailure(f"http_{status // 100}xx", f"HTTP {status}", status), retry_after
                )
            if status >= 300 or status < 200:
                raise StepFailure(f"http_{status // 100}xx", f"HTTP {status}", status)
            if status not in (200, 203):
                raise StepFailure("not_html", f"HTTP {status}", status)
            page = self._read_page(response, ctx, job)
            complete = page.complete
        finally:
            _let_go(response, complete)
        exchange.body = page.body
        exchange.truncated = page.truncated
        exchange.response_headers = _stored_headers(exchange.response_headers, len(page.body))
        job.exchanges.append(exchange)
        return self._ok_result(job, exchange, page, "live")

    def _read_page(self, response: requests.Response, ctx: _Context, job: _Job) -> _Page:
        content_type = response.headers.get("Content-Type")
        header_mime = mime_of(content_type)
        if header_mime not in HTML_TYPES and header_mime not in AMBIGUOUS_TYPES:
            raise StepFailure("not_html", f"header:{header_mime[:60]}", response.status_code)
        length = response.headers.get("Content-Length", "")
        if self.config.oversize == "drop" and length.isdigit():
            if int(length) > self.config.max_body_bytes:
                raise StepFailure("too_large", "content-length", response.status_code)
        decoder = BodyDecoder(
            response.headers.get("Content-Encoding", ""),
            self.config.max_body_bytes,
            self.config.max_decompressed_ratio,
            self.config.oversize,
        )
        judged = False
        try:
            while True:
                chunk = response.raw.read(CHUNK_BYTES, decode_content=False)
                if ctx.killed or self._clock() > job.deadline:
                    raise StepFailure("timeout", "DeadlineExceeded")
                if not chunk:
                    break
                keep_going = decoder.feed(chunk)
                if not judged and (decoder.size >= SNIFF_BYTES or not keep_going):
                    judged = True
                    self._judge(header_mime, decoder.head(), response.status_code)
                if not keep_going:
                    break
        except StepFailure:
            raise
        except Exception as e:
            raise _classify(e, ctx) from None
        if not judged:
            self._judge(header_mime, decoder.head(), response.status_code)
        body = decoder.body()
        charset, where = choose_charset(body, charset_param(content_type))
        if where == "undetected" and body:
            raise StepFailure("undecodable", "charset", response.status_code)
        sniffed_mime = header_mime if header_mime in HTML_TYPES else "text/html"
        return _Page(body, decoder.truncated, sniffed_mime, charset, complete=not decoder.truncated)

    @staticmethod
    def _judge(header_mime: str, head: bytes, status: int) -> None:
        verdict = judge_content_type(header_mime, head)
        if verdict is not None:
            raise StepFailure("not_html", f"{verdict}:{header_mime or 'none'}", status)

    def _ok_result(self, job: _Job, exchange: Exchange, page: _Page, source: str) -> FetchResult:
        return FetchResult(
            task=job.task,
            outcome="ok",
            status=exchange.status,
            final_url=job.url if source == "live" else job.task.url,
            redirects=list(job.hops),
            content_type=page.mime,
            charset=page.charset,
            body_bytes=len(page.body),
            truncated=page.truncated,
            elapsed_s=self._clock() - job.started,
            attempts=job.total_attempts,
            fetched_at=time.time(),
            source=source,
            exchanges=list(job.exchanges),
        )

    def _failed_result(self, job: _Job, failure: StepFailure) -> FetchResult:
        return FetchResult(
            task=job.task,
            outcome=failure.outcome,
            error_class=failure.error_class,
            status=failure.status,
            final_url=job.url,
            redirects=list(job.hops),
            elapsed_s=(self._clock() - job.started) if job.started else 0.0,
            attempts=job.total_attempts,
            fetched_at=time.time(),
            source="live",
        )

    # -- robots.txt ----------------------------------------------------------------------------

    def _robots_step(self, job: _Job, ctx: _Context) -> None:
        rules, failure = None, None
        url = job.url
        try:
            for _ in range(self.config.max_redirects + 1):
                response, _ = self._open(job, ctx, url)
                status = response.status_code
                if not 200 <= status < 300:
                    _let_go(response, _drain(response))
                if status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                    url = urljoin(url, response.headers["Location"])
                    if link_drop_reason(url, self.links_config) is not None:
                        rules = RobotsRules(self.config.user_agent, None, allow_all=True)
                        break
                    continue
                if 200 <= status < 300:
                    text = _read_limited(response, 512 * 1024, ctx, job.deadline)
                    rules = RobotsRules(self.config.user_agent, text.decode("utf-8", "replace"))
                elif 400 <= status < 500:
                    rules = RobotsRules(self.config.user_agent, None, allow_all=True)
                else:
                    rules = RobotsRules(self.config.user_agent, None)  # 5xx: disallow all
                break
            else:
                rules = RobotsRules(self.config.user_agent, None, allow_all=True)
        except StepFailure as f:
            failure = f
        except _Retryable as r:
            failure = r.failure
        except Exception as e:
            failure = _classify(e, ctx)
        with self._cond:
            host = self._host(_host_key(job.url))
            host.robots_pending = False
            waiting, host.awaiting_robots = host.awaiting_robots, []
            if rules is None:
                # Unreachable host: its pages fail the same way, without trying each one.
                where = "" if failure.outcome in HOST_FAILURES else "robots.txt:"
                host.robots_failure = StepFailure(failure.outcome, where + failure.error_class)
                for page_job in waiting:
                    self._finish_failed(page_job, host.robots_failure)
                return
            host.robots = rules
            for page_job in waiting:
                self._enqueue(page_job)

    # -- archive fallback ----------------------------------------------------------------------

    def _start_archive(self, job: _Job, live_failure: FetchResult) -> None:
        """Turn a failed page job into an archive lookup (lock held)."""
        job.live_failure = live_failure
        job.archive_state = {"sources": list(self._archive_sources)}
        self._next_archive_source(job)

    def _next_archive_source(self, job: _Job) -> None:
        sources = job.archive_state["sources"]
        if not sources:
            self._finish(job.live_failure)
            return
        source = sources.pop(0)
        job.kind = f"{source}:lookup"
        job.url = archive.lookup_url(self.config, source, job.task.url)
        job.attempts = 0
        job.started = 0.0
        self._enqueue(job)

    def _archive_step(self, job: _Job, ctx: _Context) -> None:
        source, phase = job.kind.split(":")
        try:
            if phase == "lookup":
                response, _ = self._open(job, ctx, job.url)
                if response.status_code != 200:
                    _let_go(response, _drain(response))
                    raise StepFailure("archive_miss", f"lookup HTTP {response.status_code}")
                text = _read_limited(response, 4 * 1024 * 1024, ctx, job.deadline)
                capture = archive.pick_capture(source, text, self.config, job.task.url)
                if capture is None:
                    raise StepFailure("archive_miss", "no capture")
                with self._cond:
                    job.archive_state["capture"] = capture
                    job.kind = f"{source}:get"
                    job.url = capture.fetch_url
                    job.attempts = 0
                    self._enqueue(job)
                return
            capture = job.archive_state["capture"]
            response, ip = self._open(job, ctx, job.url, capture.request_headers)
            if response.status_code not in (200, 206):
                _let_go(response, _drain(response))
                raise StepFailure("archive_miss", f"get HTTP {response.status_code}")
            limit = capture.length + 1024 if capture.length else self.config.max_body_bytes * 2
            headers = list(response.raw.headers.items())
            raw = _read_limited(response, limit, ctx, job.deadline)
            archived = archive.parse_capture(source, capture, raw, headers)
            exchange, page = self._archived_page(job, archived, capture)
        except (StepFailure, _Retryable) as f:
            failure = f if isinstance(f, StepFailure) else f.failure
            with self._cond:
                job.archive_state.setdefault("misses", []).append(f"{source}:{failure.error_class}")
                self._next_archive_source(job)
            return
        except Exception as e:
            failure = _classify(e, ctx) if not isinstance(e, ValueError) else None
            with self._cond:
                why = failure.error_class if failure else f"parse:{type(e).__name__}"
                job.archive_state.setdefault("misses", []).append(f"{source}:{why}")
                self._next_archive_source(job)
            return
        result = self._ok_result(job, exchange, page, source)
        result.error_class = f"live:{job.live_failure.outcome}"
        result.attempts += job.live_failure.attempts
        with self._cond:
            self._finish(result)

    def _archived_page(
        self, job: _Job, archived: archive.ArchivedResponse, capture: archive.Capture
    ) -> tuple[Exchange, _Page]:
        if archived.status != 200:
            raise StepFailure("archive_miss", f"archived HTTP {archived.status}")
        content_type = archived.header("Content-Type")
        verdict = judge_content_type(mime_of(content_type), archived.body[:SNIFF_BYTES])
        if verdict is not None:
            raise StepFailure("archive_miss", f"archived not_html:{verdict}")
        body = archived.body[: self.config.max_body_bytes]
        truncated = len(archived.body) > len(body)
        if truncated and self.config.oversize == "drop":
            raise StepFailure("archive_miss", "archived too_large")
        charset, where = choose_charset(body, charset_param(content_type))
        if where == "undetected" and body:
            raise StepFailure("archive_miss", "archived undecodable")
        mime = mime_of(content_type) if mime_of(content_type) in HTML_TYPES else "text/html"
        page = _Page(body, truncated, mime, charset, complete=True)
        exchange = Exchange(
            url=job.task.url,
            ip=None,
            method="GET",
            request_headers=[],
            status=archived.status,
            reason=archived.reason,
            http_version="HTTP/1.1",
            response_headers=_stored_headers(archived.headers, len(body)),
            body=body,
            truncated=truncated,
            source_uri=capture.source_uri,
        )
        job.exchanges = [exchange]
        job.hops = []
        return exchange, page


# ---------------------------------------------------------------------------------------
# Helpers


@dataclass
class _Page:
    body: bytes
    truncated: bool
    mime: str
    charset: str | None
    complete: bool  # the response was read to its end, so its connection can be reused


class _Retryable(Exception):
    def __init__(self, failure: StepFailure, retry_after: float | None):
        super().__init__(str(failure))
        self.failure, self.retry_after = failure, retry_after


def _host_key(url: str) -> str:
    return (urlsplit(url).hostname or "").rstrip(".").lower()


def _robots_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/robots.txt"


def _without_fragment(url: str) -> str:
    return url.split("#", 1)[0]


def _address_kind(ip_text: str) -> str:
    ip = ipaddress.ip_address(ip_text)
    for kind in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{kind}"):
            return kind
    return "not_global"


def _classify(error: Exception, ctx: _Context) -> StepFailure:
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
        return StepFailure("tls_error", name)
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


def _read_limited(response: requests.Response, limit: int, ctx: _Context, deadline: float) -> bytes:
    """A small body (robots.txt, archive lookups) read whole, decoded, up to `limit` bytes."""
    complete = False
    try:
        decoder = BodyDecoder(response.headers.get("Content-Encoding", ""), limit, 1e9, "truncate")
        while True:
            chunk = response.raw.read(CHUNK_BYTES, decode_content=False)
            if ctx.killed or time.monotonic() > deadline:
                raise StepFailure("timeout", "DeadlineExceeded")
            if not chunk:
                complete = True
                break
            if not decoder.feed(chunk):
                break
    except StepFailure:
        raise
    except Exception as e:
        raise _classify(e, ctx) from None
    finally:
        _let_go(response, complete)
    return decoder.body()


def _drain(response: requests.Response, limit: int = 64 * 1024) -> bool:
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


def _let_go(response: requests.Response, complete: bool) -> None:
    """Give a fully read connection back to the pool; close a partly read one."""
    raw = response.raw
    if not complete:
        raw.close()
    raw.release_conn()


def _exchange(url: str, ip: str | None, response: requests.Response) -> Exchange:
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


def _stored_headers(headers: list[tuple[str, str]], body_len: int) -> list[tuple[str, str]]:
    """Headers for the decoded body as stored, the wire's framing kept under X-Crawler-*."""
    out = []
    for name, value in headers:
        if name.lower() in _RENAMED:
            out.append((f"X-Crawler-{name}", value))
        else:
            out.append((name, value))
    out.append(("Content-Length", str(body_len)))
    return out
