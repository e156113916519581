"""Plants the micro-web's pages, qualifying links and submissions from one random stream:
every non-qualifying submission with exactly one reason to drop it, every qualifying link
with the fetch outcome and build fate the ground truth records."""

from __future__ import annotations

import random
from typing import Any

from pipeline.demo.ground_truth import PlantedLink
from pipeline.demo.pages import (
    headlines,
    jpeg_bytes,
    pdf_bytes,
    render_page,
    render_wikipedia,
    status_page,
)
from pipeline.demo.reddit_dump import (
    AFTER_RANGE,
    CUTOFF,
    FLAGGED,
    IN_RANGE,
    MONTHS,
    Posting,
    base36,
    created_in,
    high_score,
    month_bounds,
    variant,
)
from pipeline.demo.scales import Scale
from pipeline.demo.site import Host, Site, make_hosts
from pipeline.demo.text import (
    FOREIGN_TEXTS,
    WORDS,
    Article,
    NotEnoughText,
    body_text,
    documentation_paragraphs,
    jaccard,
    near_copy,
    pack_articles,
    slugify,
)

SLOW_DELAY_S = 8.0  # longer than the demo's fetch.total_timeout_s of 5 s
TOO_LONG_CHAIN = 12  # hops; more than any sane fetch.max_redirects (the demo's is 5)
ARTICLE_WORDS = (250, 380)  # over 128 GPT-2 tokens with a wide margin
SHORT_WORDS = (40, 75)  # under 128 GPT-2 tokens, over trafilatura's 250-character minimum

SUBREDDITS = (
    "programming python technology science worldnews news linux askscience history books "
    "space economics todayilearned TrueReddit DepthHub learnprogramming philosophy"
).split()
NSFW_SUBREDDITS = ("nsfw_stories", "afterdark_reads")


