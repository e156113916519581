"""The micro-web: a deterministic generator, a truthful ground truth, and a real loopback server."""

from __future__ import annotations

import hashlib
import html
import http.client
import json
import re
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import zstandard

from pipeline.config import load
from pipeline.demo import MicroWeb, generate, load_ground_truth
from pipeline.demo.__main__ import main as microweb_main
from pipeline.demo.reddit_dump import CUTOFF, MONTHS, SNAPSHOT_MONTHS
from pipeline.demo.server import SiteIndex
from pipeline.demo.text import jaccard, shingles
from pipeline.links.submissions import MalformedSubmission, iter_lines, parse_submission
from pipeline.urls import LinkFilter
from tests.conftest import DEMO_CONFIG, REPO, require_shared


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("microweb-demo")
    generate(str(out), seed=1234)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("microweb-tiny")
    generate(str(out), seed=7, scale="tiny")
    return out


@pytest.fixture(scope="module")
def web(tiny: Path):
    with MicroWeb(tiny / "site") as server:
        yield server


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def dump_records(root: Path, name: str) -> list[dict]:
    data = (root / name).read_bytes()
    text = zstandard.ZstdDecompressor(max_window_size=2**31).decompressobj().decompress(data)
    out = []
    for line in text.decode().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def all_records(root: Path) -> list[dict]:
    truth = load_ground_truth(root)
    return [r for name in truth.dump_files for r in dump_records(root, name)]


# --- determinism -------------------------------------------------------------------------


def test_same_seed_writes_identical_files(demo: Path, tmp_path: Path):
    generate(str(tmp_path), seed=1234)
    assert file_hashes(tmp_path) == file_hashes(demo)


def test_different_seed_writes_different_files(tiny: Path, tmp_path: Path):
    again = tmp_path / "again"
    other = tmp_path / "other"
    generate(str(again), seed=7, scale="tiny")
    generate(str(other), seed=8, scale="tiny")
    assert file_hashes(again) == file_hashes(tiny)
    tiny_hashes, other_hashes = file_hashes(tiny), file_hashes(other)
    for name in ("ground_truth.json", "site/routes.json", "dumps/RS_2014-05.zst"):
        assert tiny_hashes[name] != other_hashes[name], name


def test_generate_replaces_an_earlier_run(tmp_path: Path):
    generate(str(tmp_path), seed=1, scale="tiny")
    first = file_hashes(tmp_path)
    generate(str(tmp_path), seed=2, scale="tiny")
    generate(str(tmp_path), seed=1, scale="tiny")
    assert file_hashes(tmp_path) == first  # no file of seed 2 is left behind


def test_unknown_scale_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown scale"):
        generate(str(tmp_path), seed=1, scale="huge")


# --- the dump ----------------------------------------------------------------------------


def test_dumps_need_a_long_zstd_window(demo: Path):
    truth = load_ground_truth(demo)
    assert len(truth.dump_files) == len(MONTHS)
    for name in truth.dump_files:
        data = (demo / name).read_bytes()
        params = zstandard.get_frame_parameters(data)
        assert params.window_size == 2**31
        assert params.content_size == zstandard.CONTENTSIZE_UNKNOWN
        with pytest.raises(zstandard.ZstdError, match="too much memory"):
            zstandard.ZstdDecompressor(max_window_size=2**27).decompressobj().decompress(data)
        text = zstandard.ZstdDecompressor(max_window_size=2**31).decompressobj().decompress(data)
        assert text.endswith(b"\n")


def test_dump_lines_and_submissions_add_up(demo: Path):
    truth = load_ground_truth(demo)
    lines = 0
    for name in truth.dump_files:
        lines += sum(1 for _ in iter_lines(str(demo / name)))
    assert lines == truth.dump_lines == truth.submissions_total + truth.malformed_lines
    assert 3000 <= truth.submissions_total <= 5000
    assert sum(truth.submissions_by_reason.values()) == truth.submissions_total


