"""The bodies the micro-web serves: article pages in three site templates (news, blog,
journal), Wikipedia pages, error pages, and the PDF and JPEG files."""

from __future__ import annotations

import calendar
import html
import random

from pipeline.demo.site import Host
from pipeline.demo.text import WORDS, slugify


def headlines(rng: random.Random, n: int) -> list[str]:
    forms = (
        "The {a} of {b}: what we know",
        "Why {a} and {b} matter this year",
        "A week at {a} {b}",
        "{a} {b} opens to visitors",
        "Letters: on {a} and {b}",
    )
    return [rng.choice(forms).format(a=rng.choice(WORDS), b=rng.choice(WORDS)) for _ in range(n)]


def render_page(
    host: Host,
    title: str,
    paragraphs: tuple[str, ...],
    byline: str,
    date: str,
    rng: random.Random,
    lang: str = "en",
    charset: str = "utf-8",
) -> str:
    """An article page in the host's template: navigation, sidebar and footer around it."""
    e = html.escape
    body = "\n".join(f"<p>{e(p)}</p>" for p in paragraphs)
    nav_links = "".join(f'<li><a href="/section/{n.lower()}">{n}</a></li>' for n in host.nav)
    side = "".join(
        f'<li><a href="/{slugify(h)}">{e(h)}</a></li>' for h in headlines(rng, rng.randint(4, 7))
    )
    head = (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="{charset}">\n'
        f"<title>{e(title)} | {e(host.site)}</title>\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n</head>\n<body>\n'
    )
    year = date[:4]
    if host.family == "news":
        page = (
            f'<header class="masthead"><a class="logo" href="/">{e(host.site)}</a>\n'
            f"<nav><ul>{nav_links}</ul></nav></header>\n"
            f"<main><article>\n<h1>{e(title)}</h1>\n"
            f'<p class="byline">By {e(byline)} &middot; <time datetime="{date}">{date}</time></p>\n'
            f"{body}\n</article></main>\n"
            f'<aside class="sidebar"><h2>Most read</h2><ul>{side}</ul></aside>\n'
            f'<footer><p class="legal">&copy; {year} {e(host.site)}. All rights reserved.</p>\n'
            '<p class="links"><a href="/about">About us</a> | <a href="/contact">Contact</a> | '
            '<a href="/terms">Terms of use</a></p></footer>\n'
        )
    elif host.family == "blog":
        archive = "".join(
            f'<li><a href="/{year}/{m:02d}/">{calendar.month_name[m]} {year}</a></li>'
            for m in range(12, 6, -1)
        )
        page = (
            f'<div id="wrapper">\n<div id="header"><h2 class="site-title"><a href="/">'
            f"{e(host.site)}</a></h2>\n"
            f'<p class="tagline">Thoughts on {host.nav[1].lower()} and {host.nav[2].lower()}</p>'
            f'</div>\n<div id="menu"><ul>{nav_links}</ul></div>\n'
            f'<div id="content"><div class="post">\n<h1 class="entry-title">{e(title)}</h1>\n'
            f'<div class="entry-meta">Posted on {date} by {e(byline)}</div>\n'
            f'<div class="entry-content">\n{body}\n</div></div></div>\n'
            f'<div id="sidebar"><h3>Archives</h3><ul>{archive}</ul>\n'
            f"<h3>Blogroll</h3><ul>{side}</ul></div>\n"
            f'<div id="footer">Proudly powered by the {host.nav[3]} theme. '
            f"Copyright {year} {e(host.site)}.</div>\n</div>\n"
        )
    else:
        page = (
            f'<div class="top"><a href="/">{e(host.site)}</a> &mdash; independent writing on '
            f"{host.nav[4].lower()}</div>\n"
            f'<div class="breadcrumbs"><a href="/">Home</a> &rsaquo; '
            f'<a href="/section/{host.nav[0].lower()}">{host.nav[0]}</a></div>\n'
            f'<div class="menu"><ul>{nav_links}</ul></div>\n'
            f'<div class="article-body">\n<h1>{e(title)}</h1>\n'
            f'<div class="meta">{e(byline)}, {date}</div>\n{body}\n</div>\n'
            f'<div class="related"><h4>Related</h4><ul>{side}</ul></div>\n'
            f'<div class="bottom">{e(host.site)} &middot; {year} &middot; '
            '<a href="/subscribe">Subscribe</a> &middot; <a href="/contact">Contact</a></div>\n'
        )
    return head + page + "</body>\n</html>\n"


def render_wikipedia(title: str, paragraphs: tuple[str, ...], lang: str) -> str:
    e = html.escape
    body = "\n".join(f"<p>{e(p)}</p>" for p in paragraphs)
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{e(title)} - Wikipedia</title>\n</head>\n<body>\n"
        f'<div id="content"><h1 id="firstHeading">{e(title)}</h1>\n'
        '<div id="siteSub">From Wikipedia, the free encyclopedia</div>\n'
        f'<div id="mw-content-text">\n{body}\n</div></div>\n'
        '<div id="footer">Text is available under the Creative Commons Attribution-ShareAlike '
        "License; additional terms may apply.</div>\n</body>\n</html>\n"
    )


def status_page(status: int) -> bytes:
    text = {
        404: ("Page not found", "The page you are looking for does not exist."),
        410: ("Gone", "This article has been removed by its publisher."),
        500: ("Internal Server Error", "The server could not complete your request."),
    }[status]
    return (
        f"<!DOCTYPE html>\n<html><head><title>{text[0]}</title></head>\n"
        f"<body><h1>{text[0]}</h1><p>{text[1]}</p></body></html>\n"
    ).encode()


def pdf_bytes(title: str) -> bytes:
    stream = f"BT /F1 18 Tf 72 720 Td ({title}) Tj ET".encode("latin-1", "replace")
    return (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
        b"3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >> endobj\n"
        + f"4 0 obj << /Length {len(stream)} >> stream\n".encode()
        + stream
        + b"\nendstream endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    )


def jpeg_bytes(rng: random.Random) -> bytes:
    header = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    return header + rng.randbytes(2048) + b"\xff\xd9"
