"""The records the fetch engine passes around: what to fetch, what came back, how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFERRED = "deferred"  # the outcome of a link left to a later run by its host's budget


@dataclass(frozen=True)
class FetchTask:
    url: str  # what is requested first
    normalized_url: str  # the link's key, carried through to the fetch log
    retry_round: int = 0  # n: the n-th rerun with fetch.retry_failed that tries it again
    over_budget: bool = False  # past its host's time budget: archive or defer, never live


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
    tls_verified: bool | None = None  # None: no hop over HTTPS; False: certificates unchecked
    exchanges: list[Exchange] = field(default_factory=list)  # only for outcome "ok"

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


@dataclass
class Page:
    """A response body accepted as an HTML page."""

    body: bytes
    truncated: bool
    mime: str
    charset: str | None
    complete: bool  # the response was read to its end, so its connection can be reused


class StepFailure(Exception):
    """A step ended in a recorded outcome (not a bug): outcome and error class."""

    def __init__(self, outcome: str, error_class: str, status: int | None = None):
        super().__init__(f"{outcome}: {error_class}")
        self.outcome, self.error_class, self.status = outcome, error_class, status
