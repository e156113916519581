"""URL normalization and the URL-level link filters (Wikipedia, blocked hosts, media files).

`normalize_url` makes the dedup key of the links stage: two URLs that name the same page
should normalize to the same string, and two that select different content must not. The
rules, in order (docs/links.md explains each choice):

    scheme      http and https both become https (the key names a page, not a transport)
    userinfo    dropped
    host        lowercased, trailing dot and a leading "www." removed, IDN -> punycode
    port        :80 and :443 dropped, any other port kept
    path        percent-encoding normalized (unreserved characters decoded, hex uppercased,
                unsafe characters encoded), dot segments resolved, empty -> "/", and a
                trailing slash removed from every path but "/"
    query       tracking parameters removed (exact keys, and "prefix*" rules such as utm_*),
                the rest percent-normalized and sorted by key; a key's repeated values keep
                their order
    fragment    dropped, except "#!" hash-bang routes, which select content on old AJAX sites

`LinkFilter` holds the URL-level checks that the fetch stage also applies to each redirect
hop, and the build stage to the final URL. It is built once per worker from `[links]`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from pipeline.config import LinksConfig

# Registrable domains whose every host is Wikipedia or a Wikimedia project.
WIKIMEDIA_DOMAINS = frozenset(
    {
        "wikipedia.org",
        "wikimedia.org",
        "wikidata.org",
        "wiktionary.org",
        "wikibooks.org",
        "wikiquote.org",
        "wikisource.org",
        "wikinews.org",
        "wikiversity.org",
        "wikivoyage.org",
        "wikifunctions.org",
        "mediawiki.org",
        "wikimediafoundation.org",
        "wikipedia.com",  # the old alias, still redirecting to wikipedia.org
    }
)

# Drop reasons returned by LinkFilter.url_drop_reason; they are also counter names.
BAD_URL = "bad_url"
WIKIPEDIA = "wikipedia"
BLOCKED_DOMAIN = "blocked_domain"

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
# Characters left as they are in a path or query; everything else is percent-encoded.
_PATH_SAFE = frozenset(_UNRESERVED | set("!$&'()*+,;=:@/%"))
_QUERY_SAFE = frozenset(_PATH_SAFE | set("?"))
_DEFAULT_PORTS = {"http": "80", "https": "443"}
# scheme://netloc path ?query #fragment, as RFC 3986 appendix B splits them
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)([^?#]*)(?:\?([^#]*))?(?:#(.*))?", re.S)
# Any character outside the safe sets, or a "%" that does not start an escape.
_UNSAFE_PATH = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/%]|%(?![0-9A-Fa-f]{2})")
_UNSAFE_QUERY = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/%?]|%(?![0-9A-Fa-f]{2})")


def _percent_token(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def _normalize_percent(text: str, safe: frozenset[str]) -> str:
    """Decode escapes of unreserved characters, uppercase the rest, encode unsafe chars."""
    if "%" in text:
        text = _PERCENT.sub(_percent_token, text)
    if not (_UNSAFE_QUERY if safe is _QUERY_SAFE else _UNSAFE_PATH).search(text):
        return text
    out = []
    for i, c in enumerate(text):
        if c in safe and not (c == "%" and not _PERCENT.match(text, i)):
            out.append(c)
        else:
            out.extend(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    out: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    trailing = path.endswith(("/.", "/.."))
    return "/" + "/".join(out) + ("/" if trailing and out else "")


@functools.lru_cache(maxsize=65536)
def normalize_host(host: str) -> str | None:
    """Lowercase, no trailing dot, no leading www., IDN as punycode; None when invalid."""
    host = host.strip().rstrip(".").lower()
    if not host or " " in host:
        return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if host.startswith("www.") and host.count(".") >= 2:
        host = host[4:]
    return host


class TrackingParams:
    """Query keys to drop: exact names, and prefixes from entries that end in "*"."""

    def __init__(self, params: Iterable[str]):
        params = [p.lower() for p in params]
        self.exact = frozenset(p for p in params if not p.endswith("*"))
        self.prefixes = tuple(p[:-1] for p in params if p.endswith("*"))

    def __contains__(self, key: str) -> bool:
        key = key.lower()
        return key in self.exact or (bool(self.prefixes) and key.startswith(self.prefixes))


@functools.lru_cache(maxsize=64)
def _tracking(params: tuple[str, ...]) -> TrackingParams:
    return TrackingParams(params)


def _normalize_query(query: str, tracking: TrackingParams) -> str:
    kept = []
    for part in query.split("&"):
        if not part:
            continue
        key = part.split("=", 1)[0]
        if key in tracking:
            continue
        kept.append(_normalize_percent(part.replace("+", "%20"), _QUERY_SAFE))
    kept.sort(key=lambda p: p.split("=", 1)[0])  # stable: a key's repeated values keep order
    return "&".join(kept)


def normalize_url(url: str, tracking_params: Iterable[str] | TrackingParams = ()) -> str | None:
    """The dedup key of a URL (rules in the module docstring); None when it is not http(s)."""
    if not isinstance(tracking_params, TrackingParams):
        tracking_params = _tracking(tuple(tracking_params))
    url = url.strip()
    if "\t" in url or "\n" in url or "\r" in url:  # as browsers and urlsplit do
        url = url.replace("\t", "").replace("\n", "").replace("\r", "")
    parts = _URL.match(url)  # one regex instead of urlsplit: this runs once per kept link
    if parts is None:
        return None
    scheme, netloc, raw_path, raw_query, fragment = parts.groups()
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        return None
    hostport = netloc.rpartition("@")[2]  # userinfo is dropped
    if hostport.startswith("["):  # IPv6 literal
        host, _, port = hostport[1:].partition("]")
        port = port[1:]
        host = f"[{host.lower()}]" if host else ""
    else:
        host, _, port = hostport.partition(":")
        host = normalize_host(host) if host else None
    if not host:
        return None
    if port and (not port.isdigit() or int(port) > 65535):
        return None
    netloc = host if not port or port == _DEFAULT_PORTS[scheme] else f"{host}:{int(port)}"

    path = _normalize_percent(raw_path, _PATH_SAFE) if raw_path else "/"
    if "/." in path:
        path = _remove_dot_segments(path)
    if not path.startswith("/"):
        path = "/" + path
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"

    out = f"https://{netloc}{path}"
    if raw_query:
        query = _normalize_query(raw_query, tracking_params)
        if query:
            out = f"{out}?{query}"
    if fragment and fragment.startswith("!"):
        out = f"{out}#{_normalize_percent(fragment, _QUERY_SAFE)}"
    return out


def host_of(url: str) -> str | None:
    """The normalized host of a URL (no port, no www., punycode), or None when it has none."""
    try:
        hostname = urlsplit(url.strip()).hostname
    except ValueError:
        return None
    return normalize_host(hostname) if hostname else None


def host_of_normalized(normalized_url: str) -> str:
    """The host of a normalize_url result, without parsing it again (no port)."""
    host = normalized_url[8 : normalized_url.find("/", 8)]  # after "https://"
    if ":" in host and not host.endswith("]"):
        host = host[: host.rfind(":")]
    return host


def _registrable_pair(host: str) -> str:
    dot = host.rfind(".")
    if dot < 0:
        return host
    dot = host.rfind(".", 0, dot)
    return host[dot + 1 :]


def is_wikipedia(host: str) -> bool:
    """Any Wikipedia edition (mobile too) or Wikimedia project host."""
    return _registrable_pair(host.lower().rstrip(".")) in WIKIMEDIA_DOMAINS


def is_blocked_host(host: str, blocked_hosts: Iterable[str]) -> bool:
    """True when the host or one of its parent domains is in the block list."""
    blocked = blocked_hosts if isinstance(blocked_hosts, frozenset | set) else set(blocked_hosts)
    host = host.lower().rstrip(".")
    while True:
        if host in blocked:
            return True
        dot = host.find(".")
        if dot < 0:
            return False
        host = host[dot + 1 :]


def is_media_path(path: str, media_extensions: Iterable[str]) -> bool:
    """True when the URL path (no query) ends in one of the media file extensions."""
    suffixes = media_extensions if isinstance(media_extensions, tuple) else tuple(media_extensions)
    return path.lower().endswith(suffixes)


class LinkFilter:
    """The URL-level checks of `[links]`, precomputed once per worker."""

    def __init__(
        self,
        blocked_hosts: Iterable[str],
        media_extensions: Iterable[str],
        tracking_params: Iterable[str],
    ):
        self.tracking = TrackingParams(tracking_params)
        self.blocked_hosts = frozenset(normalize_host(h) or h for h in blocked_hosts)
        self.media_extensions = tuple(e.lower() for e in media_extensions)

    @classmethod
    def from_config(cls, links: LinksConfig) -> LinkFilter:
        return _filter_for(
            tuple(links.blocked_hosts), tuple(links.media_extensions), tuple(links.tracking_params)
        )

    def normalize(self, url: str) -> str | None:
        return normalize_url(url, self.tracking)

    def drop_reason_normalized(self, normalized_url: str) -> str | None:
        """The reason to drop an already normalized URL, or None to keep it."""
        host = host_of_normalized(normalized_url)
        if is_wikipedia(host):
            return WIKIPEDIA
        if is_blocked_host(host, self.blocked_hosts):
            return BLOCKED_DOMAIN
        path = normalized_url[normalized_url.find("/", 8) :]
        cut = min((i for i in (path.find("?"), path.find("#")) if i >= 0), default=len(path))
        if path[:cut].lower().endswith(self.media_extensions):
            return BLOCKED_DOMAIN
        return None

    def check(self, url: str | None) -> tuple[str | None, str | None]:
        """(normalized URL, drop reason): the reason is None for a URL to keep."""
        normalized = self.normalize(url) if url else None
        if normalized is None:
            return None, BAD_URL
        return normalized, self.drop_reason_normalized(normalized)


@functools.lru_cache(maxsize=16)
def _filter_for(
    blocked: tuple[str, ...], media: tuple[str, ...], tracking: tuple[str, ...]
) -> LinkFilter:
    return LinkFilter(blocked, media, tracking)


def link_drop_reason(url: str, links: LinksConfig) -> str | None:
    """Why `[links]` would drop this URL ("bad_url", "wikipedia", "blocked_domain"), or None.

    The fetch stage calls it on every redirect hop and the build stage on the final URL.
    """
    return LinkFilter.from_config(links).check(url)[1]
