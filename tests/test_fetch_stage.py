"""The fetch stage on DirectRunner against the loopback web: outputs, resume, and a real kill."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from pipeline.config import load
from pipeline.fetch import stage as fetch
from pipeline.warc import read_response
from tests.conftest import DEMO_CONFIG, REPO
from tests.faultweb import HTML, FaultWeb, Reply

PAGE = "<!doctype html><html><body><p>{}</p></body></html>"


def write_links(data_root: Path, urls: list[str]) -> None:
    rows = [
        {
            "normalized_url": url.replace("http://", "https://"),
            "host": url.split("/")[2],
            "urls": [url],
            "karma": 5,
            "first_created_utc": 1500000000,
            "submissions": [],
        }
        for url in urls
    ]
    (data_root / "links").mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.Table.from_pylist(rows, schema=schemas.LINK),
        data_root / "links" / "links-00000-of-00001.parquet",
    )


def overrides(web: FaultWeb, **extra: str) -> list[str]:
    sets = {
        "fetch.resolve_overrides": f'{{"*" = "{web.address()}"}}',
        "fetch.total_timeout_s": "3.0",
        "fetch.max_retries": "0",
        "fetch.hosts_per_batch": "2",
        "run.progress_every": "0",
        **extra,
    }
    return [f"{k}={v}" for k, v in sets.items()]


def read_log(data_root: Path) -> list[dict]:
    files = sorted((data_root / "fetch").glob("log-*.parquet"))
    assert files, "no consolidated fetch log"
    table = pa.concat_tables(pq.read_table(f) for f in files)
    assert schemas.check_table(table.schema, schemas.FETCH) == []
    return table.to_pylist()


def kill_after_parts(data_root: Path, sets: list[str], parts: int) -> None:
    """Run the fetch stage in a process of its own and SIGKILL its process group once
    `parts` log parts are committed."""
    command = [sys.executable, "-m", "pipeline.fetch.stage", "--config", str(DEMO_CONFIG),
               "--data-root", str(data_root), "-q"]  # fmt: skip
    for s in sets:
        command += ["--set", s]
    proc = subprocess.Popen(command, cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    parts_dir = data_root / "fetch" / "parts"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(parts_dir.glob("*.parquet"))) < parts:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.2)  # let the server finish reading what the killed process had sent


def test_stage_writes_warc_files_and_a_fetch_log(tmp_path):
    with FaultWeb() as web:
        for host in ("a.test", "b.test", "c.test"):
            web.route(
                host,
                "/robots.txt",
                Reply(200, b"User-agent: *\nDisallow: /no\n", [("Content-Type", "text/plain")]),
            )
            for i in range(3):
                web.page(host, f"/{i}", PAGE.format(f"{host} page {i}"))
        urls = [f"http://{h}/{i}" for h in ("a.test", "b.test", "c.test") for i in range(3)]
        urls += ["http://a.test/missing", "http://b.test/no/such", "http://c.test/pic"]
        web.route("c.test", "/pic", Reply(200, b"\x89PNG", [("Content-Type", "image/png")]))
        write_links(tmp_path, urls)
        config = load(DEMO_CONFIG, overrides(web))
        summary = fetch.run(config, str(tmp_path), [])
    rows = {r["url"]: r for r in read_log(tmp_path)}
    assert set(rows) == set(urls)
    assert summary["counters"]["ok"] == 9
    assert summary["totals"] == {"ok": 9, "http_4xx": 1, "robots_disallowed": 1, "not_html": 1}
    assert rows["http://c.test/pic"]["content_type"] is None
    for url in urls[:9]:
        row = rows[url]
        assert row["normalized_url"] == url.replace("http://", "https://")
        headers, body, target = read_response(
            str(tmp_path / "fetch" / row["warc_file"]), row["warc_offset"]
        )
        assert target == url and headers.get_statuscode() == "200"
        host, i = url.split("/")[2], url.rsplit("/", 1)[1]
        assert body == PAGE.format(f"{host} page {i}").encode()
    assert not list((tmp_path / "fetch").rglob("*.tmp-*"))


def test_a_rerun_skips_fetched_urls_and_fetches_new_ones(tmp_path):
    with FaultWeb() as web:
        web.page("a.test", "*", PAGE.format("x"))
        urls = [f"http://a.test/{i}" for i in range(5)]
        write_links(tmp_path, urls)
        config = load(DEMO_CONFIG, overrides(web))
        fetch.run(config, str(tmp_path), [])
        write_links(tmp_path, urls + ["http://a.test/new"])
        summary = fetch.run(config, str(tmp_path), [])
        hits = {
            path: web.hits_for("a.test", path) for path in [f"/{i}" for i in range(5)] + ["/new"]
        }
    assert set(hits.values()) == {1}
    assert summary["counters"] == {"ok": 1}
    assert len(read_log(tmp_path)) == 6


def test_killing_a_run_loses_only_what_was_in_flight_and_duplicates_nothing(tmp_path):
    hosts = [f"h{i:02d}.test" for i in range(20)]
    urls = [f"http://{h}/{j}" for h in hosts for j in range(4)]

    async def slow_page(request, writer):
        await asyncio.sleep(0.15)
        body = PAGE.format(request.host + request.path).encode()
        writer.write(Reply(200, body, [("Content-Type", HTML)]).encode_head() + body)
        await writer.drain()
        return True

    with FaultWeb() as web:
        web.fallback = slow_page
        write_links(tmp_path, urls)
        sets = overrides(web, **{"fetch.warc_max_bytes": "1", "fetch.max_per_host": "1",
                                 "fetch.respect_robots": "false"})  # fmt: skip
        parts_dir = tmp_path / "fetch" / "parts"
        kill_after_parts(tmp_path, sets, 8)
        committed = {
            row["url"]
            for part in parts_dir.glob("*.parquet")
            for row in pq.read_table(part).to_pylist()
        }
        assert 8 <= len(committed) < len(urls), "the kill should land mid-run"
        hits_before = sum(web.hits.values())

        summary = fetch.run(load(DEMO_CONFIG, sets), str(tmp_path), [])
        hits = {url: web.hits_for(url.split("/")[2], "/" + url.rsplit("/", 1)[1]) for url in urls}

    rows = read_log(tmp_path)
    assert sorted(r["url"] for r in rows) == sorted(urls)  # every URL once, none twice
    assert all(r["outcome"] == "ok" for r in rows)
    assert all(hits[url] == 1 for url in committed)  # committed work is never redone
    assert max(hits.values()) <= 2  # only what was in flight at the kill is fetched again
    assert sum(hits.values()) - hits_before == len(urls) - len(committed)
    assert summary["counters"]["ok"] == len(urls) - len(committed)
    warcs = {p.name for p in (tmp_path / "fetch" / "warc").glob("*.warc.gz")}
    assert warcs == {r["warc_file"].split("/")[1] for r in rows}  # no orphans left
    assert not list((tmp_path / "fetch").rglob("*.tmp-*"))
    for row in rows[:5]:
        _, body, target = read_response(
            str(tmp_path / "fetch" / row["warc_file"]), row["warc_offset"]
        )
        assert target == row["url"] and row["url"].split("/")[2].encode() in body


def test_the_log_says_for_each_page_whether_its_certificate_was_checked(tmp_path):
    with FaultWeb(tls=True) as web:
        web.certificate("self.test", "self_signed")
        for host in ("self.test", "plain.test"):
            web.page(host, "/", PAGE.format(host))
        urls = ["https://self.test/", "http://plain.test/"]
        routes = f'{{"*" = "{web.address()}", "*:443" = "{web.address(tls=True)}"}}'
        sets = overrides(web, **{"fetch.resolve_overrides": routes})
        write_links(tmp_path / "checked", urls)
        fetch.run(load(DEMO_CONFIG, sets), str(tmp_path / "checked"), [])
        write_links(tmp_path / "unchecked", urls)
        unchecked = sets + ["fetch.verify_tls=false"]
        fetch.run(load(DEMO_CONFIG, unchecked), str(tmp_path / "unchecked"), [])
    checked = {r["url"]: r for r in read_log(tmp_path / "checked")}
    assert (checked[urls[0]]["outcome"], checked[urls[0]]["error_class"]) == (
        "tls_error",
        "robots.txt:self_signed",
    )
    assert checked[urls[0]]["tls_verified"] is True
    assert checked[urls[1]]["tls_verified"] is None  # plain HTTP: nothing to verify
    relaxed = {r["url"]: r for r in read_log(tmp_path / "unchecked")}
    assert relaxed[urls[0]]["outcome"] == "ok" and relaxed[urls[0]]["tls_verified"] is False
    assert relaxed[urls[1]]["outcome"] == "ok" and relaxed[urls[1]]["tls_verified"] is None


def test_a_stage_without_links_says_what_to_run(tmp_path):
    from pipeline.dataroot import StageError

    with pytest.raises(StageError, match="run `webtext links` first"):
        fetch.run(load(DEMO_CONFIG), str(tmp_path), [])


def test_one_process_and_two_worker_processes_fetch_the_same(tmp_path):
    hosts = [f"h{i}.test" for i in range(8)]
    urls = [f"http://{h}/{i}" for h in hosts for i in range(4)] + ["http://h0.test/missing"]
    fetched = []
    with FaultWeb() as web:
        for host in hosts:
            for i in range(4):
                web.page(host, f"/{i}", PAGE.format(f"{host} page {i}"))
        config = load(DEMO_CONFIG, overrides(web))
        for name, args in (
            ("one", ["--direct_num_workers=1"]),
            ("two", ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]),
        ):
            write_links(tmp_path / name, urls)
            summary = fetch.run(config, str(tmp_path / name), args)
            outcomes = {}
            for row in read_log(tmp_path / name):
                body = None
                if row["warc_file"]:
                    warc = str(tmp_path / name / "fetch" / row["warc_file"])
                    body = read_response(warc, row["warc_offset"])[1]
                outcomes[row["url"]] = (row["outcome"], row["status"], row["final_url"], body)
            fetched.append((outcomes, summary["totals"]))
    assert len(fetched[0][0]) == len(urls) and fetched[0][1] == {"ok": 32, "http_4xx": 1}
    assert fetched[0] == fetched[1]
