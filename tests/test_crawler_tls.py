"""The fetch engine over HTTPS: SNI and certificate checks through the pinned address, each
certificate fault a recorded `tls_error` (never retried, never a hang), redirects between
the schemes re-checked hop by hop, the address guard and IDN pinning as over HTTP."""

from __future__ import annotations

import time

import pytest

from pipeline.fetch.transport import AddressPolicy
from tests.faultweb import FaultWeb, redirect
from tests.faultweb_tls import stalled_handshake
from tests.test_crawler import PAGE, crawl, fetch_config


@pytest.fixture
def web():
    with FaultWeb(hosts=("127.0.0.1", "127.0.0.2"), tls=True) as w:
        yield w


def https_config(web: FaultWeb, **changes):
    """Every host at the fault web: port 80 to its HTTP, port 443 to its HTTPS listener."""
    overrides = {"*": web.address(), "*:443": web.address(tls=True)}
    changes["resolve_overrides"] = changes.get("resolve_overrides") or overrides
    return fetch_config(web, **changes)


def crawl_tls(web: FaultWeb, config, urls: list[str], **kwargs):
    return crawl(config, urls, ca_file=web.tls.ca_file, **kwargs)


def test_a_page_over_https_is_fetched_with_sni_and_a_verified_certificate(web):
    web.page("secure.test", "/a", PAGE)
    result = crawl_tls(web, https_config(web), ["https://secure.test/a"])["https://secure.test/a"]
    assert result.outcome == "ok", result.error_class
    assert result.tls_verified is True and result.exchanges[-1].body == PAGE.encode()
    assert result.exchanges[-1].ip == "127.0.0.1"  # the pinned address, not a lookup
    assert "secure.test" in web.tls.sni_names  # the host name went out as SNI, not the IP


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("self_signed", "self_signed"),
        ("expired", "expired"),
        ("wrong_host", "hostname_mismatch"),
        ("incomplete_chain", "incomplete_chain"),
    ],
)
def test_each_certificate_fault_is_a_tls_error_with_its_reason_and_not_retried(web, kind, reason):
    web.certificate("bad.test", kind)
    web.page("bad.test", "/", PAGE)
    started = time.monotonic()
    config = https_config(web, respect_robots=False)
    result = crawl_tls(web, config, ["https://bad.test/"])["https://bad.test/"]
    assert (result.outcome, result.error_class) == ("tls_error", reason)
    assert result.attempts == 1  # a certificate fault is permanent: max_retries = 2 unused
    assert web.hits_for("bad.test", "/") == 0
    assert time.monotonic() - started < config.total_timeout_s


def test_a_certificate_fault_is_not_a_fault_with_verify_tls_off_and_the_result_says_so(web):
    web.certificate("bad.test", "self_signed")
    web.page("bad.test", "/", PAGE)
    config = https_config(web, respect_robots=False, verify_tls=False)
    result = crawl_tls(web, config, ["https://bad.test/"])["https://bad.test/"]
    assert result.outcome == "ok" and result.tls_verified is False


def test_a_slow_loris_tls_handshake_is_cut_off_at_the_deadline(web):
    config = https_config(
        web, connect_timeout_s=30.0, read_timeout_s=30.0, total_timeout_s=1.0, respect_robots=False
    )
    config.resolve_overrides["stall.test:443"] = web.listen_raw(stalled_handshake(0.05))
    started = time.monotonic()
    result = crawl_tls(web, config, ["https://stall.test/"])["https://stall.test/"]
    assert result.outcome == "timeout", result.error_class
    assert time.monotonic() - started < 3.0


def test_redirects_between_http_and_https_are_followed_and_each_hop_is_checked(web):
    web.route("up.test", "/", redirect("https://up.test/secure"))
    web.page("up.test", "/secure", PAGE)
    web.route("down.test", "/", redirect("http://down.test/plain"))
    web.page("down.test", "/plain", PAGE)
    web.route("up.test", "/to-bad", redirect("https://bad.test/page"))
    web.certificate("bad.test", "expired")
    urls = ["http://up.test/", "https://down.test/", "http://up.test/to-bad"]
    results = crawl_tls(web, https_config(web, respect_robots=False), urls)
    up, down, bad = (results[u] for u in urls)
    assert (up.outcome, up.final_url, up.redirects) == (
        "ok",
        "https://up.test/secure",
        ["https://up.test/secure"],
    )
    assert up.tls_verified is True and [e.url for e in up.exchanges] == [urls[0], up.final_url]
    assert (down.outcome, down.final_url) == ("ok", "http://down.test/plain")
    assert down.tls_verified is True  # the first hop was HTTPS, checked
    assert (bad.outcome, bad.error_class) == ("tls_error", "expired")
    assert bad.redirects == ["https://bad.test/page"]


def test_the_address_guard_holds_over_https(web):
    """127.0.0.2 stands in for a public address; 127.0.0.1 is the internal service."""
    config = https_config(
        web,
        allow_private_networks=False,
        resolve_overrides={
            "news.test:443": web.address("127.0.0.2", tls=True),
            "intranet.test:443": web.address("127.0.0.1", tls=True),
            "intranet.test": web.address("127.0.0.1"),
        },
        respect_robots=False,
    )
    policy = AddressPolicy(allow_private=False, extra_public=["127.0.0.2/32"])
    web.route("news.test", "/a", redirect("https://intranet.test/secret"))
    web.route("news.test", "/b", redirect("http://intranet.test/secret"))
    web.page("news.test", "/c", PAGE)
    web.page("intranet.test", "/secret", PAGE)
    urls = ["https://news.test/a", "https://news.test/b", "https://news.test/c"]
    results = crawl_tls(web, config, urls, address_policy=policy)
    for url in urls[:2]:
        assert (results[url].outcome, results[url].error_class) == ("blocked_address", "loopback")
    assert results[urls[2]].outcome == "ok"
    assert (
        crawl_tls(web, config, ["https://intranet.test/secret"], address_policy=policy)[
            "https://intranet.test/secret"
        ].outcome
        == "blocked_address"
    )
    assert web.hits_for("intranet.test", "/secret") == 0
    assert "intranet.test" not in web.tls.sni_names  # refused before any connection


def test_an_internationalized_host_over_https_sends_and_verifies_its_punycode_name(web):
    web.page("xn--bcher-kva.test", "/a", PAGE)
    result = crawl_tls(web, https_config(web), ["https://bücher.test/a"])["https://bücher.test/a"]
    assert result.outcome == "ok", result.error_class
    assert "xn--bcher-kva.test" in web.tls.sni_names
    assert ("Host", "xn--bcher-kva.test") in result.exchanges[-1].request_headers
