"""`webtext rescore`'s own cost per 1,000 ids, against the loopback Reddit API's latency.

    python -m bench.rescore_overhead                 # 20,000 ids, 3 rounds
    python -m bench.rescore_overhead --ids 5000 --rounds 1

The loopback server (tests/reddit_api_server.py) answers /api/info in this process. Per
round, on the same ids, 100 a call:

- anchor: raw GETs of /api/info with a bearer token (requests.Session, no PRAW): the API's
  latency as the client sees it, server time included;
- PRAW: `reddit.info(fullnames=...)` and the fields read (rescore.fetch_batch), unpaced;
- rescore: ask_all as `webtext rescore` runs it (pacer, retries, one SQLite transaction a
  call), with an unbounded quota so that only its own time shows, then write_scores.

Overhead = rescore - anchor, per 1,000 ids (10 calls); at Reddit's quota of 100 calls a
minute 1,000 ids take 6 s of pacing alone. Medians over the rounds are printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import requests

from pipeline.links import reddit_api, rescore
from tests.reddit_api_server import TOKEN, RedditApiServer, RedditState, make_submission


def anchor(server: RedditApiServer, batches: list[list[str]]) -> float:
    session = requests.Session()
    session.headers["Authorization"] = f"bearer {TOKEN}"
    started = time.perf_counter()
    for ids in batches:
        response = session.get(
            f"{server.url}/api/info", params={"id": ",".join(f"t3_{i}" for i in ids)}
        )
        response.raise_for_status()
        response.json()
    return time.perf_counter() - started


def praw_only(reddit, batches: list[list[str]]) -> float:
    started = time.perf_counter()
    for ids in batches:
        rescore.fetch_batch(reddit, ids)
    return time.perf_counter() - started


def full_rescore(reddit, ids: list[str], workdir: Path) -> tuple[float, float]:
    """(ask_all seconds, write_scores seconds) on a fresh progress file."""
    progress = rescore.Progress(str(workdir / f"progress-{time.monotonic_ns()}.sqlite"))
    progress.add_ids(ids, "bench")
    started = time.perf_counter()
    rescore.ask_all(reddit, progress, rescore.Pacer(1e9))
    asked = time.perf_counter()
    rescore.write_scores(progress, str(workdir / "scores.parquet"))
    written = time.perf_counter()
    progress.close()
    return asked - started, written - asked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    things = [make_submission(i, "news") for i in range(args.ids)]
    ids = [t["id"] for t in things]
    batches = [ids[i : i + rescore.BATCH] for i in range(0, len(ids), rescore.BATCH)]
    per_k = 1000 / args.ids
    figures: dict[str, list[float]] = {"anchor": [], "praw": [], "rescore": [], "write": []}
    state = RedditState(things={t["id"]: t for t in things}, ratelimit_remaining=1e12)
    with RedditApiServer(state) as server:  # a window that never runs out: no PRAW sleeps
        reddit = reddit_api.make_reddit("webtext", server.praw_settings())
        praw_only(reddit, batches[:2])  # the OAuth token and connection, once
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.rounds):
                figures["anchor"].append(anchor(server, batches) * per_k)
                figures["praw"].append(praw_only(reddit, batches) * per_k)
                ask_s, write_s = full_rescore(reddit, ids, Path(tmp))
                figures["rescore"].append(ask_s * per_k)
                figures["write"].append(write_s * per_k)
    median = {k: round(statistics.median(v) * 1000, 1) for k, v in figures.items()}
    report = {
        "ids": args.ids,
        "rounds": args.rounds,
        "ms_per_1000_ids": median,
        "overhead_ms_per_1000_ids": round(median["rescore"] - median["anchor"], 1),
        "of_which_praw_ms": round(median["praw"] - median["anchor"], 1),
        "pacing_at_quota_ms_per_1000_ids": 1000 / rescore.BATCH * 60_000 / 100,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
