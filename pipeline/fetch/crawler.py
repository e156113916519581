"""The fetch engine: a polite, safe crawler that keeps many requests in flight.

Plain code with no Beam in it; `pipeline/fetch/stage.py` runs one `Crawler` per batch of hosts.

    crawler = Crawler(config.fetch, config.links)
    for result in crawler.crawl([FetchTask(url, normalized_url), ...]):
        ...  # result.outcome is "ok" or the reason it is not; result.exchanges go to the WARC

Every HTTP request (robots.txt, each redirect hop, each retry, each archive lookup) is one
*step* of a job that passes its host's politeness gate (`scheduler.HostScheduler`). The
crawler runs the steps: a page hop (redirects followed one step at a time, retries with
backoff), robots.txt (`robots`), the archive fallback (`archive`), all through one
`transport.Transport` that connects only to checked addresses. A watchdog shuts the socket of
any request past its URL's total deadline, so a server that trickles a byte a second is
cut off even while a read is blocked. A task past its host's time budget (`plan`) is never
requested live: it goes to the archive fallback, or is yielded at once as `deferred`.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from queue import Queue
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

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
from pipeline.fetch.records import DEFERRED, Exchange, FetchResult, FetchTask, Page, StepFailure
from pipeline.fetch.robots import HostRobots, fetch_rules, robots_url
from pipeline.fetch.scheduler import HostScheduler
from pipeline.fetch.transport import (
    CHUNK_BYTES,
    REDIRECT_STATUS,
    AddressPolicy,
    BodyDecoder,
    RequestContext,
    Transport,
    backoff_delay,
    classify,
    drain,
    exchange_of,
    let_go,
    retry_after_seconds,
    stored_headers,
)
from pipeline.urls import link_drop_reason

# Failures that belong to the host, not to the request that met them.
HOST_FAILURES = {"blocked_address", "dns_error", "bad_url"}
OVER_BUDGET = "over_budget"  # the error class of a link its host's budget left out
TRANSIENT_STATUS = {429, 500, 502, 503, 504}


class _Kind(Enum):
    PAGE = "page"
    ROBOTS = "robots"
    ARCHIVE = "archive"  # job.fallback holds the source and the phase


@dataclass
class _Job:
    task: FetchTask
    url: str  # what the next step requests
    kind: _Kind = _Kind.PAGE
    hops: list[str] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    attempts: int = 0  # on the current hop
    total_attempts: int = 0
    started: float = 0.0
    deadline: float = 0.0
    fallback: archive.Fallback | None = None


class _Retryable(Exception):
    def __init__(self, failure: StepFailure, retry_after: float | None):
        super().__init__(str(failure))
        self.failure, self.retry_after = failure, retry_after


class Crawler:
    """Crawls a batch of URLs with `config.concurrency` worker threads; see the module doc."""

    def __init__(
        self,
        config: FetchConfig,
        links_config: LinksConfig,
        *,
        seed: int = 0,
        address_policy: AddressPolicy | None = None,
        ca_file: str | None = None,
    ):
        self.config = config
        self.links_config = links_config
        self.rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._clock = time.monotonic
        policy = address_policy or AddressPolicy(config.allow_private_networks)
        self._transport = Transport(config, policy, ca_file)
        self._archive_sources = archive.parse_sources(config.archive_fallback)
        # Links past their host's budget go to the archive; otherwise they are deferred.
        self._over_budget_to_archive = config.over_budget == "archive" and bool(
            self._archive_sources
        )
        self._scheduler: HostScheduler[_Job] = HostScheduler(
            config.max_per_host, config.min_host_delay_s
        )
        # The crawler's own state below is guarded by the scheduler's lock.
        self._lock = self._scheduler.lock
        self._robots: dict[str, HostRobots] = {}
        self._outstanding = 0
        self._contexts: list[RequestContext] = []

    # -- public ---------------------------------------------------------------------------

    def crawl(self, tasks: Iterable[FetchTask]) -> Iterator[FetchResult]:
        """Fetch every task; yields one result per task, in completion order."""
        results: Queue = Queue(maxsize=max(self.config.concurrency, 8) * 2)
        jobs = []
        for task in tasks:
            job = _Job(task=task, url=task.url)
            if task.over_budget and not self._over_budget_to_archive:
                yield self._failed_result(job, StepFailure(DEFERRED, OVER_BUDGET))
            else:
                jobs.append(job)
        if not jobs:
            return
        self._outstanding = len(jobs)
        self._results = results
        stop = threading.Event()
        with self._lock:
            self._scheduler.start()
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
            with self._lock:
                self._outstanding = 0
                self._scheduler.stop()
            stop.set()
            for w in workers:
                w.join(timeout=self.config.total_timeout_s + 5)

    def close(self) -> None:
        self._transport.close()

    # -- jobs in and out ----------------------------------------------------------------------

    def _enqueue(self, job: _Job) -> None:
        """Put a job on its host's queue (lock held); robots.txt first for a new host."""
        if job.task.over_budget and job.kind is _Kind.PAGE:
            self._start_archive(job, self._failed_result(job, StepFailure(DEFERRED, OVER_BUDGET)))
            return
        key = _host_key(job.url)
        if job.kind is _Kind.PAGE and self.config.respect_robots:
            robots = self._robots.setdefault(key, HostRobots())
            if robots.failure is not None:
                self._finish_failed(job, robots.failure)
                return
            if robots.rules is None:
                robots.waiting.append(job)
                if not robots.pending:
                    robots.pending = True
                    url = robots_url(job.url)
                    robots_job = _Job(task=FetchTask(url, url), url=url, kind=_Kind.ROBOTS)
                    self._scheduler.add(key, robots_job, first=True)
                return
            if not robots.rules.allows(job.url):
                self._finish_failed(job, StepFailure("robots_disallowed", "robots.txt"))
                return
        self._scheduler.add(key, job)

    def _finish(self, result: FetchResult) -> None:
        """Hand a result to the caller (lock held)."""
        self._outstanding -= 1
        self._results.put(result)
        if self._outstanding <= 0:
            self._scheduler.stop()

    def _finish_failed(self, job: _Job, failure: StepFailure) -> None:
        result = self._failed_result(job, failure)
        if (
            job.kind is _Kind.PAGE
            and self._archive_sources
            and result.outcome in archive.WORTH_ASKING
        ):
            self._start_archive(job, result)
            return
        if job.fallback is not None:
            result = job.fallback.live_failure
        self._finish(result)

    # -- workers ----------------------------------------------------------------------------

    def _worker(self) -> None:
        ctx = RequestContext()
        self._transport.bind(ctx)
        with self._lock:
            self._contexts.append(ctx)
        while True:
            taken = self._scheduler.take()
            if taken is None:
                return
            host_key, job = taken  # the step may move the job to another host
            hold_until = 0.0
            try:
                hold_until = self._step(job, ctx)
            except Exception as e:  # a bug in one step must not hang the batch
                with self._lock:
                    self._finish_failed(job, StepFailure("internal_error", type(e).__name__))
            finally:
                ctx.deadline, ctx.sock, ctx.killed = float("inf"), None, False
                with self._lock:
                    self._scheduler.release(host_key, hold_until)

    def _watchdog(self, stop: threading.Event) -> None:
        while not stop.wait(0.05):
            now = self._clock()
            with self._lock:
                contexts = list(self._contexts)
            for ctx in contexts:
                sock = ctx.sock
                if sock is not None and now > ctx.deadline and not ctx.killed:
                    ctx.killed = True
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def _step(self, job: _Job, ctx: RequestContext) -> float:
        """Run one request of a job and move the job on. Returns a host hold-until time."""
        now = self._clock()
        if job.started == 0.0:
            job.started = now
            job.deadline = now + self.config.total_timeout_s
        if now >= job.deadline:
            with self._lock:
                self._finish_failed(job, StepFailure("timeout", "DeadlineExceeded"))
            return 0.0
        ctx.deadline = job.deadline
        job.attempts += 1
        job.total_attempts += 1
        if job.kind is _Kind.ROBOTS:
            self._robots_step(job, ctx)
            return 0.0
        if job.kind is _Kind.ARCHIVE:
            self._archive_step(job, ctx)
            return 0.0
        try:
            outcome = self._page_hop(job, ctx)
        except StepFailure as failure:
            return self._after_failure(job, failure, None)
        except _Retryable as r:
            return self._after_failure(job, r.failure, r.retry_after)
        if isinstance(outcome, str):  # a redirect target
            with self._lock:
                self._follow(job, outcome)
            return 0.0
        with self._lock:
            self._finish(outcome)
        return 0.0

    def _after_failure(self, job: _Job, failure: StepFailure, retry_after: float | None) -> float:
        now = self._clock()
        transient = failure.outcome in ("connection_error",) or failure.status in TRANSIENT_STATUS
        with self._lock:
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
            self._scheduler.add_later(_host_key(job.url), job, now + wait)
        return now + retry_after if retry_after is not None else 0.0

    def _follow(self, job: _Job, target: str) -> None:
        """Move a job to its redirect target (lock held), checking the hop like a link."""
        failure = self._check_hop(job, target)
        if failure is not None:
            self._finish_failed(job, failure)
            return
        job.url = target
        job.attempts = 0
        self._enqueue(job)

    def _check_hop(self, job: _Job, target: str) -> StepFailure | None:
        """Add a redirect hop (live or archived) to the job; what is wrong with it, if anything:
        a loop, one hop too many, not http(s), or a target the links filter drops."""
        seen = {_without_fragment(u) for u in [job.task.url, *job.hops]}
        if _without_fragment(target) in seen:
            return StepFailure("redirect_loop", "loop")
        job.hops.append(target)
        if len(job.hops) > self.config.max_redirects:
            return StepFailure("too_many_redirects", f">{self.config.max_redirects}")
        if urlsplit(target).scheme not in ("http", "https"):
            return StepFailure("bad_url", "redirect scheme")
        reason = link_drop_reason(target, self.links_config)
        if reason is not None:
            return StepFailure("filtered_redirect", reason)
        return None

    # -- one page hop ------------------------------------------------------------------------

    def _page_hop(self, job: _Job, ctx: RequestContext) -> FetchResult | str:
        response, ip = self._transport.open(job.url, ctx)
        complete = False
        try:
            status = response.status_code
            exchange = exchange_of(job.url, ip, response)
            if status not in (200, 203):
                complete = drain(response)
            if status in REDIRECT_STATUS:
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
            let_go(response, complete)
        exchange.body = page.body
        exchange.truncated = page.truncated
        exchange.response_headers = stored_headers(exchange.response_headers, len(page.body))
        job.exchanges.append(exchange)
        return self._ok_result(job, exchange, page, "live")

    def _read_page(self, response: requests.Response, ctx: RequestContext, job: _Job) -> Page:
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
            raise classify(e, ctx) from None
        if not judged:
            self._judge(header_mime, decoder.head(), response.status_code)
        body = decoder.body()
        charset, where = choose_charset(body, charset_param(content_type))
        if where == "undetected" and body:
            raise StepFailure("undecodable", "charset", response.status_code)
        sniffed_mime = header_mime if header_mime in HTML_TYPES else "text/html"
        return Page(body, decoder.truncated, sniffed_mime, charset, complete=not decoder.truncated)

    @staticmethod
    def _judge(header_mime: str, head: bytes, status: int) -> None:
        verdict = judge_content_type(header_mime, head)
        if verdict is not None:
            raise StepFailure("not_html", f"{verdict}:{header_mime or 'none'}", status)

    def _ok_result(self, job: _Job, exchange: Exchange, page: Page, source: str) -> FetchResult:
        return self._result(
            job,
            outcome="ok",
            status=exchange.status,
            final_url=job.hops[-1] if job.hops else job.task.url,
            content_type=page.mime,
            charset=page.charset,
            body_bytes=len(page.body),
            truncated=page.truncated,
            source=source,
            exchanges=list(job.exchanges),
        )

    def _failed_result(self, job: _Job, failure: StepFailure) -> FetchResult:
        return self._result(
            job,
            outcome=failure.outcome,
            error_class=failure.error_class,
            status=failure.status,
            final_url=job.url,
        )

    def _result(self, job: _Job, **outcome: Any) -> FetchResult:
        """A FetchResult with what every outcome records of its job; `outcome` adds the rest."""
        return FetchResult(
            task=job.task,
            redirects=list(job.hops),
            elapsed_s=(self._clock() - job.started) if job.started else 0.0,
            attempts=job.total_attempts,
            fetched_at=time.time(),
            tls_verified=self._tls_verified(job),
            **outcome,
        )

    def _tls_verified(self, job: _Job) -> bool | None:
        if any(u.lower().startswith("https:") for u in [job.task.url, *job.hops]):
            return self.config.verify_tls
        return None

    # -- robots.txt ----------------------------------------------------------------------------

    def _robots_step(self, job: _Job, ctx: RequestContext) -> None:
        rules, failure = None, None
        try:
            rules = fetch_rules(self._transport, job.url, ctx, self.config, self.links_config)
        except Exception as e:
            failure = classify(e, ctx)
        with self._lock:
            robots = self._robots[_host_key(job.url)]
            robots.pending = False
            waiting, robots.waiting = robots.waiting, []
            if rules is None:
                # Unreachable host: its pages fail the same way, without trying each one.
                where = "" if failure.outcome in HOST_FAILURES else "robots.txt:"
                robots.failure = StepFailure(failure.outcome, where + failure.error_class)
                for page_job in waiting:
                    self._finish_failed(page_job, robots.failure)
                return
            robots.rules = rules
            for page_job in waiting:
                self._enqueue(page_job)

    # -- archive fallback ----------------------------------------------------------------------

    def _start_archive(self, job: _Job, live_failure: FetchResult) -> None:
        """Turn a failed page job into an archive fallback (lock held)."""
        job.kind = _Kind.ARCHIVE
        job.fallback = archive.Fallback(live_failure, list(self._archive_sources))
        self._next_archive_source(job)

    def _next_archive_source(self, job: _Job) -> None:
        fallback = job.fallback
        if not fallback.next_source():
            self._finish(fallback.live_failure)
            return
        job.url = archive.lookup_url(self.config, fallback.source, job.task.url)
        job.hops = []  # the archive is asked for the URL first requested, not the live hops
        job.attempts = 0
        job.started = 0.0
        self._enqueue(job)

    def _fetch_capture_next(self, job: _Job, capture: archive.Capture) -> None:
        job.fallback.found(capture)
        job.url = capture.fetch_url
        job.attempts = 0
        self._enqueue(job)

    def _archive_step(self, job: _Job, ctx: RequestContext) -> None:
        fallback = job.fallback
        try:
            if fallback.phase is archive.Phase.LOOKUP:
                capture = archive.find_capture(self._transport, fallback, ctx, self.config)
                with self._lock:
                    self._fetch_capture_next(job, capture)
                return
            fetched = archive.fetch_capture(self._transport, fallback, ctx, self.config)
        except Exception:  # any miss, an unreadable capture included: try the next source
            with self._lock:
                self._next_archive_source(job)
            return
        if isinstance(fetched, archive.Capture):  # an archived redirect: follow it, checked
            with self._lock:
                if self._check_hop(job, fetched.target) is None:
                    self._fetch_capture_next(job, fetched)
                else:
                    self._next_archive_source(job)
            return
        exchange, page = fetched
        job.exchanges = [exchange]
        result = self._ok_result(job, exchange, page, fallback.source)
        result.error_class = f"live:{fallback.live_failure.outcome}"
        result.attempts += fallback.live_failure.attempts
        with self._lock:
            self._finish(result)


def _host_key(url: str) -> str:
    return (urlsplit(url).hostname or "").rstrip(".").lower()


def _without_fragment(url: str) -> str:
    return url.split("#", 1)[0]
