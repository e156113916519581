"""`fetch.retry_failed`: a rerun tries the transient failures again, exactly once, even when
it is killed and resumed; permanent failures and stored pages are left alone."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

from pipeline.config import load
from pipeline.fetch import stage as fetch
from pipeline.fetch.rerun import best_row, link_to_fetch
from tests.conftest import DEMO_CONFIG
from tests.faultweb import HTML, FaultWeb, Reply, as_handler, reset
from tests.test_fetch_stage import PAGE, kill_after_parts, overrides, read_log, write_links

TRANSIENT = {"/t503": "http_5xx", "/t429": "http_4xx", "/treset": "connection_error",
             "/tslow": "timeout"}  # fmt: skip
PATHS = ["/ok", "/gone", *TRANSIENT]


def row(outcome: str, retry_round: int = 0, status: int | None = None, warc: str | None = None):
    return {"url": "u", "outcome": outcome, "status": status, "retry_round": retry_round,
            "warc_file": warc}  # fmt: skip


def test_only_a_transient_last_outcome_is_fetched_again_with_the_next_round():
    link = {"normalized_url": "u"}
    assert link_to_fetch(link, [], retry_failed=True)["retry_round"] == 0
    assert link_to_fetch(link, [row("timeout")], retry_failed=False) is None
    assert link_to_fetch(link, [row("timeout")], retry_failed=True)["retry_round"] == 1
    assert link_to_fetch(link, [row("http_4xx", status=429)], True)["retry_round"] == 1
    for permanent in [row("http_4xx", status=404), row("robots_disallowed"), row("tls_error"),
                      row("blocked_address"), row("not_html"), row("ok", warc="w")]:  # fmt: skip
        assert link_to_fetch(link, [permanent], retry_failed=True) is None
    # The latest round stands for the link: a retry that failed for good ends the retrying.
    assert link_to_fetch(link, [row("timeout"), row("http_4xx", 1, 404)], True) is None
    assert best_row([row("timeout"), row("ok", 1, warc="w")])["retry_round"] == 1
    assert best_row([row("deferred"), row("timeout", 0)])["outcome"] == "timeout"


def warc_targets(fetch_dir: Path) -> Counter:
    """Response records per target URI over every WARC file."""
    targets = Counter()
    for path in (fetch_dir / "warc").glob("*.warc.gz"):
        with open(path, "rb") as stream:
            for record in ArchiveIterator(stream):
                if record.rec_type == "response":
                    targets[record.rec_headers.get_header("WARC-Target-URI")] += 1
    return targets


def test_retry_failed_survives_a_kill_and_fetches_each_transient_failure_exactly_once(tmp_path):
    hosts = [f"r{i:02d}.test" for i in range(10)]
    urls = [f"http://{h}{p}" for h in hosts for p in PATHS]
    state = {"healthy": False}
    failing = {"/t503": Reply(503, b"busy"), "/t429": Reply(429, b"slow down"),
               "/treset": reset(), "/gone": Reply(404, b"gone")}  # fmt: skip

    async def serve(request, writer):
        path = request.path
        if path == "/gone" or (path in failing and not state["healthy"]):
            return await as_handler(failing[path])(request, writer)
        await asyncio.sleep(0.15 if state["healthy"] else (1.0 if path == "/tslow" else 0))
        body = PAGE.format(request.host + path).encode()
        writer.write(Reply(200, body, [("Content-Type", HTML)]).encode_head() + body)
        await writer.drain()
        return True

    with FaultWeb() as web:
        web.fallback = serve
        write_links(tmp_path, urls)
        sets = overrides(web, **{"fetch.read_timeout_s": "0.5", "fetch.warc_max_bytes": "1",
                                 "fetch.max_per_host": "1", "fetch.respect_robots": "false"})  # fmt: skip
        first = fetch.run(load(DEMO_CONFIG, sets), str(tmp_path), [])
        assert first["totals"] == {"ok": 10, "http_4xx": 20, "http_5xx": 10,
                                   "connection_error": 10, "timeout": 10}  # fmt: skip
        parts_after_first = len(list((tmp_path / "fetch" / "parts").glob("*.parquet")))

        state["healthy"] = True
        retry = sets + ["fetch.retry_failed=true"]
        kill_after_parts(tmp_path, retry, parts_after_first + 6)
        resumed = fetch.run(load(DEMO_CONFIG, retry), str(tmp_path), [])
        hits = {url: web.hits_for(url.split("/")[2], "/" + url.rsplit("/", 1)[1]) for url in urls}
        again = fetch.run(load(DEMO_CONFIG, retry), str(tmp_path), [])

    rows = {r["url"]: r for r in read_log(tmp_path)}
    assert sorted(rows) == sorted(urls)  # every URL once in the consolidated log
    transient = [u for u in urls if "/t" in u]
    for url in transient:
        assert (rows[url]["outcome"], rows[url]["retry_round"]) == ("ok", 1), rows[url]
        assert 2 <= hits[url] <= 3  # the first run, the retry, and perhaps a try cut by the kill
    assert 0 < resumed["counters"]["retried"] < len(transient)  # the kill landed mid-rerun
    for url in urls:
        if url.endswith(("/ok", "/gone")):
            assert hits[url] == 1 and rows[url]["retry_round"] == 0  # never retried
    assert rows[f"http://{hosts[0]}/gone"]["outcome"] == "http_4xx"
    assert again["counters"] == {}  # nothing transient is left to retry
    stored = warc_targets(tmp_path / "fetch")
    assert set(stored.values()) == {1}  # no WARC record twice
    assert set(stored) == {u for u, r in rows.items() if r["outcome"] == "ok"}
