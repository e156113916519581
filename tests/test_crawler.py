"""The fetch engine against the loopback fault-injection web: each fault ends in its outcome."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from pipeline.config import load
from pipeline.fetch.crawler import Crawler
from pipeline.fetch.records import FetchResult, FetchTask, StepFailure
from pipeline.fetch.transport import AddressPolicy, BodyDecoder, retry_after_seconds
from tests.conftest import DEMO_CONFIG
from tests.faultweb import (
    HTML,
    ArchiveEmulation,
    FaultWeb,
    Reply,
    big_binary,
    gzip_bomb,
    redirect,
    reset,
    sequence,
    trickle,
    trickle_headers,
)

PAGE = "<!doctype html><html><head><title>t</title></head><body><p>Hello, world.</p></body></html>"
CONFIG = load(DEMO_CONFIG)


def fetch_config(web: FaultWeb, **changes):
    base = dict(
        resolve_overrides={"*": web.address()},
        connect_timeout_s=1.0,
        read_timeout_s=1.0,
        total_timeout_s=2.0,
        backoff_base_s=0.01,
        max_retry_after_s=1.5,
        max_retries=2,
        allow_private_networks=True,
        min_host_delay_s=0.0,
    )
    base.update(changes)
    return dataclasses.replace(CONFIG.fetch, **base)


def crawl(config, urls: list[str], **kwargs) -> dict[str, FetchResult]:
    crawler = Crawler(config, CONFIG.links, seed=7, **kwargs)
    try:
        return {r.task.url: r for r in crawler.crawl([FetchTask(u, u) for u in urls])}
    finally:
        crawler.close()


def crawl_one(config, url: str, **kwargs) -> FetchResult:
    return crawl(config, [url], **kwargs)[url]


@pytest.fixture
def web():
    with FaultWeb(hosts=("127.0.0.1", "127.0.0.2")) as w:
        yield w


# --- plain functions ---------------------------------------------------------------------------


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None


def test_address_policy_refuses_every_non_public_kind():
    policy = AddressPolicy(allow_private=False)
    for ip in ["127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "224.0.0.1", "0.0.0.0",
               "::1", "fe80::1", "::ffff:127.0.0.1", "100.64.0.1", "240.0.0.1"]:  # fmt: skip
        assert not policy.allows(ip), ip
    assert policy.allows("93.184.216.34")
    assert AddressPolicy(allow_private=True).allows("127.0.0.1")


def test_body_decoder_truncates_or_drops_at_the_cap():
    decoder = BodyDecoder("", max_bytes=10, max_ratio=100, oversize="truncate")
    assert decoder.feed(b"12345") is True
    assert decoder.feed(b"6789012345") is False
    assert decoder.body() == b"1234567890" and decoder.truncated
    with pytest.raises(StepFailure) as info:
        BodyDecoder("", max_bytes=10, max_ratio=100, oversize="drop").feed(b"x" * 11)
    assert info.value.outcome == "too_large"


# --- each fault ends in its outcome --------------------------------------------------------------


def test_a_plain_page_is_fetched_with_its_exchange(web):
    web.page("news.test", "/a", PAGE)
    result = crawl_one(fetch_config(web), "http://news.test/a")
    assert result.outcome == "ok" and result.status == 200 and result.source == "live"
    assert result.charset == "utf-8" and result.content_type == "text/html"
    assert result.exchanges[-1].body == PAGE.encode()
    assert ("Host", "news.test") in result.exchanges[-1].request_headers


def test_an_internationalized_host_is_fetched_by_its_punycode_name(web):
    web.page("xn--bcher-kva.test", "/a", PAGE)
    result = crawl_one(fetch_config(web), "http://bücher.test/a")
    assert result.outcome == "ok", result.error_class
    assert ("Host", "xn--bcher-kva.test") in result.exchanges[-1].request_headers


def test_slow_loris_body_is_cut_off_at_the_total_deadline(web):
    web.route("slow.test", "/", trickle(b"<html>" + b"x" * 1000, interval=0.05))
    started = time.monotonic()
    result = crawl_one(fetch_config(web, total_timeout_s=1.0), "http://slow.test/")
    assert (result.outcome, result.error_class) == ("timeout", "DeadlineExceeded")
    assert time.monotonic() - started < 4.0


def test_slow_loris_headers_are_cut_off_at_the_total_deadline(web):
    web.route("slow.test", "/", trickle_headers(interval=0.05))
    started = time.monotonic()
    result = crawl_one(fetch_config(web, total_timeout_s=1.0), "http://slow.test/")
    assert result.outcome == "timeout"
    assert time.monotonic() - started < 4.0


def test_connection_reset_is_retried_then_recorded(web):
    web.route("flaky.test", "/", reset())
    result = crawl_one(fetch_config(web), "http://flaky.test/")
    assert (result.outcome, result.error_class) == ("connection_error", "ConnectionReset")
    assert result.attempts == 3  # the first try and max_retries = 2
    assert web.hits_for("flaky.test", "/") == 3


def test_a_500_then_a_200_ends_ok_after_a_retry(web):
    web.route("flaky.test", "/", sequence(Reply(500, b"oops"), Reply(200, PAGE.encode())))
    result = crawl_one(fetch_config(web), "http://flaky.test/")
    assert result.outcome == "ok" and result.attempts == 2


def test_429_with_retry_after_is_honoured(web):
    web.route(
        "busy.test",
        "/",
        sequence(Reply(429, b"", [("Retry-After", "1")]), Reply(200, PAGE.encode())),
    )
    result = crawl_one(fetch_config(web, total_timeout_s=3.0), "http://busy.test/")
    assert result.outcome == "ok" and result.attempts == 2
    assert result.elapsed_s >= 1.0


def test_a_retry_after_longer_than_allowed_is_a_failure_without_waiting(web):
    web.route("busy.test", "/", Reply(503, b"", [("Retry-After", "3600")]))
    result = crawl_one(fetch_config(web), "http://busy.test/")
    assert (result.outcome, result.status) == ("http_5xx", 503)
    assert result.error_class.startswith("RetryAfter>")
    assert web.hits_for("busy.test", "/") == 1


@pytest.mark.parametrize("status", [404, 410])
def test_gone_pages_are_never_retried(web, status):
    web.route("gone.test", "/", Reply(status, b"gone"))
    result = crawl_one(fetch_config(web), "http://gone.test/")
    assert (result.outcome, result.status, result.attempts) == ("http_4xx", status, 1)


def test_a_redirect_loop_is_detected(web):
    web.route("loop.test", "/a", redirect("/b"))
    web.route("loop.test", "/b", redirect("http://loop.test/a"))
    result = crawl_one(fetch_config(web), "http://loop.test/a")
    assert result.outcome == "redirect_loop"
    assert result.redirects == ["http://loop.test/b"]


def test_redirects_are_followed_up_to_the_limit(web):
    for i in range(8):
        web.route("chain.test", f"/{i}", redirect(f"/{i + 1}", status=301))
    web.page("chain.test", "/8", PAGE)
    assert crawl_one(fetch_config(web), "http://chain.test/0").outcome == "too_many_redirects"
    ok = crawl_one(fetch_config(web, max_redirects=8), "http://chain.test/0")
    assert ok.outcome == "ok" and ok.final_url == "http://chain.test/8"
    assert len(ok.redirects) == 8 and len(ok.exchanges) == 9


def test_a_redirect_to_wikipedia_is_dropped(web):
    web.route("news.test", "/", redirect("https://en.m.wikipedia.org/wiki/Reddit"))
    result = crawl_one(fetch_config(web), "http://news.test/")
    assert (result.outcome, result.error_class) == ("filtered_redirect", "wikipedia")


def test_a_redirect_to_a_private_address_is_refused(web):
    """127.0.0.2 stands in for a public address; 127.0.0.1 is the internal service."""
    config = fetch_config(
        web,
        allow_private_networks=False,
        resolve_overrides={
            "news.test": web.address("127.0.0.2"),
            "intranet.test": web.address("127.0.0.1"),
        },
    )
    policy = AddressPolicy(allow_private=False, extra_public=["127.0.0.2/32"])
    web.route("news.test", "/a", redirect("http://intranet.test/secret"))
    web.route("news.test", "/b", redirect("http://169.254.169.254/latest/meta-data/"))
    web.page("intranet.test", "/secret", PAGE)
    results = crawl(config, ["http://news.test/a", "http://news.test/b"], address_policy=policy)
    assert results["http://news.test/a"].outcome == "blocked_address"
    assert results["http://news.test/a"].error_class == "loopback"
    assert results["http://news.test/b"].outcome == "blocked_address"
    assert web.hits_for("intranet.test", "/secret") == 0


def test_loopback_links_are_refused_unless_private_networks_are_allowed(web):
    web.page("local.test", "/", PAGE)
    config = fetch_config(web, allow_private_networks=False)
    result = crawl_one(config, "http://local.test/")
    assert result.outcome == "blocked_address"
    assert sum(web.hits.values()) == 0 and web.connections == 0
    assert crawl_one(config, "http://127.0.0.1/").outcome == "blocked_address"
    assert crawl_one(fetch_config(web), "http://local.test/").outcome == "ok"


def test_an_oversized_body_is_truncated_and_marked(web):
    web.page("big.test", "/", "<html><body>" + "x" * 50_000 + "</body></html>")
    result = crawl_one(fetch_config(web, max_body_bytes=10_000), "http://big.test/")
    assert result.outcome == "ok" and result.truncated and result.body_bytes == 10_000


def test_an_oversized_body_is_dropped_when_configured(web):
    web.page("big.test", "/", "<html><body>" + "x" * 50_000 + "</body></html>")
    config = fetch_config(web, max_body_bytes=10_000, oversize="drop")
    assert crawl_one(config, "http://big.test/").outcome == "too_large"


def test_a_gzip_bomb_is_refused(web):
    web.route("bomb.test", "/", gzip_bomb(50_000_000))
    started = time.monotonic()
    result = crawl_one(fetch_config(web), "http://bomb.test/")
    assert result.outcome == "decompression_bomb"
    assert time.monotonic() - started < 2.0


def test_a_gzipped_page_is_stored_decoded(web):
    import gzip

    web.route(
        "gz.test",
        "/",
        Reply(
            200,
            gzip.compress(PAGE.encode()),
            [("Content-Type", HTML), ("Content-Encoding", "gzip")],
        ),
    )
    result = crawl_one(fetch_config(web), "http://gz.test/")
    assert result.outcome == "ok" and result.exchanges[-1].body == PAGE.encode()
    assert ("X-Crawler-Content-Encoding", "gzip") in result.exchanges[-1].response_headers


def test_a_wrong_content_type_is_skipped_without_downloading_the_body(web):
    web.route("media.test", "/pic", big_binary(20_000_000, interval=0.05))
    web.route(
        "media.test", "/lie", Reply(200, b"%PDF-1.4" + b"\1" * 5000, [("Content-Type", HTML)])
    )
    web.route(
        "media.test",
        "/octet",
        Reply(200, PAGE.encode(), [("Content-Type", "application/octet-stream")]),
    )
    started = time.monotonic()
    results = crawl(
        fetch_config(web),
        ["http://media.test/pic", "http://media.test/lie", "http://media.test/octet"],
    )
    assert time.monotonic() - started < 5.0  # 20 MB at 64 KB per 50 ms would take 15 s
    pic = results["http://media.test/pic"]
    assert (pic.outcome, pic.error_class, pic.body_bytes) == ("not_html", "header:image/png", 0)
    assert results["http://media.test/lie"].error_class == "sniffed_binary:text/html"
    assert results["http://media.test/octet"].outcome == "ok"


def test_a_bad_charset_falls_back_to_detection(web):
    body = (
        "<html><body><p>" + "Ça coûte très cher, déjà vu à l'hôtel. " * 30 + "</p></body></html>"
    ).encode("cp1252")
    web.route("enc.test", "/", Reply(200, body, [("Content-Type", "text/html; charset=x-no-such")]))
    result = crawl_one(fetch_config(web), "http://enc.test/")
    assert result.outcome == "ok"
    assert result.charset != "x-no-such" and body.decode(result.charset).startswith("<html>")


def test_robots_txt_disallow_is_respected_and_read_once(web):
    web.route(
        "polite.test",
        "/robots.txt",
        Reply(
            200, b"User-agent: webtext-bot\nDisallow: /private\n", [("Content-Type", "text/plain")]
        ),
    )
    web.page("polite.test", "*", PAGE)
    urls = [
        "http://polite.test/private/1",
        "http://polite.test/private/2",
        "http://polite.test/open",
    ]
    results = crawl(fetch_config(web), urls)
    assert results[urls[0]].outcome == results[urls[1]].outcome == "robots_disallowed"
    assert results[urls[2]].outcome == "ok"
    assert web.hits_for("polite.test", "/robots.txt") == 1
    assert web.hits_for("polite.test", "/private/1") == 0
    unrestricted = crawl_one(fetch_config(web, respect_robots=False), urls[0])
    assert unrestricted.outcome == "ok"


def test_archive_fallback_fetches_a_dead_page_from_common_crawl(web):
    archive = ArchiveEmulation(web)
    web.route("dead.test", "*", Reply(404, b"gone"))
    archive.add_commoncrawl("http://dead.test/story", PAGE.encode())
    config = fetch_config(web, archive_fallback="commoncrawl", **archive.endpoints())
    result = crawl_one(config, "http://dead.test/story")
    assert (result.outcome, result.source, result.error_class) == (
        "ok",
        "commoncrawl",
        "live:http_4xx",
    )
    assert result.exchanges[-1].body == PAGE.encode()
    assert result.exchanges[-1].source_uri.startswith(ArchiveEmulation.WARC_NAME)


def test_archive_fallback_tries_wayback_second_and_keeps_the_live_failure_on_a_miss(web):
    archive = ArchiveEmulation(web)
    web.route("dead.test", "*", reset())
    archive.add_wayback("http://dead.test/old", PAGE.encode())
    config = fetch_config(web, archive_fallback="commoncrawl,wayback", **archive.endpoints())
    results = crawl(config, ["http://dead.test/old", "http://dead.test/never"])
    old = results["http://dead.test/old"]
    assert (old.outcome, old.source) == ("ok", "wayback")
    assert old.exchanges[-1].body == PAGE.encode()
    never = results["http://dead.test/never"]
    assert (never.outcome, never.source) == ("connection_error", "live")


def test_an_archived_redirect_is_followed_to_its_archived_target_with_the_live_checks(web):
    archive = ArchiveEmulation(web)
    web.route("dead.test", "*", Reply(404, b"gone"))
    archive.add_wayback_redirect("http://dead.test/old", "http://dead.test/moved")
    archive.add_wayback("http://dead.test/moved", PAGE.encode())
    archive.add_wayback_redirect("http://dead.test/wiki", "https://en.wikipedia.org/wiki/X")
    archive.add_wayback_redirect("http://dead.test/a", "http://dead.test/b")
    archive.add_wayback_redirect("http://dead.test/b", "http://dead.test/a")
    config = fetch_config(web, archive_fallback="wayback", **archive.endpoints())
    urls = ["http://dead.test/old", "http://dead.test/wiki", "http://dead.test/a"]
    results = crawl(config, urls)
    moved = results["http://dead.test/old"]
    assert (moved.outcome, moved.source, moved.error_class) == ("ok", "wayback", "live:http_4xx")
    assert moved.redirects == ["http://dead.test/moved"]
    assert moved.final_url == "http://dead.test/moved"
    assert moved.exchanges[-1].body == PAGE.encode()
    assert moved.exchanges[-1].url == "http://dead.test/moved"
    for url in urls[1:]:  # a filtered target, a loop: the archive missed, the live failure stays
        assert (results[url].outcome, results[url].source) == ("http_4xx", "live")
    assert (
        web.hits_for(ArchiveEmulation.WAYBACK_HOST, "/web/20160101000000id_/http://dead.test/a")
        == 1
    )


# --- politeness and reuse -----------------------------------------------------------------------


def test_per_host_concurrency_and_delay_are_enforced(web):
    state = {"now": 0, "max": 0, "starts": []}

    async def slow_page(request, writer):
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        state["starts"].append(time.monotonic())
        await asyncio.sleep(0.1)
        state["now"] -= 1
        writer.write(Reply(200, PAGE.encode()).encode_head() + PAGE.encode())
        await writer.drain()
        return True

    web.route("one.test", "*", slow_page)
    urls = [f"http://one.test/{i}" for i in range(12)]
    config = fetch_config(web, max_per_host=2, concurrency=16, respect_robots=False)
    assert all(r.ok for r in crawl(config, urls).values())
    assert state["max"] == 2
    state.update(starts=[])
    delayed = fetch_config(web, max_per_host=4, min_host_delay_s=0.05, respect_robots=False)
    crawl(delayed, [f"http://one.test/d{i}" for i in range(6)])
    # Arrivals at the server: the first may lag by a TCP connect, so judge the span.
    starts = state["starts"]
    assert len(starts) == 6 and starts[-1] - starts[0] >= 5 * 0.05 - 0.02


def test_connections_are_reused_across_requests_to_a_host(web):
    web.page("reuse.test", "*", PAGE)
    config = fetch_config(web, max_per_host=2, respect_robots=False)
    results = crawl(config, [f"http://reuse.test/{i}" for i in range(30)])
    assert all(r.ok for r in results.values())
    assert web.connections <= 4
