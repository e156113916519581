"""Document filters: each is a plain function that returns None to keep or a reason to drop.

The reason is also the name of the Beam counter that counts it and the `reason` column of
the removed-documents output, so the funnel reads straight out of the job's metrics.

    too_short          fewer GPT-2 tokens than [build] min_tokens
    language           not one of [build] languages, or identified with too little confidence
    junk_<kind>        a page that is not content: bot_check, captcha, cookie_wall, soft_404
    wikipedia          the final URL, after redirects, is on a Wikipedia host
    wikipedia_mirror   another host serving a copy of a Wikipedia article

Junk signatures are phrases that only such pages put near their start or in their title. A
real article that merely mentions "page not found" deep in its text is not touched: phrases
are looked for in the title and the first JUNK_HEAD_CHARS characters only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.config import BuildConfig
from pipeline.urls import host_of, is_wikipedia

JUNK_HEAD_CHARS = 600

# kind -> phrases (regular expressions, matched on lower-cased text).
JUNK_SIGNATURES: dict[str, tuple[str, ...]] = {
    "bot_check": (
        r"checking (?:if the site connection is secure|your browser before accessing)",
        r"verify(?:ing)? (?:that )?you are (?:a )?human",
        r"enable javascript and cookies to continue",
        r"attention required! \| cloudflare",
        r"ddos protection by cloudflare",
        r"access to this page has been denied",
        r"unusual traffic from your computer network",
        r"press (?:&|and) hold to confirm you are",
        r"just a moment\.\.\.",
    ),
    "captcha": (
        r"(?:complete|solve|fill in) the (?:re)?captcha",
        r"i'?m not a robot",
        r"are you a robot\??",
        r"type the (?:characters|text) (?:you see )?in the (?:image|picture)",
    ),
    "cookie_wall": (
        r"(?:we|this (?:site|website)) uses? cookies",
        r"accept (?:all )?cookies",
        r"cookie (?:settings|preferences|policy|consent)",
        r"we value your privacy",
        r"your (?:privacy|consent) choices",
    ),
    "soft_404": (
        r"\b404\b.{0,40}not found",
        r"\bpage (?:was )?not found\b",
        r"(?:page|article|content) you (?:are|were|'re) looking for (?:could not|cannot|can't|"
        r"doesn't|does not|no longer|is no longer|has been|may have)",
        r"(?:this|the requested) (?:page|url) (?:doesn't|does not|no longer) exists?",
        r"the requested url was not found on this server",
        r"sorry, (?:we couldn't|we could not|that page can't) (?:find|be found)",
    ),
}
_JUNK_PATTERNS = {kind: re.compile("|".join(p)) for kind, p in JUNK_SIGNATURES.items()}
# A cookie wall is a page whose text is mostly the consent notice; an article that ends with
# one is not. Over this share of the text's words in paragraphs that mention cookies: a wall.
COOKIE_WALL_SHARE = 0.5
_COOKIE_WORDS = re.compile(r"cookie|consent|privacy|partners|personal data|gdpr")

WIKIPEDIA_MIRROR_SIGNATURES = (
    "from wikipedia, the free encyclopedia",
    "this article uses material from the wikipedia article",
    "it uses material from the wikipedia article",
    "the source of this article is wikipedia",
    "original article on wikipedia",
    # MediaWiki's print footer as Wikipedia renders it; a citation never quotes index.php.
    'retrieved from "https://en.wikipedia.org/w/index.php?title=',
    "wikipedia® is a registered trademark of the wikimedia foundation",
)
_SIGNATURE_REACH = max(len(signature) for signature in WIKIPEDIA_MIRROR_SIGNATURES)


@dataclass(frozen=True)
class Rejection:
    reason: str  # the counter name
    detail: str  # what a person reads in the removed-documents output


def too_short(token_count: int, min_tokens: int) -> str | None:
    return "too_short" if token_count < min_tokens else None


def language(
    lang: str | None, score: float | None, languages: list[str], min_score: float
) -> str | None:
    """Drop text not in `languages` (empty: keep all), or identified below `min_score`."""
    if not languages:
        return None
    if lang not in languages or (score or 0.0) < min_score:
        return "language"
    return None


def junk_kind(text: str, title: str | None) -> tuple[str, str] | None:
    """(kind, matched phrase) when the title or the text's start is a known junk page."""
    head = f"{title or ''}\n{text[:JUNK_HEAD_CHARS]}".lower()
    for kind, pattern in _JUNK_PATTERNS.items():
        found = pattern.search(head)
        if found is None:
            continue
        if kind == "cookie_wall" and not _mostly_cookie_notice(text):
            continue
        return kind, found.group(0)
    return None


