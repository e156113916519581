"""A loopback stand-in for the parts of Reddit's API that PRAW uses, for tests.

    POST /api/v1/access_token              client-credentials OAuth (HTTP basic auth)
    GET  /r/SUB/{new,hot,top,...}          a Listing page; `limit` (<= 100) and `after`
    GET  /api/info?id=t3_a,t3_b,...        the submissions asked for that exist (<= 100 ids)

Every listing response carries x-ratelimit-remaining / -used / -reset headers. Failures are
scripted by request number per path: `fail[(path, n)] = status` makes the n-th request (1-based)
to that path answer with that status (a 429 carries Retry-After). Requests are recorded with
their arrival time, so tests can check pagination and waits.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

CLIENT_ID = "test-client-id"
CLIENT_SECRET = "test-client-secret"
TOKEN = "loopback-token"


@dataclass
class Recorded:
    method: str
    path: str
    params: dict[str, str]
    at: float
    status: int


@dataclass
class RedditState:
    # subreddit -> submissions (JSON objects as Reddit sends them), newest first
    subreddits: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # id -> submission, for /api/info (besides those of `subreddits`)
    things: dict[str, dict[str, Any]] = field(default_factory=dict)
    # called with the number of each /api/info request before it is answered; False: the
    # request is dropped unanswered (recorded with status 0), as when the client was killed
    on_info: Any = None
    fail: dict[tuple[str, int], int] = field(default_factory=dict)
    retry_after_s: float = 0.2
    ratelimit_remaining: float = 600.0
    ratelimit_reset_s: int = 0
    requests: list[Recorded] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _by_id: dict[str, dict[str, Any]] | None = None

    def by_id(self) -> dict[str, dict[str, Any]]:
        """Every submission by id, indexed on first use (set the state up before serving)."""
        if self._by_id is None:
            self._by_id = {i["id"]: i for items in self.subreddits.values() for i in items}
            self._by_id.update(self.things)
        return self._by_id


def make_submission(i: int, subreddit: str, **overrides: Any) -> dict[str, Any]:
    """A submission object shaped like the API's (the same fields as a modern dump line)."""
    data = {
        "id": f"s{i:05d}",
        "name": f"t3_s{i:05d}",
        "subreddit": subreddit,
        "subreddit_name_prefixed": f"r/{subreddit}",
        "title": f"Post number {i}",
        "author": f"user{i % 7}",
        "created_utc": 1_500_000_000.0 + i * 60,
        "score": 10 + i % 5,
        "ups": 10 + i % 5,
        "url": f"https://news.example.org/story/{i}",
        "domain": "news.example.org",
        "is_self": False,
        "over_18": False,
        "selftext": "",
        "permalink": f"/r/{subreddit}/comments/s{i:05d}/post/",
        "num_comments": i % 11,
    }
    data.update(overrides)
    return data


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def _record(self, path: str, params: dict[str, str], status: int) -> None:
        state = self.server.state
        state.requests.append(Recorded(self.command, path, params, time.monotonic(), status))

    def _scripted_failure(self, path: str) -> int | None:
        state = self.server.state
        with state.lock:
            n = state.counts.get(path, 0) + 1
            state.counts[path] = n
            return state.fail.get((path, n))

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        path = urlsplit(self.path).path
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if path != "/api/v1/access_token":
            self._record(path, form, 404)
            return self._send(404, {"error": 404})
        if self.headers.get("Authorization") != f"Basic {expected}":
            self._record(path, form, 401)
            return self._send(401, {"error": 401, "message": "Unauthorized"})
        if form.get("grant_type") != "client_credentials":
            self._record(path, form, 400)
            return self._send(400, {"error": "unsupported_grant_type"})
        self._record(path, form, 200)
        self._send(
            200, {"access_token": TOKEN, "token_type": "bearer", "expires_in": 3600, "scope": "*"}
        )

    def do_GET(self) -> None:  # noqa: N802
        state = self.server.state
        split = urlsplit(self.path)
        path = split.path.rstrip("/")
        params = {k: v[0] for k, v in parse_qs(split.query).items()}
        if self.headers.get("Authorization") != f"bearer {TOKEN}":
            self._record(path, params, 401)
            return self._send(401, {"error": 401, "message": "Unauthorized"})
        status = self._scripted_failure(path)
        if status is not None:
            self._record(path, params, status)
            headers = {"Retry-After": str(state.retry_after_s)} if status == 429 else {}
            return self._send(status, {"error": status}, headers)
        if path == "/api/info":
            return self._info(params)
        parts = path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "r" or parts[1] not in state.subreddits:
            self._record(path, params, 404)
            return self._send(404, {"error": 404, "message": "Not Found"})
        self._record(path, params, 200)
        self._send(200, self._listing(state.subreddits[parts[1]], params), self._rate_headers())

    def _info(self, params: dict[str, str]) -> None:
        state = self.server.state
        if state.on_info is not None and state.on_info(state.counts["/api/info"]) is False:
            self._record("/api/info", params, 0)
            self.close_connection = True
            return None
        names = params.get("id", "").split(",")
        if len(names) > 100:
            self._record("/api/info", params, 400)
            return self._send(400, {"error": 400, "message": "too many ids"})
        known = state.by_id()
        found = [known[n[3:]] for n in names if n.startswith("t3_") and n[3:] in known]
        self._record("/api/info", params, 200)
        body = {"kind": "Listing", "data": {"after": None, "before": None, "dist": len(found),
                "children": [{"kind": "t3", "data": item} for item in found]}}  # fmt: skip
        self._send(200, body, self._rate_headers())

    def _rate_headers(self) -> dict[str, str]:
        state = self.server.state
        with state.lock:
            state.ratelimit_remaining = max(state.ratelimit_remaining - 1, 0)
            used = sum(1 for r in state.requests if r.method == "GET")
            return {
                "x-ratelimit-remaining": f"{state.ratelimit_remaining:.1f}",
                "x-ratelimit-used": str(used),
                "x-ratelimit-reset": str(state.ratelimit_reset_s),
            }

    @staticmethod
    def _listing(items: list[dict[str, Any]], params: dict[str, str]) -> dict[str, Any]:
        limit = min(int(params.get("limit", 25)), 100)
        start = 0
        if params.get("after"):
            names = [item["name"] for item in items]
            start = names.index(params["after"]) + 1 if params["after"] in names else len(items)
        page = items[start : start + limit]
        after = page[-1]["name"] if page and start + limit < len(items) else None
        return {
            "kind": "Listing",
            "data": {
                "after": after,
                "before": None,
                "dist": len(page),
                "children": [{"kind": "t3", "data": item} for item in page],
            },
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: RedditState):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class RedditApiServer:
    """`with RedditApiServer(state) as server:` serves on http://127.0.0.1:server.port."""

    def __init__(self, state: RedditState):
        self.state = state
        self._server = _Server(state)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def praw_settings(self) -> dict[str, Any]:
        """The PRAW settings that point a client at this server."""
        return {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "user_agent": "webtext-tests/1.0 (loopback Reddit API)",
            "oauth_url": self.url,
            "reddit_url": self.url,
        }

    def __enter__(self) -> RedditApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
