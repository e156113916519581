"""Each filter, and each junk signature, on its own."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.build import filters
from pipeline.config import load
from tests.conftest import DEMO_CONFIG

ARTICLE = (
    "The city council met on Tuesday evening to discuss the new budget for public libraries. "
    "Several residents spoke in favour of longer opening hours.\n"
    "Librarians described how the number of visitors has grown every year since the branch "
    "reopened, and how the reading programmes for children are now fully booked."
)


@pytest.fixture(scope="module")
def build():
    return load(DEMO_CONFIG).build


def doc(**overrides) -> dict:
    row = {
        "text": ARTICLE,
        "title": "Library hours debate",
        "language": "en",
        "language_score": 0.99,
        "token_count": 500,
        "final_url": "https://example.com/library",
        "host": "example.com",
    }
    row.update(overrides)
    return row


# ---- minimum length -------------------------------------------------------------------------


def test_too_short_drops_documents_under_the_minimum():
    assert filters.too_short(127, 128) == "too_short"
    assert filters.too_short(128, 128) is None


# ---- language -------------------------------------------------------------------------------


def test_language_keeps_listed_languages():
    assert filters.language("en", 0.9, ["en"], 0.5) is None


def test_language_drops_other_languages():
    assert filters.language("de", 0.99, ["en"], 0.5) == "language"


def test_language_drops_low_confidence():
    assert filters.language("en", 0.3, ["en"], 0.5) == "language"


def test_language_filter_is_off_with_an_empty_list():
    assert filters.language("de", 0.1, [], 0.5) is None


# ---- junk signatures ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "title", "kind"),
    [
        (
            "Checking your browser before accessing example.com. This process is automatic.",
            "",
            "bot_check",
        ),
        ("Please enable JavaScript and cookies to continue", "Just a moment...", "bot_check"),
        (
            "Ray ID: 5f2c. Performance & security by Cloudflare",
            "Attention Required! | Cloudflare",
            "bot_check",
        ),
        ("We have detected unusual traffic from your computer network.", "Sorry", "bot_check"),
        (
            "Please verify you are a human by completing the action below.",
            "Access denied",
            "bot_check",
        ),
        ("Press & Hold to confirm you are a human (and not a bot).", "", "bot_check"),
        ("To continue, please complete the CAPTCHA below.", "Security check", "captcha"),
        ("I'm not a robot", "Verification", "captcha"),
        ("Are you a robot? Type the characters you see in the image.", "", "captcha"),
        ("Oops! The page you are looking for could not be found.", "Oops", "soft_404"),
        (
            "Sorry, we couldn't find that page. Try the search box.",
            "Error 404 - Not Found",
            "soft_404",
        ),
        ("This page doesn't exist. Go back home.", "Example News", "soft_404"),
        ("The requested URL was not found on this server.", "", "soft_404"),
        ("Try searching instead.", "Page not found | Example News", "soft_404"),
    ],
)
def test_junk_signature(text, title, kind):
    assert filters.junk_kind(text, title)[0] == kind
    assert filters.junk(text, title) == f"junk_{kind}"


def test_cookie_wall_is_junk():
    wall = (
        "We value your privacy\n"
        "We and our partners use cookies to store and access personal data on your device, "
        "such as browsing data and unique identifiers, for ads and content measurement.\n"
        "You can accept all cookies or manage your consent choices at any time.\n"
        "Accept"
    )
    assert filters.junk(wall, "Example News") == "junk_cookie_wall"


def test_article_ending_with_a_cookie_notice_is_not_a_wall():
    text = ARTICLE * 3 + "\nWe use cookies to improve your experience. Accept cookies."
    assert filters.junk("We use cookies. " + text, "Library hours debate") is None


def test_article_that_mentions_page_not_found_late_is_kept():
    text = ARTICLE * 5 + "\nThe old site showed 'page not found' for years, users said."
    assert filters.junk(text, "Library website relaunch") is None


def test_ordinary_article_is_not_junk():
    assert filters.junk(ARTICLE, "Library hours debate") is None


# ---- Wikipedia ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://en.wikipedia.org/wiki/Library",
        "https://en.m.wikipedia.org/wiki/Library",
        "http://de.wikipedia.org/wiki/Bibliothek",
        "https://WWW.WIKIPEDIA.ORG/",
    ],
)
def test_wikipedia_hosts_are_removed(url):
    assert filters.wikipedia(url) == "wikipedia"


def test_non_wikipedia_host_is_kept():
    assert filters.wikipedia("https://example.com/wiki/Library") is None
    assert filters.wikipedia("https://notwikipedia.org/wiki/Library") is None


def test_wikipedia_after_redirect_is_removed_on_the_final_url(build):
    # the link pointed to a shortener; the fetch followed it to Wikipedia
    redirected = doc(final_url="https://en.wikipedia.org/wiki/Library", host="en.wikipedia.org")
    rejection = filters.check_document(redirected, None, build)
    assert rejection.reason == "wikipedia"
    assert filters.check_document(doc(), None, build) is None


def test_wikipedia_mirror_by_text_signature():
    text = "Library\nFrom Wikipedia, the free encyclopedia\nA library is a collection of books."
    assert filters.wikipedia_mirror(text) == "wikipedia_mirror"


def test_wikipedia_mirror_by_licence_footer_in_html():
    html = (
        "<html><body><p>A library is a collection.</p><div id='footer'>This article uses "
        "material from the Wikipedia article Library, released under CC BY-SA.</div></body>"
    )
    assert filters.wikipedia_mirror("A library is a collection.", html) == "wikipedia_mirror"


def test_mirror_signature_after_many_wikipedia_links_at_either_end_and_in_capitals():
    links = "<a href='https://en.wikipedia.org/wiki/Page'>Wikipedia</a>\n" * 200
    footer = "<div>Wikipedia® is a registered trademark of the Wikimedia Foundation</div>"
    assert filters.wikipedia_mirror("", links) is None
    assert filters.wikipedia_mirror("", links + footer) == "wikipedia_mirror"
    assert filters.wikipedia_mirror("", footer + links) == "wikipedia_mirror"
    assert filters.wikipedia_mirror("", footer.upper()) is None  # HTML: MediaWiki's own casing
    header = "FROM WIKIPEDIA, THE FREE ENCYCLOPEDIA"
    assert filters.wikipedia_mirror(header) == "wikipedia_mirror"
    assert filters.wikipedia_mirror(header[:-1]) is None
    assert filters.wikipedia_mirror(footer.upper()) == "wikipedia_mirror"


def test_article_citing_wikipedia_is_not_a_mirror():
    text = ARTICLE + "\nAccording to Wikipedia, the first public library opened in 1833."
    html = f"<p>{text}</p><a href='https://en.wikipedia.org/wiki/Library'>source</a>"
    assert filters.wikipedia_mirror(text, html) is None


# ---- the chain --------------------------------------------------------------------------------


def test_check_document_names_the_first_rejecting_filter(build):
    assert filters.check_document(doc(token_count=50), None, build).reason == "too_short"
    german = filters.check_document(doc(language="de", language_score=0.98), None, build)
    assert german.reason == "language" and german.detail == "de 0.98"
    junk = filters.check_document(doc(title="404 Not Found"), None, build)
    assert junk.reason == "junk_soft_404" and "404" in junk.detail


def test_junk_filter_switch_turns_junk_signatures_off(build):
    off = dataclasses.replace(build, junk_filter=False)
    assert filters.check_document(doc(title="404 Not Found"), None, off) is None


def test_language_switch_keeps_every_language(build):
    every = dataclasses.replace(build, languages=[])
    assert filters.check_document(doc(language="de"), None, every) is None