def test_dump_field_sets_follow_the_eras(demo: Path):
    for month, era in MONTHS:
        records = dump_records(demo, f"dumps/RS_{month}.zst")
        submissions = [r for r in records if isinstance(r.get("id"), str) and "created_utc" in r]
        assert submissions, month
        for r in submissions:
            if era == "early":
                assert "ups" in r and not {"score", "is_self", "domain", "over_18"} & set(r)
            else:
                assert {"score", "is_self", "over_18", "domain"} <= set(r)
            if era == "middle-str":
                assert isinstance(r["created_utc"], str)
            if era == "late":
                assert "removed_by_category" in r
                assert r["is_self"] or "url_overridden_by_dest" in r
        created = [int(r["created_utc"]) for r in submissions]
        assert created == sorted(created)  # like the real monthly files
        lags = {
            r["retrieved_on"] - int(r["created_utc"]) for r in submissions if "retrieved_on" in r
        }
        if month in SNAPSHOT_MONTHS:  # read minutes after posting, as Pushshift's live ingest
            assert lags and max(lags) < 3600
        elif era != "early":
            assert lags == {86400 * 30}
        assert all((c >= CUTOFF) == (month >= "2018-01") for c in created), month


def test_dump_plants_every_case_the_links_stage_handles(demo: Path):
    records = all_records(demo)
    urls = [r.get("url_overridden_by_dest") or r.get("url") or "" for r in records]
    scores = [r.get("score", r.get("ups")) for r in records]
    assert any(s < 3 for s in scores) and any(s >= 3 for s in scores)
    assert any(r.get("over_18") is True for r in records)
    assert any(r.get("is_self") is True for r in records)
    assert any("/comments/" + r["id"] in r["url"] for r in records if "is_self" not in r)
    assert any(r.get("selftext") in ("[removed]", "[deleted]") for r in records)
    assert any(r.get("author") == "[deleted]" and r.get("is_self") is False for r in records)
    assert any(r.get("removed_by_category") == "moderator" for r in records)
    assert any(r.get("crosspost_parent", "").startswith("t3_") for r in records)
    assert any(r["url"].startswith("/r/") for r in records if r.get("crosspost_parent"))
    for needle in ("imgur.com", "youtube.com", "youtu.be", ".jpg", "reddit.com/r/", "redd.it"):
        assert any(needle in u for u in urls), needle
    for needle in ("en.wikipedia.org", "de.m.wikipedia.org", "wiktionary.org"):
        assert any(needle in u for u in urls), needle
    for needle in ("https://", "://www.", "#", "utm_", ":80/", "xn--", "bücher-"):
        assert any(needle in u for u in urls), needle
    created = [int(r.get("created_utc", 0)) for r in records]
    assert CUTOFF in created and CUTOFF - 1 in created  # the last second in, the next out


def test_malformed_lines_go_to_the_dead_letter_path(demo: Path):
    truth = load_ground_truth(demo)
    reasons: dict[str, int] = defaultdict(int)
    for name in truth.dump_files:
        for number, line in iter_lines(str(demo / name)):
            try:
                parse_submission(line, name, number)
            except MalformedSubmission as e:
                reasons[e.reason] += 1
    assert dict(reasons) == truth.malformed_by_reason
    assert set(reasons) == {"not_json", "not_object", "wrong_type", "missing_field"}


# --- the ground truth --------------------------------------------------------------------


def links_stage_by_hand(root: Path) -> tuple[dict[str, int], set[str], dict[str, int], dict]:
    """The demo config's link rules applied per submission, with the project's parser and
    URL normalization: (submissions per reason, qualifying URLs, summed karma, posted URLs)."""
    config = load(DEMO_CONFIG)
    link_filter = LinkFilter.from_config(config.links)
    truth = load_ground_truth(root)
    reasons: dict[str, int] = defaultdict(int)
    qualifying: set[str] = set()
    karma: dict[str, int] = defaultdict(int)
    posted: dict[str, list[str]] = defaultdict(list)
    for name in truth.dump_files:
        for number, line in iter_lines(str(root / name)):
            try:
                s = parse_submission(line, name, number)
            except MalformedSubmission:
                continue
            if s.is_self:
                reasons["self"] += 1
            elif s.over_18:
                reasons["nsfw"] += 1
            elif s.created_utc >= CUTOFF:
                reasons["out_of_dates"] += 1
            else:
                normalized, why = link_filter.check(s.url)
                if why:
                    reasons[why] += 1
                    continue
                karma[normalized] += s.score
                if s.score < config.links.min_karma:
                    reasons["below_karma"] += 1
                    continue
                reasons["qualifying"] += 1
                qualifying.add(normalized)
                posted[normalized].append(s.url)
    return dict(reasons), qualifying, dict(karma), posted


