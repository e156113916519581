"""URL normalization rules and the URL-level link filters."""

from __future__ import annotations

import pytest

from pipeline.config import load
from pipeline.urls import (
    LinkFilter,
    host_of,
    is_blocked_host,
    is_media_path,
    is_wikipedia,
    link_drop_reason,
    normalize_url,
)
from tests.conftest import DEMO_CONFIG

TRACKING = ["utm_*", "fbclid", "gclid", "ref", "ref_src", "igshid"]


def norm(url: str) -> str | None:
    return normalize_url(url, TRACKING)


@pytest.fixture(scope="module")
def links_config():
    return load(DEMO_CONFIG).links


def test_http_and_https_merge_to_https():
    assert norm("http://example.com/a") == norm("https://example.com/a") == "https://example.com/a"


def test_www_prefix_is_removed_but_not_other_subdomains():
    assert norm("https://www.example.com/a") == "https://example.com/a"
    assert norm("https://blog.example.com/a") == "https://blog.example.com/a"
    assert norm("https://www.com/") == "https://www.com/"  # "www" is the whole name here


def test_host_is_lowercased_and_trailing_dot_dropped():
    assert norm("https://ExAmple.COM./A") == "https://example.com/A"  # the path keeps its case


def test_default_ports_are_dropped_and_others_kept():
    assert norm("http://example.com:80/a") == "https://example.com/a"
    assert norm("https://example.com:443/a") == "https://example.com/a"
    assert norm("https://example.com:8080/a") == "https://example.com:8080/a"


def test_fragment_is_dropped_but_hashbang_route_kept():
    assert norm("https://example.com/a#section-2") == "https://example.com/a"
    assert norm("https://twitter.com/#!/jack/status/20") == "https://twitter.com/#!/jack/status/20"


@pytest.mark.parametrize(
    "variant",
    [
        "https://example.com/story?utm_source=reddit",
        "https://example.com/story?utm_medium=social&utm_campaign=x",
        "https://example.com/story?UTM_Source=reddit",
        "https://example.com/story?fbclid=IwAR0abc",
        "https://example.com/story?gclid=abc&ref=front",
        "http://www.example.com/story/?utm_term=a#top",
    ],
)
def test_tracking_parameters_are_removed(variant):
    assert norm(variant) == "https://example.com/story"


def test_content_selecting_parameters_are_kept_apart():
    a = norm("https://www.youtube.com/watch?v=abc")
    b = norm("https://www.youtube.com/watch?v=xyz")
    assert a != b
    assert norm("https://example.com/item.php?id=1") != norm("https://example.com/item.php?id=2")
    assert norm("https://example.com/s?page=2&utm_source=x") == "https://example.com/s?page=2"


def test_query_parameters_are_sorted_by_key_keeping_repeated_values_in_order():
    assert norm("https://example.com/?b=2&a=1") == norm("https://example.com/?a=1&b=2")
    assert norm("https://example.com/?t=2&t=1") == "https://example.com/?t=2&t=1"
    assert norm("https://example.com/?t=2&t=1") != norm("https://example.com/?t=1&t=2")


def test_percent_encoding_is_normalized():
    assert norm("https://example.com/%7Euser/%41bc") == "https://example.com/~user/Abc"
    assert norm("https://example.com/a%2fb") == "https://example.com/a%2Fb"  # reserved stays
    assert norm("https://example.com/caf\u00e9 bar") == "https://example.com/caf%C3%A9%20bar"
    assert norm("https://example.com/caf%c3%a9") == norm("https://example.com/caf\u00e9")


def test_trailing_slash_and_empty_path():
    assert norm("https://example.com") == "https://example.com/"
    assert norm("https://example.com/") == "https://example.com/"
    assert norm("https://example.com/a/b/") == "https://example.com/a/b"


def test_dot_segments_are_resolved():
    assert norm("https://example.com/a/./b/../c") == "https://example.com/a/c"


def test_idn_host_becomes_punycode():
    assert norm("https://b\u00fccher.de/x") == "https://xn--bcher-kva.de/x"
    assert norm("https://xn--bcher-kva.de/x") == "https://xn--bcher-kva.de/x"


def test_userinfo_is_dropped():
    assert norm("https://user:secret@example.com/a") == "https://example.com/a"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "ftp://example.com/file",
        "javascript:alert(1)",
        "/r/news",
        "https://",
        "http://example.com:99999/",
    ],
)
def test_non_http_or_broken_urls_normalize_to_none(bad):
    assert norm(bad) is None


def test_host_of_is_normalized():
    assert host_of("http://WWW.B\u00fccher.de:8080/x") == "xn--bcher-kva.de"
    assert host_of("not a url") is None


@pytest.mark.parametrize(
    "host",
    [
        "en.wikipedia.org",
        "de.wikipedia.org",
        "zh-yue.wikipedia.org",
        "en.m.wikipedia.org",
        "wikipedia.org",
        "commons.wikimedia.org",
        "upload.wikimedia.org",
        "www.wikidata.org",
        "en.wiktionary.org",
        "en.wikibooks.org",
        "en.wikiquote.org",
        "fr.wikisource.org",
        "en.wikinews.org",
        "en.wikiversity.org",
        "en.wikivoyage.org",
        "www.mediawiki.org",
    ],
)
def test_every_wikimedia_host_is_wikipedia(host):
    assert is_wikipedia(host)


@pytest.mark.parametrize(
    "host", ["wikipediaa.org", "notwikipedia.org", "wikihow.com", "wiki.example.org"]
)
def test_lookalike_hosts_are_not_wikipedia(host):
    assert not is_wikipedia(host)


def test_blocked_hosts_cover_subdomains_only():
    blocked = {"imgur.com", "youtu.be"}
    assert is_blocked_host("imgur.com", blocked)
    assert is_blocked_host("i.imgur.com", blocked)
    assert not is_blocked_host("notimgur.com", blocked)
    assert not is_blocked_host("imgur.com.example.org", blocked)


def test_media_paths_match_extension_case_insensitively():
    assert is_media_path("/a/photo.JPG", [".jpg", ".png"])
    assert not is_media_path("/a/jpg", [".jpg"])
    assert not is_media_path("/article.html", [".jpg"])


def test_link_drop_reason_uses_the_links_config(links_config):
    assert link_drop_reason("https://en.m.wikipedia.org/wiki/Cat", links_config) == "wikipedia"
    assert link_drop_reason("https://i.imgur.com/abc.png", links_config) == "blocked_domain"
    assert link_drop_reason("https://example.com/photo.jpeg?w=1", links_config) == "blocked_domain"
    assert (
        link_drop_reason("https://www.reddit.com/r/x/comments/1/", links_config) == "blocked_domain"
    )
    assert link_drop_reason("mailto:someone@example.com", links_config) == "bad_url"
    # WebText's top domains are not blanket-blocked
    for url in (
        "https://github.com/openai/gpt-2",
        "https://twitter.com/x/status/1",
        "https://www.google.com/search?q=x",
    ):
        assert link_drop_reason(url, links_config) is None


def test_link_filter_check_returns_the_key_for_kept_urls(links_config):
    link_filter = LinkFilter.from_config(links_config)
    assert link_filter.check("http://www.example.com/a/?utm_source=x") == (
        "https://example.com/a",
        None,
    )
    assert link_filter.check(None) == (None, "bad_url")
