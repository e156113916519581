"""robots.txt: fetched once per host before its pages, judged for our user agent (RFC 9309)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib import robotparser
from urllib.parse import urljoin, urlsplit

from pipeline.config import FetchConfig, LinksConfig
from pipeline.fetch.records import StepFailure
from pipeline.fetch.transport import (
    REDIRECT_STATUS,
    RequestContext,
    Transport,
    drain,
    let_go,
    read_limited,
)
from pipeline.urls import link_drop_reason

MAX_BYTES = 512 * 1024


def robots_product_token(user_agent: str) -> str:
    return user_agent.split("/", 1)[0].split()[0].strip().lower()


def robots_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/robots.txt"


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


@dataclass
class HostRobots:
    """One host's robots.txt while a crawl runs: being fetched, known, or unreachable."""

    rules: RobotsRules | None = None
    failure: StepFailure | None = None  # unreachable: the host's pages fail the same way
    pending: bool = False  # a robots.txt request is queued or in flight
    waiting: list = field(default_factory=list)  # page jobs held until the rules are known


def fetch_rules(
    transport: Transport,
    url: str,
    ctx: RequestContext,
    config: FetchConfig,
    links_config: LinksConfig,
) -> RobotsRules:
    """Read robots.txt at `url`, following redirects that pass the links filter.

    2xx: its rules; 4xx, too many redirects or a filtered redirect: allow all; 5xx (or any
    other status): disallow all. Raises what the transport raises when it cannot be reached.
    """
    user_agent = config.user_agent
    for _ in range(config.max_redirects + 1):
        response, _ = transport.open(url, ctx)
        status = response.status_code
        if not 200 <= status < 300:
            let_go(response, drain(response))
        if status in REDIRECT_STATUS and response.headers.get("Location"):
            url = urljoin(url, response.headers["Location"])
            if link_drop_reason(url, links_config) is not None:
                return RobotsRules(user_agent, None, allow_all=True)
            continue
        if 200 <= status < 300:
            text = read_limited(response, MAX_BYTES, ctx)
            return RobotsRules(user_agent, text.decode("utf-8", "replace"))
        if 400 <= status < 500:
            return RobotsRules(user_agent, None, allow_all=True)
        return RobotsRules(user_agent, None)
    return RobotsRules(user_agent, None, allow_all=True)