def test_ground_truth_matches_the_link_rules(demo: Path):
    truth = load_ground_truth(demo)
    reasons, qualifying, karma, _ = links_stage_by_hand(demo)
    assert reasons == truth.submissions_by_reason
    normalize = LinkFilter.from_config(load(DEMO_CONFIG).links).normalize
    assert qualifying == {normalize(link.url) for link in truth.links}
    assert len(qualifying) == truth.links_qualifying
    assert sum(1 for k in karma.values() if k >= 3) == truth.links_qualifying_per_url


def test_every_link_has_a_plain_http_url_first(demo: Path):
    # the micro-web has no TLS: a fetcher that requests a link's first (sorted) URL gets http
    _, _, _, posted = links_stage_by_hand(demo)
    assert all(min(urls).startswith("http://") for urls in posted.values())


def test_ground_truth_adds_up(demo: Path):
    truth = load_ground_truth(demo)
    assert sum(truth.fetch_outcomes.values()) == truth.links_qualifying == len(truth.links)
    assert truth.pages_ok == truth.fetch_outcomes["ok"]
    assert truth.wikipedia_after_redirect == truth.fetch_outcomes["redirect_wikipedia"]
    clusters = truth.exact_clusters + truth.near_clusters
    assert truth.removed_as_duplicates == sum(len(c) - 1 for c in clusters)
    assert truth.documents_written == (
        truth.pages_ok - truth.short_pages - truth.non_english_pages - truth.removed_as_duplicates
    )
    by_url = {link.url: link for link in truth.links}
    for cluster in clusters:
        assert [by_url[u].fate for u in cluster] == ["kept"] + ["duplicate"] * (len(cluster) - 1)
        assert len({urlsplit(u).hostname for u in cluster}) == len(cluster)  # other hosts
    assert 250 <= truth.pages_total <= 500
    assert truth.hosts_total >= 60


def test_ground_truth_round_trips_through_json(demo: Path):
    truth = load_ground_truth(demo)
    assert json.loads(truth.to_json()) == json.loads((demo / "ground_truth.json").read_text())


def follow(index: SiteIndex, url: str, limit: int = 20):
    """(final URL, route, hops) by the routes alone, as a fetcher would see them."""
    seen = set()
    for hops in range(limit):
        parts = urlsplit(url)
        route = index.lookup(parts.netloc, parts.path + (f"?{parts.query}" if parts.query else ""))
        if route is None or route.location is None:
            return url, route, hops
        if url in seen:
            return url, route, -1
        seen.add(url)
        url = urljoin(url, route.location)
    return url, None, limit


def test_site_serves_what_the_ground_truth_says(demo: Path):
    truth = load_ground_truth(demo)
    index = SiteIndex(demo / "site")
    for link in truth.links:
        final, route, hops = follow(index, link.url)
        html_200 = route is not None and route.status == 200
        html_200 = html_200 and route.content_type.startswith("text/html")
        if link.outcome == "ok":
            assert html_200 and route.delay_s == 0 and final == link.final_url, link
            assert hops == link.redirects
        elif link.outcome == "redirect_wikipedia":
            assert html_200 and "wikipedia.org" in urlsplit(final).hostname
        elif link.outcome == "redirect_loop":
            assert hops == -1
        elif link.outcome == "too_many_redirects":
            assert hops > load(DEMO_CONFIG).fetch.max_redirects
        elif link.outcome == "timeout":
            assert html_200 and route.delay_s > load(DEMO_CONFIG).fetch.total_timeout_s
        elif link.outcome == "robots":
            robots = index.lookup(urlsplit(link.url).netloc, "/robots.txt")
            assert "Disallow: /private/" in robots.body.decode()
            assert urlsplit(link.url).path.startswith("/private/")
        elif link.outcome == "non_html":
            assert route.content_type in ("application/pdf", "image/jpeg")
        elif link.outcome == "redirect_blocked":
            assert route.content_type == "image/jpeg"
        else:
            status = {"not_found": 404, "gone": 410, "server_error": 500}[link.outcome]
            assert route.status == status