def junk(text: str, title: str | None) -> str | None:
    found = junk_kind(text, title)
    return f"junk_{found[0]}" if found else None


def _mostly_cookie_notice(text: str) -> bool:
    total = notice = 0
    for paragraph in text.lower().split("\n"):
        words = len(paragraph.split())
        total += words
        if _COOKIE_WORDS.search(paragraph):
            notice += words
    return total > 0 and notice / total > COOKIE_WALL_SHARE


def wikipedia(final_url: str) -> str | None:
    """Drop pages whose final URL, after every redirect, is on Wikipedia."""
    return "wikipedia" if is_wikipedia(host_of(final_url) or "") else None


def wikipedia_mirror(text: str, html: str | None = None) -> str | None:
    """Drop copies of Wikipedia articles served by another host, by their telltale lines.

    In the text, "Wikipedia" may be spelt Wikipedia, wikipedia or WIKIPEDIA. In the HTML,
    where the signatures that never reach the text are MediaWiki's footers in their own
    casing, only the first two: scanning a page's whole HTML is the filters' dearest step,
    and a second pass for capitals cost as much as the first.
    """
    if _has_mirror_signature(text, ("ikipedia", "IKIPEDIA")):
        return "wikipedia_mirror"
    if html and _has_mirror_signature(html, ("ikipedia",)):
        return "wikipedia_mirror"
    return None


def _has_mirror_signature(haystack: str, spellings: tuple[str, ...]) -> bool:
    """Whether a signature occurs, case aside, with its "Wikipedia" spelt with one of the
    `spellings`. Every signature holds that word, so only the text around each occurrence
    of it is lower-cased and compared: many pages link to Wikipedia, and lower-casing their
    whole HTML cost more than all the other filters together."""
    for spelling in spellings:
        found = haystack.find(spelling)
        while found != -1:
            around = haystack[max(0, found - _SIGNATURE_REACH) : found + _SIGNATURE_REACH].lower()
            if any(signature in around for signature in WIKIPEDIA_MIRROR_SIGNATURES):
                return True
            found = haystack.find(spelling, found + 1)
    return False


def check_document(doc: dict, html: str | None, build: BuildConfig) -> Rejection | None:
    """The first filter that rejects an extracted document (schemas.DOCUMENT), or None.

    Wikipedia by URL is checked before extraction too (see `wikipedia`); here the cheap,
    certain checks come first so each document is counted under the most specific reason.
    `html` is the page's HTML, for the Wikipedia-mirror signatures a footer may hold.
    """
    return check_content(doc, html, build) or check_length(doc["token_count"], build)


def check_content(doc: dict, html: str | None, build: BuildConfig) -> Rejection | None:
    """Every filter but the length one, which alone needs the GPT-2 token count: the stage
    counts tokens only for documents that pass these. `doc` needs final_url, host, text,
    title, language and language_score."""
    if wikipedia(doc["final_url"]):
        return Rejection("wikipedia", doc["host"])
    if wikipedia_mirror(doc["text"], html):
        return Rejection("wikipedia_mirror", doc["host"])
    if build.junk_filter:
        found = junk_kind(doc["text"], doc.get("title"))
        if found:
            return Rejection(f"junk_{found[0]}", found[1])
    if language(doc["language"], doc["language_score"], build.languages, build.min_language_score):
        return Rejection("language", f"{doc['language']} {doc['language_score']:.2f}")
    return None


def check_length(token_count: int, build: BuildConfig) -> Rejection | None:
    if too_short(token_count, build.min_tokens):
        return Rejection("too_short", f"{token_count} tokens < {build.min_tokens}")
    return None