class Planter:
    """Plants pages, links and submissions; `generate` drives it."""

    def __init__(self, seed: int, scale: Scale):
        self.rng = random.Random(seed)
        self.scale = scale
        self.site = Site()
        self.links: list[PlantedLink] = []
        self.postings: list[Posting] = []
        self.exact_clusters: list[list[str]] = []
        self.near_clusters: list[list[str]] = []
        self.articles, leftovers = self._articles(seed)
        self.rng.shuffle(self.articles)
        self.short_texts = self._short_texts(leftovers)
        self.hosts = make_hosts(self.rng, scale.hosts)

    def _articles(self, seed: int) -> tuple[list[Article], list[str]]:
        """The articles' text, and paragraphs left over for the short pages."""
        needed = self.articles_needed()
        words = needed * sum(ARTICLE_WORDS) // 2 + 6000
        while True:
            rng = random.Random(f"{seed}-text")  # its own stream: retries change nothing else
            try:
                paragraphs = documentation_paragraphs(words)
                return pack_articles(paragraphs, rng, needed, *ARTICLE_WORDS)
            except NotEnoughText:
                words = words * 5 // 4

    def articles_needed(self) -> int:
        s = self.scale
        return (
            s.articles
            + len(s.near_clusters)
            + len(s.exact_clusters)
            + s.redirects
            + s.query_pages
            + s.idn_pages
            + s.robots_disallowed
            + s.slow
            + s.redirect_wikipedia
            + s.redirect_too_long
            + s.wikipedia_pages
        )

    def _short_texts(self, leftovers: list[str]) -> list[tuple[str, ...]]:
        """Pairs of leftover paragraphs of SHORT_WORDS words in all."""
        out = []
        pool = sorted(p for p in leftovers if len(p.split()) <= SHORT_WORDS[1] // 2)
        self.rng.shuffle(pool)
        while len(pool) >= 2 and len(out) < self.scale.short_pages:
            a, b = pool.pop(), pool.pop()
            words = len(a.split()) + len(b.split())
            if SHORT_WORDS[0] <= words <= SHORT_WORDS[1] and len(a) + len(b) >= 280:
                out.append((a, b))
        if len(out) < self.scale.short_pages:
            raise RuntimeError("not enough short paragraphs for the short pages")
        return out

    def take_article(self) -> Article:
        return self.articles.pop()

    def byline(self) -> str:
        a, b = self.rng.sample(WORDS, 2)
        return f"{a.title()} {b.title()}"

    # -- postings ---------------------------------------------------------------------

    def post(
        self,
        url: str | None,
        reason: str,
        month: int,
        score: int,
        title: str,
        created: int | None = None,
        **extra: Any,
    ) -> Posting:
        nsfw = extra.pop("over_18", False)
        sub = self.rng.choice(NSFW_SUBREDDITS if nsfw else SUBREDDITS)
        posting = Posting(
            month=month,
            created_utc=created if created is not None else created_in(month, self.rng),
            url=url,
            score=score,
            title=title,
            subreddit=sub,
            reason=reason,
            over_18=nsfw,
            **extra,
        )
        self.postings.append(posting)
        return posting

    def post_link(self, url: str, title: str, first_month: int | None = None) -> list[Posting]:
        """A qualifying link: its canonical http URL first, then reposts as URL variants."""
        rng = self.rng
        month = first_month if first_month is not None else rng.choice(IN_RANGE)
        first = self.post(url, "qualifying", month, high_score(rng), title)
        postings = [first]
        for n in range(min(int(rng.expovariate(0.9)), 5)):
            later = [m for m in IN_RANGE if m >= month]
            repost_month = rng.choice(later)
            low = rng.random() < 0.5
            score = rng.randint(0, 2) if low else high_score(rng)
            reason = "below_karma" if low else "qualifying"
            removed = None
            if not low and rng.random() < 0.15:
                removed = "moderator" if MONTHS[repost_month][1] == "late" else "author"
            crosspost = first if MONTHS[repost_month][1] == "late" and rng.random() < 0.3 else None
            postings.append(
                self.post(
                    variant(url, rng, n),
                    reason,
                    repost_month,
                    score,
                    title,
                    removed=removed,
                    crosspost_of=crosspost,
                )
            )
        if rng.random() < 0.1:  # a repost after the cut-off: dropped by date, link still in
            postings.append(
                self.post(variant(url, rng, 9), "out_of_dates", AFTER_RANGE[-1], 10, title)
            )
        return postings

    # -- pages ------------------------------------------------------------------------

    def article_page(
        self, host: Host, article: Article, year: int, path: str | None = None
    ) -> tuple[str, str]:
        path = path or host.new_path(slugify(article.title), self.rng, year)
        date = f"{year}-{self.rng.randint(1, 12):02d}-{self.rng.randint(1, 28):02d}"
        page = render_page(host, article.title, article.paragraphs, self.byline(), date, self.rng)
        self.site.page(host.name, path, page.encode("utf-8"))
        return f"http://{host.name}{path}", path

    def link(self, url: str, outcome: str, fate: str, final_url: str | None, **kw: Any) -> None:
        self.links.append(PlantedLink(url, outcome, fate, final_url, **kw))

    def random_host(self) -> Host:
        return self.rng.choice(self.hosts)

    def year_of(self, month: int) -> int:
        return int(MONTHS[month][0][:4])

    def plant_articles(self) -> None:
        for i in range(self.scale.articles):
            article = self.take_article()
            month = self.rng.choice(IN_RANGE)
            url, _ = self.article_page(self.random_host(), article, self.year_of(month))
            if i == 0:  # the last second before the cut-off is still in
                last = IN_RANGE[-1]
                self.post(url, "qualifying", last, high_score(self.rng), article.title, CUTOFF - 1)
            else:
                self.post_link(url, article.title, month)
            self.link(url, "ok", "kept", url)

    def plant_cluster(self, size: int, kind: str, index: int) -> None:
        rng = self.rng
        original = self.take_article()
        hosts = rng.sample(self.hosts, size)
        month = rng.choice(IN_RANGE[:-1])
        year = self.year_of(month)
        byline, date = self.byline(), f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        members: list[tuple[str, list[Posting], float]] = []
        for i, host in enumerate(hosts):
            copy = original if i == 0 or kind == "exact" else near_copy(original, rng)
            page = render_page(host, copy.title, copy.paragraphs, byline, date, rng)
            path = host.new_path(slugify(copy.title), rng, year)
            self.site.page(host.name, path, page.encode("utf-8"))
            url = f"http://{host.name}{path}"
            member_month = month if i == 0 else rng.choice([m for m in IN_RANGE if m >= month])
            postings = self.post_link(url, copy.title, member_month)
            members.append((url, postings, jaccard(body_text(copy), body_text(original))))
        # The kept page wins under either keep rule: most karma (max or sum), earliest post.
        kept_first = members[0][1][0]
        others = [p for _, postings, _ in members[1:] for p in postings]
        others += members[0][1][1:]
        kept_first.score = 1000 + sum(p.score for p in others)
        kept_first.created_utc = month_bounds(month)[0] + rng.randrange(3600)
        cluster = f"{kind}-{index}"
        for i, (url, _, similarity) in enumerate(members):
            fate = "kept" if i == 0 else "duplicate"
            self.link(url, "ok", fate, url, cluster=cluster, jaccard=round(similarity, 4))
        (self.exact_clusters if kind == "exact" else self.near_clusters).append(
            [url for url, _, _ in members]
        )

    def plant_redirects(self) -> None:
        rng = self.rng
        shorteners = [f"go-{w}.example" for w in rng.sample(WORDS, 3)]
        statuses = (301, 302, 303, 307, 308)
        for i in range(self.scale.redirects):
            article = self.take_article()
            month = rng.choice(IN_RANGE)
            final_host = self.random_host()
            final_url, final_path = self.article_page(final_host, article, self.year_of(month))
            hops = rng.randint(1, 3)
            location = final_url
            for hop in range(hops):
                if hop == hops - 1 or rng.random() < 0.5:
                    host = rng.choice(shorteners)
                    target = f"/{base36(rng.randrange(36**5, 36**6))}"
                else:
                    host = final_host.name
                    target = f"/old/{i}/{hop}{final_path}"
                    if location.startswith(f"http://{host}/"):
                        location = location[len(f"http://{host}") :]  # a relative Location
                self.site.redirect(host, target, location, rng.choice(statuses))
                location = f"http://{host}{target}"
            self.post_link(location, article.title, month)
            self.link(location, "ok", "kept", final_url, redirects=hops)

    def plant_redirects_away(self) -> None:
        rng = self.rng
        editions = ("en.wikipedia.org", "de.m.wikipedia.org", "en.m.wikipedia.org")
        for i in range(self.scale.redirect_wikipedia):
            article = self.take_article()
            edition = editions[i % len(editions)]
            wiki_path = f"/wiki/{slugify(article.title, 4).replace('-', '_').title()}_{i}"
            lang = edition.split(".")[0]
            page = render_wikipedia(article.title, article.paragraphs, lang)
            self.site.page(edition, wiki_path, page.encode("utf-8"))
            host = self.random_host()
            path = host.new_path(f"wiki-{i}", rng, 2015)
            self.site.redirect(host.name, path, f"http://{edition}{wiki_path}", 301)
            url = f"http://{host.name}{path}"
            self.post_link(url, article.title)
            final = f"http://{edition}{wiki_path}"
            self.link(url, "redirect_wikipedia", "wikipedia", final, redirects=1)
        for i in range(self.scale.redirect_blocked):
            image = f"/{base36(rng.randrange(36**6, 36**7))}.jpg"
            self.site.page("i.imgur.com", image, jpeg_bytes(rng), "image/jpeg")
            host = self.random_host()
            path = host.new_path(f"photo-of-the-day-{i}", rng, 2014)
            self.site.redirect(host.name, path, f"http://i.imgur.com{image}", 302)
            url = f"http://{host.name}{path}"
            self.post_link(url, f"Photo of the day {i}")
            self.link(url, "redirect_blocked", "not_fetched", None, redirects=1)
        for i in range(self.scale.redirect_loops):
            host = self.random_host()
            a, b = f"/moved/{i}/a", f"/moved/{i}/b"
            self.site.redirect(host.name, a, b, 302)
            self.site.redirect(host.name, b, a, 302)
            url = f"http://{host.name}{a}"
            self.post_link(url, f"Moved {i}")
            self.link(url, "redirect_loop", "not_fetched", None)
        for i in range(self.scale.redirect_too_long):
            article = self.take_article()
            host = self.random_host()
            final_url, _ = self.article_page(host, article, 2016)
            location = final_url
            for hop in range(TOO_LONG_CHAIN, 0, -1):
                target = f"/hop/{i}/{hop}"
                self.site.redirect(host.name, target, location, 302)
                location = f"http://{host.name}{target}"
            self.post_link(location, article.title)
            self.link(location, "too_many_redirects", "not_fetched", None)

    def plant_special_pages(self) -> None:
        rng, s = self.rng, self.scale
        # robots.txt on two hosts; links under the disallowed path
        robots_hosts = rng.sample(self.hosts, 2)
        for host in robots_hosts:
            rules = "User-agent: *\nDisallow: /private/\n"
            self.site.page(host.name, "/robots.txt", rules.encode(), "text/plain")
        for i in range(s.robots_disallowed):
            article = self.take_article()
            host = robots_hosts[i % 2]
            path = f"/private/{slugify(article.title)}"
            url, _ = self.article_page(host, article, 2013, path)
            self.post_link(url, article.title)
            self.link(url, "robots", "not_fetched", None)
        for _ in range(s.slow):
            article = self.take_article()
            host = self.random_host()
            path = host.new_path(slugify(article.title), rng, 2016)
            page = render_page(
                host, article.title, article.paragraphs, self.byline(), "2016-03-04", rng
            )
            self.site.page(host.name, path, page.encode(), delay_s=SLOW_DELAY_S)
            url = f"http://{host.name}{path}"
            self.post_link(url, article.title)
            self.link(url, "timeout", "not_fetched", None)
        dead = [(404, "not_found")] * s.not_found + [(410, "gone")] * s.gone
        dead += [(500, "server_error")] * s.server_error
        for status, outcome in dead:
            host = self.random_host()
            title = headlines(rng, 1)[0]
            path = host.new_path(slugify(title), rng, 2012)
            self.site.page(host.name, path, status_page(status), status=status)
            url = f"http://{host.name}{path}"
            self.post_link(url, title)
            self.link(url, outcome, "not_fetched", None)
        files = [("application/pdf", "report")] * s.pdf + [("image/jpeg", "photo")] * s.jpeg
        for content_type, kind in files:
            host = self.random_host()
            title = f"{kind.title()}: {headlines(rng, 1)[0]}"
            path = f"/download/{kind}-{rng.randrange(10**6)}"  # no file extension to filter
            body = pdf_bytes(title) if kind == "report" else jpeg_bytes(rng)
            self.site.page(host.name, path, body, content_type)
            url = f"http://{host.name}{path}"
            self.post_link(url, title)
            self.link(url, "non_html", "not_fetched", None)
        for texts in self.short_texts:
            host = self.random_host()
            title = "Briefly: " + " ".join(texts[0].split()[:5]).rstrip(",.;:")
            path = host.new_path(slugify(title), rng, 2014)
            page = render_page(host, title, texts, self.byline(), "2014-06-01", rng)
            self.site.page(host.name, path, page.encode("utf-8"))
            url = f"http://{host.name}{path}"
            self.post_link(url, title)
            self.link(url, "ok", "too_short", url)
        for i, key in enumerate(sorted(FOREIGN_TEXTS)[: s.non_english]):
            title, text = FOREIGN_TEXTS[key]
            host = self.random_host()
            path = host.new_path(slugify(key), rng, 2015)
            paragraphs = tuple(text.split("\n\n"))
            charset = "windows-1252" if i == 0 else "utf-8"
            page = render_page(
                host, title, paragraphs, self.byline(), "2015-09-09", rng, key[:2], charset
            )
            self.site.page(host.name, path, page.encode(charset), f"text/html; charset={charset}")
            url = f"http://{host.name}{path}"
            self.post_link(url, title)
            self.link(url, "ok", "non_english", url)

    def plant_query_and_idn_pages(self) -> None:
        rng = self.rng
        word = rng.choice(WORDS)
        forum = Host(f"forum.{word}.test", f"{word.title()} Forum", "journal", "posts", ["Board"])
        forum.nav = [w.title() for w in rng.sample(WORDS, 6)]
        for i in range(self.scale.query_pages):
            article = self.take_article()
            target = f"/viewtopic.php?t={1001 + i}"
            url, _ = self.article_page(forum, article, 2012, target)
            self.post_link(url, article.title)
            self.link(url, "ok", "kept", url)
        idn_name = f"bücher-{rng.choice(WORDS)}.example"
        idn = Host(idn_name.encode("idna").decode(), "Bücherecke", "blog", "posts", [])
        idn.nav = [w.title() for w in rng.sample(WORDS, 6)]
        for _ in range(self.scale.idn_pages):
            article = self.take_article()
            url, path = self.article_page(idn, article, 2016)
            postings = self.post_link(url, article.title)
            self.post(f"http://{idn_name}{path}", "qualifying", postings[0].month, 7, article.title)
            self.link(url, "ok", "kept", url)

    def plant_wikipedia_pages(self) -> None:
        for i in range(self.scale.wikipedia_pages):
            article = self.take_article()
            edition = ("en.wikipedia.org", "de.m.wikipedia.org")[i % 2]
            path = f"/wiki/{slugify(article.title, 3).replace('-', '_').title()}_{i}"
            page = render_wikipedia(article.title, article.paragraphs, edition[:2])
            self.site.page(edition, path, page.encode())
            month = self.rng.choice(IN_RANGE)
            self.post(f"http://{edition}{path}", "wikipedia", month, 40, article.title)

    def plant_non_qualifying(self) -> None:
        """Submissions that fail exactly one rule each."""
        rng, s = self.rng, self.scale

        def unique_link() -> tuple[str, str]:
            host = self.random_host()
            title = headlines(rng, 1)[0]
            return f"http://{host.name}{host.new_path(slugify(title), rng, 2013)}", title

        def title() -> str:
            return headlines(rng, 1)[0]

        for _ in range(s.below_karma):
            url, t = unique_link()
            self.post(url, "below_karma", rng.choice(IN_RANGE), rng.randint(0, 2), t)
        for _ in range(s.split_karma):
            url, t = unique_link()
            for month in sorted(rng.sample(IN_RANGE, 2)):
                self.post(url, "below_karma", month, 2, t)
        for _ in range(s.nsfw):
            url, t = unique_link()
            self.post(url, "nsfw", rng.choice(FLAGGED), high_score(rng), t, over_18=True)
        for i in range(s.self_posts):
            removed = ("selftext", "author")[i % 2] if i % 10 < 2 else None
            self.post(None, "self", rng.choice(IN_RANGE), high_score(rng), title(), removed=removed)
        # Each of these submissions links to one of a few URL forms, in turn.
        url_forms_by_reason = (
            (s.media, "blocked_domain", lambda: media_urls(rng, self.hosts)),
            (s.reddit_internal, "blocked_domain", lambda: reddit_urls(rng)),
            (s.wikipedia, "wikipedia", lambda: wikipedia_urls(rng)),
        )
        for count, reason, url_forms in url_forms_by_reason:
            for i in range(count):
                forms = url_forms()
                url = forms[i % len(forms)]
                self.post(url, reason, rng.choice(IN_RANGE), high_score(rng), title())
        for i in range(s.after_date):
            month = rng.choice(AFTER_RANGE)
            created = CUTOFF if i == 0 else None  # the cut-off itself is out
            url, t = unique_link()
            self.post(url, "out_of_dates", month, high_score(rng), t, created)


def media_urls(rng: random.Random, hosts: list[Host]) -> tuple[str, ...]:
    """The forms of a link to an image or video host, or to a media file on an article host."""
    host = rng.choice(hosts)
    slug = slugify(headlines(rng, 1)[0])
    key = base36(rng.randrange(36**6, 36**7))
    return (
        f"http://imgur.com/{key}",
        f"http://i.imgur.com/{key}.jpg",
        f"https://www.youtube.com/watch?v={key}",
        f"https://youtu.be/{key}",
        f"https://gfycat.com/{key.title()}",
        f"http://{host.name}/images/{slug}.png",
        f"http://{host.name}/media/{slug}.mp4",
        f"http://{host.name}/files/{slug}.pdf",
    )


def reddit_urls(rng: random.Random) -> tuple[str, ...]:
    """The forms of a link into Reddit itself."""
    other = base36(rng.randrange(36**5, 36**6))
    sub = rng.choice(SUBREDDITS)
    return (
        f"http://www.reddit.com/r/{sub}/comments/{other}/{slugify(headlines(rng, 1)[0])}/",
        f"https://redd.it/{other}",
        f"https://old.reddit.com/r/{sub}/wiki/index",
    )


def wikipedia_urls(rng: random.Random) -> tuple[str, ...]:
    """The forms of a link to Wikipedia or a sister project."""
    page = slugify(headlines(rng, 1)[0], 3).replace("-", "_").title()
    return (
        f"http://en.wikipedia.org/wiki/{page}",
        f"https://de.m.wikipedia.org/wiki/{page}",
        f"https://en.m.wikipedia.org/wiki/{page}",
        f"http://fr.wikipedia.org/wiki/{page}",
        f"https://commons.wikimedia.org/wiki/Category:{page}",
        f"https://en.wiktionary.org/wiki/{rng.choice(WORDS)}",
    )
