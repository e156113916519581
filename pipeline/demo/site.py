"""The micro-web's site: host names and their URL layouts, and the routes the server answers
(status, headers, delay, redirect target, body file) with the bodies beside them."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.demo.text import WORDS

ROUTES_FILE = "routes.json"


@dataclass
class Host:
    name: str  # as served: lowercase, punycode for IDN
    site: str  # the site's display name
    family: str  # news, blog or journal: which template
    path_style: str
    nav: list[str]
    taken: set[str] = field(default_factory=set)

    def new_path(self, slug: str, rng: random.Random, year: int) -> str:
        for attempt in range(100):
            s = slug if attempt == 0 else f"{slug}-{attempt + 1}"
            month = rng.randint(1, 12)
            path = {
                "dated": f"/{year}/{month:02d}/{s}",
                "dated-slash": f"/{year}/{month:02d}/{s}/",
                "posts": f"/posts/{s}",
                "story": f"/story/{rng.randint(10_000, 99_999)}/{s}",
                "html": f"/articles/{s}.html",
                "tilde": f"/~{self.nav[0].lower()}/{s}",
            }[self.path_style]
            if path not in self.taken:
                self.taken.add(path)
                return path
        raise RuntimeError(f"no free path for {slug} on {self.name}")


HOST_PATTERNS = (
    ("news-{w}.example", "news", "story"),
    ("blog.{w}.test", "blog", "dated-slash"),
    ("{w}-times.example", "news", "dated"),
    ("{w}.example.org", "journal", "html"),
    ("the{w}review.example", "journal", "posts"),
    ("{w}-journal.test", "journal", "dated"),
    ("people.{w}.test", "blog", "tilde"),
    ("{w}notes.example", "blog", "posts"),
)


def make_hosts(rng: random.Random, count: int) -> list[Host]:
    words = rng.sample(WORDS, count)
    hosts = []
    for i, word in enumerate(words):
        pattern, family, style = HOST_PATTERNS[i % len(HOST_PATTERNS)]
        name = pattern.format(w=word)
        site = {
            "news": f"The {word.title()} Post",
            "blog": f"{word.title()} Notes",
            "journal": f"{word.title()} Review",
        }[family]
        nav = [w.title() for w in rng.sample(WORDS, 6)]
        hosts.append(Host(name, site, family, style, nav))
    return hosts


class Site:
    """Routes by (host, target); bodies are written as files beside the route index."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], dict[str, Any]] = {}
        self.bodies: dict[str, bytes] = {}

    def _add(self, host: str, target: str, route: dict[str, Any], body: bytes | None) -> None:
        key = (host, target)
        if key in self.routes:
            raise RuntimeError(f"route planted twice: http://{host}{target}")
        if body is not None:
            name = f"bodies/{host}/{len(self.bodies):05d}{route.pop('ext')}"
            self.bodies[name] = body
            route["body"] = name
        else:
            route.pop("ext", None)
        self.routes[key] = {"host": host, "target": target, "delay_s": 0.0, **route}

    def page(
        self,
        host: str,
        target: str,
        body: bytes,
        content_type: str = "text/html; charset=utf-8",
        status: int = 200,
        delay_s: float = 0.0,
    ) -> None:
        ext = {"application/pdf": ".pdf", "image/jpeg": ".jpg", "text/plain": ".txt"}.get(
            content_type.split(";")[0], ".html"
        )
        route = {"status": status, "content_type": content_type, "ext": ext}
        self._add(host, target, route, body)
        self.routes[(host, target)]["delay_s"] = delay_s

    def redirect(self, host: str, target: str, location: str, status: int) -> None:
        self._add(host, target, {"status": status, "location": location}, None)

    @property
    def pages_total(self) -> int:
        return sum(1 for r in self.routes.values() if r["status"] == 200 and "body" in r)

    def write(self, site_dir: Path) -> None:
        for name, body in self.bodies.items():
            path = site_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        routes = [self.routes[k] for k in sorted(self.routes)]
        index = {"version": 1, "routes": routes}
        (site_dir / ROUTES_FILE).write_text(json.dumps(index, indent=1, sort_keys=True))