def article_text(index: SiteIndex, url: str) -> str:
    _, route, _ = follow(index, url)
    charset = (
        route.content_type.split("charset=")[-1] if "charset=" in route.content_type else "utf-8"
    )
    page = route.body.decode(charset)
    return "\n\n".join(html.unescape(p) for p in re.findall(r"<p>(.*?)</p>", page, re.S))


def test_duplicate_clusters_are_near_and_other_pages_are_far(demo: Path):
    truth = load_ground_truth(demo)
    index = SiteIndex(demo / "site")
    threshold = load(DEMO_CONFIG).dedup.threshold
    for cluster in truth.near_clusters:
        kept = article_text(index, cluster[0])
        for url in cluster[1:]:
            text = article_text(index, url)
            assert text != kept and jaccard(text, kept) >= threshold + 0.1
    for cluster in truth.exact_clusters:
        assert len({article_text(index, u) for u in cluster}) == 1
    kept = [shingles(article_text(index, link.url)) for link in truth.links if link.fate == "kept"]
    worst = max(
        len(a & b) / len(a | b) for i, a in enumerate(kept) for b in kept[i + 1 :] if a and b
    )
    assert worst < 0.5  # no accidental near-duplicates outside the planted clusters


def test_page_lengths_and_languages_match_their_fates(demo: Path):
    import py3langid

    from pipeline.bpe import load_gpt2

    ranks = require_shared("tokenizers", "r50k_base.tiktoken")
    config = load(DEMO_CONFIG, [f'tokenizer.ranks_file="{ranks}"'])
    encoding = load_gpt2(config.tokenizer)
    truth = load_ground_truth(demo)
    index = SiteIndex(demo / "site")
    for link in truth.links:
        if link.outcome != "ok":
            continue
        text = article_text(index, link.url)
        tokens = len(encoding.encode_ordinary(text))
        language, _ = py3langid.classify(text)
        if link.fate == "too_short":
            assert tokens < config.build.min_tokens - 20 and language == "en", link
        elif link.fate == "non_english":
            assert language in ("de", "fr") and tokens > config.build.min_tokens, link
        else:
            assert tokens > config.build.min_tokens + 100 and language == "en", link


# --- the server over real loopback HTTP --------------------------------------------------


def get(
    web: MicroWeb, host: str, target: str, method: str = "GET", timeout: float = 5.0
) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=timeout)
    conn.request(method, target, headers={"Host": host})
    return conn.getresponse()


def planted(root: Path, outcome: str, fate: str | None = None):
    truth = load_ground_truth(root)
    return next(
        link for link in truth.links if link.outcome == outcome and fate in (None, link.fate)
    )


def test_server_answers_by_host_header(tiny: Path, web: MicroWeb):
    link = planted(tiny, "ok", "kept")
    parts = urlsplit(link.url)
    response = get(web, parts.netloc, parts.path)
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/html; charset=utf-8"
    body = response.read()
    assert int(response.getheader("Content-Length")) == len(body) and b"<p>" in body
    other_host = "no-such-host.example"
    assert get(web, other_host, parts.path).status == 404
    assert web.requests[-2:] == [(parts.netloc, parts.path, 200), (other_host, parts.path, 404)]


def test_server_forgives_what_normalization_forgives(tiny: Path, web: MicroWeb):
    link = planted(tiny, "ok", "kept")
    parts = urlsplit(link.url)
    path = parts.path.rstrip("/")
    for host, target in [
        (f"www.{parts.netloc}", parts.path),
        (f"{parts.netloc.upper()}:80", parts.path),
        (parts.netloc, f"{path}/?utm_source=reddit&fbclid=x1"),
        (parts.netloc, path),
    ]:
        assert get(web, host, target).status == 200, (host, target)


