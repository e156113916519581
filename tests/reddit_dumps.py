"""Synthetic Pushshift-format submission lines in each field era, for tests and benchmarks.

    early   2006-2010: `ups` instead of `score`; no is_self, domain or over_18;
            created_utc sometimes a string
    middle  2011-2016: score, domain, is_self, over_18, thumbnail, media, gilded ...
    modern  2017-2019: ~80 fields: preview, gildings, all_awardings, crossposts ...
    recent  2020-: url_overridden_by_dest and removed_by_category as well
    arctic  2023-11-: Arctic Shift's dumps, written from its documented format
            (file_content_explanations.md of ArthurHeitmann/arctic_shift): keys sorted,
            `retrieved_on` (its first read, seconds after posting) and `_meta` with
            `retrieved_2nd_on` (the read 36 hours later whose score the record carries),
            `was_deleted_later` / `removal_type`, or `note` = "no_2nd_retrieval"

Every era from middle on says when the score was read: `retrieved_on` 30 days after posting
(Pushshift's re-ingested months), or, with `snapshot=True`, minutes after posting with a
score that is nearly always 1 (Pushshift's live ingest; an Arctic Shift month without its
second read). The generator is seeded; about 70% of submissions have a score below 3, a quarter are
self posts, and link posts reuse a pool of popular URLs in http/https/www/utm variants.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zstandard

ERAS = ("early", "middle", "modern", "recent")  # the Pushshift eras; "arctic" comes after
ERA_START = {"early": 1_150_000_000, "middle": 1_300_000_000, "modern": 1_490_000_000,
             "recent": 1_590_000_000, "arctic": 1_700_000_000}  # fmt: skip
SECOND_READ_S = 36 * 3600  # Arctic Shift's second read
SUBREDDITS = ["news", "worldnews", "science", "programming", "technology", "askscience",
              "pics", "funny", "gaming", "politics", "todayilearned", "history", "books"]  # fmt: skip
NEWS_HOSTS = ["nytimes.com", "bbc.co.uk", "theguardian.com", "github.com", "arstechnica.com",
              "npr.org", "washingtonpost.com", "medium.com", "twitter.com", "reuters.com",
              "blog.google", "nature.com", "wired.com", "theatlantic.com", "vox.com"]  # fmt: skip
MEDIA_URLS = ["https://i.imgur.com/{k}.jpg", "https://www.youtube.com/watch?v={k}",
              "https://i.redd.it/{k}.png", "https://gfycat.com/{k}",
              "https://example-cdn.net/media/{k}.mp4"]  # fmt: skip
WORDS = ("the a of new study shows why how people city government report data science "
         "world first open source year found space climate court history music").split()  # fmt: skip


def _title(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))).capitalize()


def _score(rng: random.Random) -> int:
    if rng.random() < 0.7:
        return rng.choice((0, 1, 1, 1, 2, 2))
    return 3 + int(rng.expovariate(1 / 40))


class DumpGenerator:
    """Seeded stream of dump lines; `popular` URLs are reposted in variant spellings."""

    def __init__(self, seed: int = 0, popular: int = 2000):
        self.rng = random.Random(seed)
        self.popular = [
            f"{self.rng.choice(NEWS_HOSTS)}/{self.rng.randint(2010, 2019)}/"
            f"{'-'.join(self.rng.choice(WORDS) for _ in range(4))}-{i}"
            for i in range(popular)
        ]
        self.count = 0

    def _url(self, sub_id: str, subreddit: str) -> tuple[str, bool]:
        r = self.rng.random()
        if r < 0.25:
            return f"https://www.reddit.com/r/{subreddit}/comments/{sub_id}/post/", True
        if r < 0.45:
            return self.rng.choice(MEDIA_URLS).format(k=sub_id), False
        if r < 0.47:
            return f"https://en.wikipedia.org/wiki/{self.rng.choice(WORDS).title()}", False
        if r < 0.67:
            path = self.rng.choice(self.popular)
            scheme = self.rng.choice(("http://", "https://"))
            www = self.rng.choice(("", "www."))
            tracking = self.rng.choice(("", "", "?utm_source=reddit", "#comments"))
            return f"{scheme}{www}{path}{tracking}", False
        host = self.rng.choice(NEWS_HOSTS)
        return f"https://{host}/a/{sub_id}/{self.rng.choice(WORDS)}", False

    def fields(self, era: str, snapshot: bool = False) -> dict[str, Any]:
        rng = self.rng
        self.count += 1
        sub_id = format(36**5 + self.count * 7919, "x")
        subreddit = rng.choice(SUBREDDITS)
        url, is_self = self._url(sub_id, subreddit)
        score = _score(rng)
        if snapshot:
            score = 1 if rng.random() < 0.97 else 2
        created = ERA_START[era] + self.count * 17
        title = _title(rng)
        host = url.split("/")[2]
        domain = f"self.{subreddit}" if is_self else host.removeprefix("www.")
        base: dict[str, Any] = {
            "id": sub_id,
            "name": f"t3_{sub_id}",
            "author": f"user_{rng.randint(1, 50000)}",
            "subreddit": subreddit,
            "title": title,
            "url": url,
            "permalink": f"/r/{subreddit}/comments/{sub_id}/post/",
            "num_comments": rng.randint(0, 300),
            "selftext": _title(rng) * rng.randint(1, 4) if is_self else "",
        }
        if era == "early":
            base.update(
                created_utc=str(created) if rng.random() < 0.5 else created,
                ups=score,
                downs=0,
            )
            return base
        nsfw = rng.random() < 0.03
        base.update(
            created_utc=created,
            score=score,
            ups=score,
            downs=0,
            domain=domain,
            is_self=is_self,
            over_18=nsfw,
            thumbnail="self" if is_self else "default",
            media=None,
            secure_media=None,
            media_embed={},
            secure_media_embed={},
            stickied=False,
            gilded=0,
            edited=False,
            distinguished=None,
            link_flair_text=None,
            link_flair_css_class=None,
            author_flair_text=None,
            author_flair_css_class=None,
            retrieved_on=created + 86400 * 30,
            subreddit_id=f"t5_{rng.randint(10000, 99999):x}",
            archived=False,
            locked=False,
            hide_score=False,
            quarantine=False,
            spoiler=False,
            contest_mode=False,
            is_video=False,
        )
        if era in ("modern", "recent", "arctic"):
            base.update(
                all_awardings=[],
                gildings={},
                awarders=[],
                can_gild=True,
                category=None,
                content_categories=None,
                is_crosspostable=True,
                is_meta=False,
                is_original_content=False,
                is_reddit_media_domain=False,
                is_robot_indexable=True,
                link_flair_richtext=[],
                link_flair_type="text",
                author_flair_richtext=[],
                author_flair_type="text",
                author_fullname=f"t2_{rng.randint(1, 10**8):x}",
                author_patreon_flair=False,
                no_follow=score < 3,
                num_crossposts=0,
                over_18=nsfw,
                parent_whitelist_status="all_ads",
                pinned=False,
                pwls=6,
                wls=6,
                whitelist_status="all_ads",
                send_replies=True,
                subreddit_subscribers=rng.randint(1000, 2 * 10**7),
                subreddit_type="public",
                suggested_sort=None,
                total_awards_received=0,
                treatment_tags=[],
                upvote_ratio=round(rng.uniform(0.5, 1.0), 2),
                full_link=f"https://www.reddit.com/r/{subreddit}/comments/{sub_id}/post/",
                created=created,
            )
            if not is_self and rng.random() < 0.5:
                base["preview"] = {
                    "enabled": False,
                    "images": [
                        {
                            "id": f"img{sub_id}",
                            "source": {
                                "url": f"https://external-preview.redd.it/{sub_id}.jpg",
                                "width": 640,
                                "height": 480,
                            },  # fmt: skip
                            "resolutions": [],
                            "variants": {},
                        }
                    ],
                }
            if rng.random() < 0.02:
                base["crosspost_parent"] = f"t3_{format(36**5 + rng.randint(1, 10**6), 'x')}"
                base["crosspost_parent_list"] = [{"id": "x", "score": 999, "url": url}]
        if snapshot:
            base["retrieved_on"] = created + rng.randint(5, 900)
        if era in ("recent", "arctic"):
            if not is_self:
                base["url_overridden_by_dest"] = url
            r = rng.random()
            if r < 0.05:
                base["removed_by_category"] = "moderator"
                base["selftext"] = "[removed]" if is_self else ""
            elif r < 0.08:
                base["removed_by_category"] = "deleted"
                base["selftext"] = "[deleted]" if is_self else ""
            else:
                base["removed_by_category"] = None
        if era == "arctic":
            return self._arctic(base, created, snapshot)
        return base

    def _arctic(self, base: dict[str, Any], created: int, snapshot: bool) -> dict[str, Any]:
        """An Arctic Shift record: the first read's time, then `_meta` about the second."""
        rng = self.rng
        base["retrieved_on"] = created + rng.randint(5, 120)
        if snapshot:
            base["_meta"] = {"note": "no_2nd_retrieval"}
        else:
            meta: dict[str, Any] = {
                "retrieved_2nd_on": created + SECOND_READ_S + rng.randint(0, 600)
            }
            if rng.random() < 0.05:
                meta.update(was_deleted_later=True, removal_type="moderator")
            base["_meta"] = meta
        return dict(sorted(base.items()))

    def lines(
        self, n: int, eras: tuple[str, ...] = ERAS, snapshot: bool = False
    ) -> Iterator[bytes]:
        for i in range(n):
            era = eras[i * len(eras) // max(n, 1)]
            yield json.dumps(self.fields(era, snapshot)).encode() + b"\n"


def write_dump(path: Path, lines: list[bytes] | Iterator[bytes], threads: int = 0) -> Path:
    """Write lines compressed by the path suffix: .zst (256 MiB window, as the real dumps need
    more than zstd's default decoder limit), .bz2, .xz, .gz, or plain."""
    suffix = path.suffix
    if suffix == ".zst":
        params = zstandard.ZstdCompressionParameters.from_level(
            3, window_log=28, threads=threads, enable_ldm=True
        )
        with (
            path.open("wb") as raw,
            zstandard.ZstdCompressor(compression_params=params).stream_writer(raw) as out,
        ):
            for line in lines:
                out.write(line)
        return path
    opener = {".bz2": bz2.open, ".xz": lzma.open, ".gz": gzip.open}.get(suffix, open)
    with opener(path, "wb") as out:
        for line in lines:
            out.write(line)
    return path
