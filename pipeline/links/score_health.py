"""Score health per month: do a dump's scores look settled, or like early snapshots?

Pushshift read most submissions minutes after they were posted, when nearly every score is
still 1; Arctic Shift reads each one again about 36 hours later. A month read that early
undercounts karma, so the >= min_karma rule drops links the paper kept. For each month of
link posts (not self posts) this keeps a bounded histogram of scores and of retrieval lags
(retrieved - created, in whole hours), so exact quantiles come out without holding the
posts: MonthHealth instances merge (Beam combines them per month), and `report` judges a
month against the `[links]` snapshot thresholds.
"""

from __future__ import annotations

import calendar
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.config import LinksConfig
from pipeline.links.submissions import Submission

SCORE_FLOOR = -100  # lower scores count as this one: the histogram stays bounded
SCORE_CAP = 1000  # higher scores count as this one; a quantile of 1000 reads "1000 or more"
LAG_CAP_HOURS = 24 * 365  # lags of a year or more share one bucket
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


@dataclass(frozen=True)
class SnapshotThresholds:
    """When a month looks like early snapshots; configs/webtext.toml gives the reasons."""

    max_lag_hours: int  # a lag under this is short
    short_lag_share: float  # flagged above this share of short lags among dated posts
    low_score_share: float  # flagged above this share of posts with score <= 1

    @classmethod
    def from_config(cls, links: LinksConfig) -> SnapshotThresholds:
        return cls(
            links.snapshot_max_lag_hours,
            links.snapshot_short_lag_share,
            links.snapshot_low_score_share,
        )


class MonthHealth:
    """Link posts of one month: counts by score and by retrieval lag in hours."""

    __slots__ = ("posts", "scores", "lag_hours")

    def __init__(self) -> None:
        self.posts = 0
        self.scores: dict[int, int] = {}
        self.lag_hours: dict[int, int] = {}

    def add(self, score: int, lag_s: int | None) -> None:
        """Count one link post; this runs once per line of every dump."""
        self.posts += 1
        if not SCORE_FLOOR <= score <= SCORE_CAP:
            score = SCORE_FLOOR if score < SCORE_FLOOR else SCORE_CAP
        scores = self.scores
        scores[score] = scores.get(score, 0) + 1
        if lag_s is not None:
            hours = lag_s // 3600
            if not 0 <= hours <= LAG_CAP_HOURS:
                hours = 0 if hours < 0 else LAG_CAP_HOURS
            lags = self.lag_hours
            lags[hours] = lags.get(hours, 0) + 1

    def merge(self, other: MonthHealth) -> MonthHealth:
        self.posts += other.posts
        for mine, theirs in ((self.scores, other.scores), (self.lag_hours, other.lag_hours)):
            for key, n in theirs.items():
                mine[key] = mine.get(key, 0) + n
        return self

    def report(self, month: str, thresholds: SnapshotThresholds) -> dict[str, Any]:
        """The month's row of the summary's `score_health`, and whether it is flagged."""
        dated = sum(self.lag_hours.values())
        low = sum(n for score, n in self.scores.items() if score <= 1)
        short = sum(n for h, n in self.lag_hours.items() if h < thresholds.max_lag_hours)
        low_share = low / self.posts if self.posts else 0.0
        short_share = short / dated if dated else None
        reasons = []
        if short_share is not None and short_share > thresholds.short_lag_share:
            reasons.append(f"{short_share:.0%} read within {thresholds.max_lag_hours} h")
        if low_share > thresholds.low_score_share:
            reasons.append(f"{low_share:.0%} with score <= 1")
        return {
            "month": month,
            "link_posts": self.posts,
            "score_le_1_share": round(low_share, 4),
            "score_quantiles": {f"p{round(q * 100)}": quantile(self.scores, q) for q in QUANTILES},
            "with_retrieval_time": dated,
            "lag_hours_median": quantile(self.lag_hours, 0.5) if dated else None,
            "short_lag_share": None if short_share is None else round(short_share, 4),
            "snapshot_like": bool(reasons),
            "why": reasons,
        }


def quantile(histogram: dict[int, int], q: float) -> int:
    """The nearest-rank q-quantile of the values a histogram counts (exact below its caps)."""
    total = sum(histogram.values())
    rank = max(1, math.ceil(q * total - 1e-9))
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    raise ValueError("empty histogram")


class ScoreHealth:
    """MonthHealth by month ("YYYY-MM", UTC) for the submissions one source yields.

    Dumps are sorted by time, so the current month's bounds are kept and a month key is
    computed only when a submission falls outside them.
    """

    def __init__(self) -> None:
        self.months: dict[str, MonthHealth] = {}
        self._start = self._end = 0
        self._current = MonthHealth()

    def add(self, sub: Submission) -> None:
        created = sub.created_utc
        if sub.is_self or created is None:
            return
        if not self._start <= created < self._end:
            self._switch(created)
        retrieved = sub.retrieved_utc
        self._current.add(sub.score, None if retrieved is None else retrieved - created)

    def _switch(self, created: int) -> None:
        year, month = time.gmtime(created)[:2]
        key = f"{year:04d}-{month:02d}"
        self._start = calendar.timegm((year, month, 1, 0, 0, 0))
        days = calendar.monthrange(year, month)[1]
        self._end = self._start + days * 86400
        self._current = self.months.setdefault(key, MonthHealth())


def health_report(
    months: Iterable[tuple[str, MonthHealth]], thresholds: SnapshotThresholds
) -> tuple[list[dict[str, Any]], str | None]:
    """(one report per month, oldest first; the one-line warning naming flagged months)."""
    rows = [health.report(month, thresholds) for month, health in sorted(months)]
    flagged = [row["month"] for row in rows if row["snapshot_like"]]
    if not flagged:
        return rows, None
    warning = (
        f"score health: early score snapshots suspected in {', '.join(flagged)} (short "
        f"retrieval lag or mostly score <= 1), so karma there is undercounted; see "
        f'docs/links.md "Karma in 2026" (webtext rescore)'
    )
    return rows, warning


def snapshot_funnel_rows(reports: list[dict[str, Any]]) -> list[list[Any]]:
    """The funnel's row for flagged months: their link posts, whose karma is in doubt."""
    flagged = [row for row in reports if row["snapshot_like"]]
    if not flagged:
        return []
    months = ", ".join(row["month"] for row in flagged)
    return [
        [f"link posts in early-snapshot months ({months})", sum(r["link_posts"] for r in flagged)]
    ]
