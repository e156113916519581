"""What a rerun of the fetch stage does with the log rows already committed.

A link's committed rows (usually one; more after a retried bundle or a retry) stand for it
through `best_row`. `link_to_fetch` decides from that row whether a rerun fetches the link
again: never fetched, deferred by a host budget, or, with `fetch.retry_failed`, a transient
failure. A retried link carries `retry_round` = the old row's + 1, so its new row replaces
the old one in the consolidated log.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.fetch.records import DEFERRED

# Outcomes that may go another way on another day; the rest (404/410, robots, blocked
# addresses, TLS errors, wrong type, ...) are permanent and never retried.
TRANSIENT_OUTCOMES = {"timeout", "connection_error", "http_5xx"}


def best_row(rows: Iterable[dict]) -> dict:
    """The row that stands for a URL logged more than once: a deferral only when there is
    nothing else, a stored page first (a retried bundle), then the latest retry round."""
    return min(
        rows,
        key=lambda r: (
            r["outcome"] == DEFERRED,
            r["outcome"] != "ok",
            -(r.get("retry_round") or 0),
            str(r["warc_file"] or ""),
            r["url"],
        ),
    )


def is_transient(row: dict) -> bool:
    return row["outcome"] in TRANSIENT_OUTCOMES or row.get("status") == 429


def link_to_fetch(link: dict, done_rows: list[dict], retry_failed: bool) -> dict | None:
    """The link to fetch in this run, with its retry round; None when it is done."""
    if not done_rows:
        return {**link, "retry_round": 0}
    last = best_row(done_rows)
    round_ = last.get("retry_round") or 0
    if last["outcome"] == DEFERRED:
        return {**link, "retry_round": round_}
    if retry_failed and is_transient(last):
        return {**link, "retry_round": round_ + 1}
    return None


def as_current(row: dict) -> dict:
    """A committed row with the columns added since it was written (FETCH v1 parts)."""
    return {"tls_verified": None, "retry_round": 0, **row}
