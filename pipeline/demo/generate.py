"""Generate the micro-web: a synthetic Reddit dump, the web it links to, and the ground truth.

    truth = generate("demo-data/microweb", seed=1234)

writes, all derived from the seed (and the installed Python's documentation, the text):

    OUT/dumps/RS_YYYY-MM.zst    Pushshift-format monthly submission dumps, zstd with a 2 GiB
                                window (readers need max_window_size=2**31, like the real ones)
    OUT/site/routes.json        every host + path the server answers, with status, headers,
                                delay, redirect target and body file
    OUT/site/bodies/...         the bodies: HTML pages, a PDF, JPEGs, robots.txt files
    OUT/ground_truth.json       what was planted (`GroundTruth`), for tests to compare with

Every non-qualifying submission is planted with exactly one reason to drop it, so the links
stage's per-reason counters can be compared with `GroundTruth.submissions_by_reason`
whatever order the filters run in. docs/demo.md lists the rules the truth assumes.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path

from pipeline.demo.ground_truth import GROUND_TRUTH_FILE, GroundTruth
from pipeline.demo.planter import Planter
from pipeline.demo.reddit_dump import MONTHS, dump_lines, write_dump
from pipeline.demo.scales import SCALES


def generate(out_dir: str, seed: int, scale: str = "demo") -> GroundTruth:
    """Write the dump, the site and the ground truth under out_dir (a local folder)."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    out = Path(out_dir)
    for sub in ("dumps", "site"):
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / "dumps").mkdir(parents=True, exist_ok=True)
    (out / "site").mkdir(parents=True, exist_ok=True)

    planter = Planter(seed, SCALES[scale])
    planter.plant_articles()
    for i, size in enumerate(planter.scale.near_clusters):
        planter.plant_cluster(size, "near", i)
    for i, size in enumerate(planter.scale.exact_clusters):
        planter.plant_cluster(size, "exact", i)
    planter.plant_redirects()
    planter.plant_redirects_away()
    planter.plant_special_pages()
    planter.plant_query_and_idn_pages()
    planter.plant_wikipedia_pages()
    planter.plant_non_qualifying()

    by_month, malformed = dump_lines(planter.postings, planter.hosts, planter.rng)
    dump_files = []
    for index, lines in by_month.items():
        name = f"dumps/RS_{MONTHS[index][0]}.zst"
        write_dump(out / name, lines)
        dump_files.append(name)
    planter.site.write(out / "site")

    truth = _ground_truth(planter, seed, scale, dump_files, by_month, malformed)
    (out / GROUND_TRUTH_FILE).write_text(truth.to_json(), encoding="utf-8")
    return truth


def _ground_truth(
    planter: Planter,
    seed: int,
    scale: str,
    dump_files: list[str],
    by_month: dict[int, list[str]],
    malformed: Counter,
) -> GroundTruth:
    links = planter.links
    outcomes = Counter(link.outcome for link in links)
    fates = Counter(link.fate for link in links)
    reasons = Counter(p.reason for p in planter.postings)
    hosts = {route["host"] for route in planter.site.routes.values()}
    return GroundTruth(
        seed=seed,
        scale=scale,
        python=sys.version.split()[0],
        dump_files=dump_files,
        dump_lines=sum(len(lines) for lines in by_month.values()),
        submissions_total=len(planter.postings),
        malformed_lines=sum(malformed.values()),
        malformed_by_reason=dict(sorted(malformed.items())),
        submissions_by_reason=dict(sorted(reasons.items())),
        removed_marked=sum(1 for p in planter.postings if p.removed),
        crossposts=sum(1 for p in planter.postings if p.crosspost_of is not None),
        links_qualifying=len(links),
        links_qualifying_per_url=len(links) + planter.scale.split_karma,
        fetch_outcomes=dict(sorted(outcomes.items())),
        pages_ok=outcomes["ok"],
        wikipedia_after_redirect=outcomes["redirect_wikipedia"],
        short_pages=fates["too_short"],
        non_english_pages=fates["non_english"],
        exact_clusters=planter.exact_clusters,
        near_clusters=planter.near_clusters,
        removed_as_duplicates=fates["duplicate"],
        documents_written=fates["kept"],
        pages_total=planter.site.pages_total,
        hosts_total=len(hosts),
        links=sorted(links, key=lambda link: link.url),
    )
