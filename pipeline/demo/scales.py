"""How much of each thing the micro-web plants: `SCALES["demo"]` for the demo, `"tiny"` for
fast tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    hosts: int
    articles: int  # plain articles, each its own qualifying link
    near_clusters: tuple[int, ...]  # sizes: an original plus near copies on other hosts
    exact_clusters: tuple[int, ...]  # sizes: an original plus exact copies on other hosts
    redirects: int  # links that redirect (1-3 hops) to an article
    query_pages: int  # ?t=N pages of a forum: a query that selects content
    idn_pages: int  # pages on an internationalized host name
    short_pages: int
    non_english: int  # at most len(FOREIGN_TEXTS)
    robots_disallowed: int
    slow: int
    not_found: int
    gone: int
    server_error: int
    pdf: int
    jpeg: int
    redirect_wikipedia: int
    redirect_blocked: int  # into an image host
    redirect_loops: int
    redirect_too_long: int
    wikipedia_pages: int  # pages served on Wikipedia hosts and linked directly
    # submissions that must not qualify, one reason each
    below_karma: int
    split_karma: int  # URLs posted twice with score 2: qualify only under karma_rule=per_url
    nsfw: int
    self_posts: int
    media: int
    reddit_internal: int
    wikipedia: int
    after_date: int


SCALES: dict[str, Scale] = {
    "demo": Scale(
        hosts=64,
        articles=190,
        near_clusters=(3, 3, 2, 2, 2, 2, 2, 4, 2, 3),
        exact_clusters=(2, 2, 3, 2, 2),
        redirects=16,
        query_pages=3,
        idn_pages=2,
        short_pages=4,
        non_english=3,
        robots_disallowed=4,
        slow=2,
        not_found=6,
        gone=3,
        server_error=3,
        pdf=3,
        jpeg=2,
        redirect_wikipedia=4,
        redirect_blocked=1,
        redirect_loops=1,
        redirect_too_long=1,
        wikipedia_pages=3,
        below_karma=2200,
        split_karma=3,
        nsfw=80,
        self_posts=200,
        media=150,
        reddit_internal=50,
        wikipedia=60,
        after_date=120,
    ),
    "tiny": Scale(
        hosts=10,
        articles=12,
        near_clusters=(3,),
        exact_clusters=(2,),
        redirects=2,
        query_pages=2,
        idn_pages=1,
        short_pages=1,
        non_english=1,
        robots_disallowed=1,
        slow=1,
        not_found=1,
        gone=1,
        server_error=1,
        pdf=1,
        jpeg=1,
        redirect_wikipedia=1,
        redirect_blocked=1,
        redirect_loops=1,
        redirect_too_long=1,
        wikipedia_pages=1,
        below_karma=120,
        split_karma=1,
        nsfw=8,
        self_posts=10,
        media=10,
        reddit_internal=4,
        wikipedia=5,
        after_date=8,
    ),
}