def test_server_redirects_and_fails_as_planted(tiny: Path, web: MicroWeb):
    for outcome, status in [("not_found", 404), ("gone", 410), ("server_error", 500)]:
        parts = urlsplit(planted(tiny, outcome).url)
        assert get(web, parts.netloc, parts.path).status == status
    link = planted(tiny, "redirect_wikipedia")
    parts = urlsplit(link.url)
    response = get(web, parts.netloc, parts.path)
    assert response.status == 301 and response.getheader("Location") == link.final_url
    wiki = urlsplit(link.final_url)
    assert b"From Wikipedia" in get(web, wiki.netloc, wiki.path).read()
    loop = urlsplit(planted(tiny, "redirect_loop").url)
    response = get(web, loop.netloc, loop.path)
    assert response.status == 302 and response.getheader("Location") != loop.path


def test_server_sends_non_html_content_types(tiny: Path, web: MicroWeb):
    types = set()
    for link in load_ground_truth(tiny).links:
        if link.outcome == "non_html":
            parts = urlsplit(link.url)
            response = get(web, parts.netloc, parts.path)
            types.add(response.getheader("Content-Type"))
            body = response.read()
            assert body.startswith((b"%PDF", b"\xff\xd8\xff"))
    assert types == {"application/pdf", "image/jpeg"}


def test_server_serves_robots_txt(tiny: Path, web: MicroWeb):
    host = urlsplit(planted(tiny, "robots").url).netloc
    response = get(web, host, "/robots.txt")
    assert response.status == 200 and response.getheader("Content-Type") == "text/plain"
    assert b"Disallow: /private/" in response.read()


def test_server_keeps_connections_alive_and_answers_head(tiny: Path, web: MicroWeb):
    link = planted(tiny, "ok", "kept")
    parts = urlsplit(link.url)
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=5)
    conn.request("HEAD", parts.path, headers={"Host": parts.netloc})
    head = conn.getresponse()
    assert head.status == 200 and head.read() == b"" and int(head.getheader("Content-Length")) > 0
    conn.request("GET", parts.path, headers={"Host": parts.netloc})  # same socket
    assert conn.getresponse().read().startswith(b"<!DOCTYPE html>")
    conn.close()


def test_slow_page_outlasts_a_client_deadline_and_stop_is_prompt(tiny: Path):
    link = planted(tiny, "timeout")
    parts = urlsplit(link.url)
    web = MicroWeb(tiny / "site").start()
    try:
        with pytest.raises((TimeoutError, socket.timeout)):
            get(web, parts.netloc, parts.path, timeout=0.5).read()
        other = urlsplit(planted(tiny, "ok", "kept").url)
        assert get(web, other.netloc, other.path).status == 200  # others are still served
    finally:
        started = time.monotonic()
        web.stop()
    assert time.monotonic() - started < 2.0  # the sleeping handler does not hold it up


def test_missing_site_says_how_to_make_one(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="pipeline.demo generate"):
        MicroWeb(tmp_path)


# --- the command line --------------------------------------------------------------------


def test_generate_command_prints_the_plan(tmp_path: Path, capsys: pytest.CaptureFixture):
    assert microweb_main(["generate", str(tmp_path), "--seed", "3", "--scale", "tiny"]) == 0
    truth = load_ground_truth(tmp_path)
    assert f"{truth.links_qualifying} qualifying links" in capsys.readouterr().out


def test_serve_command_writes_its_port_and_stops_on_sigterm(tiny: Path, tmp_path: Path):
    port_file = tmp_path / "port"
    command = [sys.executable, "-m", "pipeline.demo", "serve", str(tiny / "site")]
    process = subprocess.Popen(
        [*command, "--port", "0", "--port-file", str(port_file)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() and time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.05)
        port = int(port_file.read_text())
        host = urlsplit(planted(tiny, "robots").url).netloc
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/robots.txt", headers={"Host": host})
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
