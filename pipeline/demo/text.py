"""Readable English for the micro-web: paragraphs of the documentation every Python carries.

Two sources, read in a fixed order so the same Python gives the same text on any machine:
the language reference topics that `pydoc` ships (`pydoc_data.topics`), then the docstrings
of the pure-Python standard library modules, found by name in `sys.stdlib_module_names`
(sorted) and read as source, never imported. Only prose paragraphs are kept: no code, no
lists, no doctest lines, and nothing that reads like a junk page (cookie notices, "not
found", robot checks) or a Wikipedia copy, so the build stage's filters keep every article.

The few non-English pages use short passages written for this project. Below them: slugs,
word 5-gram Jaccard, and the near copies of an article that the dedup stage must find.
"""

from __future__ import annotations

import functools
import inspect
import random
import re
import sys
import sysconfig
import textwrap
from dataclasses import dataclass
from pathlib import Path

_PLAIN_WORD = re.compile(r"^[A-Za-z][A-Za-z'\u2019-]*[,.;:]?$")
# Phrases that the build stage's junk and Wikipedia-mirror filters look for; paragraphs that
# mention them are left out so no planted article is removed for a reason we did not plant.
_AVOID = re.compile(
    r"cookie|captcha|robot|wikipedia|not found|\b404\b|consent|privacy|just a moment|human",
    re.IGNORECASE,
)
# Standard library trees that are tests, demos or GUI code rather than documented APIs.
_SKIP_PACKAGES = frozenset(
    {
        "test",
        "idlelib",
        "lib2to3",
        "tkinter",
        "turtledemo",
        "ensurepip",
        "site-packages",
        "pydoc_data",
        "distutils",
        "this",
        "antigravity",
    }
)
MIN_PARAGRAPH_WORDS = 12
NEAR_DUP_MIN_JACCARD = 0.94  # word 5-gram Jaccard of each near copy to its original
SHINGLE = 5
# A module's docstring, or the docstring right under a one-line `def` or `class`. A regular
# expression rather than `ast`: parsing the whole library costs seconds, this a fraction.
_DOCSTRING = re.compile(
    r"(?:\A(?:[ \t]*#[^\n]*\n|[ \t]*\n)*|^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t][^\n]*:[ \t]*\n)"
    r'[ \t]*[rRuU]?"""(.*?)"""',
    re.S | re.M,
)


class NotEnoughText(RuntimeError):
    """The paragraphs given run out before the articles asked for."""


@dataclass(frozen=True)
class Paragraph:
    source: str  # "topics:<name>" or the module file relative to the stdlib folder
    text: str

    @property
    def words(self) -> int:
        return len(self.text.split())


@dataclass(frozen=True)
class Article:
    title: str
    paragraphs: tuple[str, ...]

    @property
    def words(self) -> int:
        return sum(len(p.split()) for p in self.paragraphs)


def prose(block: str) -> str | None:
    """One paragraph reflowed onto one line, or None when the block is not plain prose."""
    block = textwrap.dedent(block).strip("\n")
    if not block or block[0].isspace() or ">>>" in block:
        return None
    if any(line.startswith(("  ", "*", "-", "|", "+", "=")) for line in block.splitlines()):
        return None
    words = block.split()
    if len(words) < MIN_PARAGRAPH_WORDS or not block.rstrip().endswith("."):
        return None
    if sum(bool(_PLAIN_WORD.match(w)) for w in words) < 0.8 * len(words):
        return None
    if _AVOID.search(block):
        return None
    return " ".join(words)


def _blocks(text: str) -> list[str]:
    return re.split(r"\n\s*\n", text)


def _topic_paragraphs() -> list[Paragraph]:
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions package pydoc_data separately
        return []
    out = []
    for name in sorted(topics):
        for block in _blocks(topics[name]):
            text = prose(block)
            if text:
                out.append(Paragraph(f"topics:{name}", text))
    return out


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files: list[Path] = []
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in _SKIP_PACKAGES:
            continue
        if (root / name).is_dir():
            files.extend(
                sorted(
                    p
                    for p in (root / name).rglob("*.py")
                    if not {"test", "tests"} & set(p.relative_to(root).parts)
                )
            )
        elif (root / f"{name}.py").is_file():
            files.append(root / f"{name}.py")
    return files


def _docstring_paragraphs(files: list[Path], root: Path) -> list[Paragraph]:
    out = []
    for path in files:
        try:
            source_text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        source = str(path.relative_to(root))
        for match in _DOCSTRING.finditer(source_text):
            for block in _blocks(inspect.cleandoc(match.group(1))):
                text = prose(block)
                if text:
                    out.append(Paragraph(source, text))
    return out


@functools.lru_cache(maxsize=4)
def documentation_paragraphs(min_words: int) -> tuple[Paragraph, ...]:
    """Distinct prose paragraphs, in a fixed order, until at least `min_words` words.

    Cached per process: it depends only on the installed Python, never on a seed.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    seen: set[str] = set()
    out: list[Paragraph] = []
    words = 0

    def take(paragraphs: list[Paragraph]) -> bool:
        nonlocal words
        for p in paragraphs:
            if p.text not in seen:
                seen.add(p.text)
                out.append(p)
                words += p.words
        return words >= min_words

    if not take(_topic_paragraphs()):
        files = _stdlib_files()
        for start in range(0, len(files), 20):
            if take(_docstring_paragraphs(files[start : start + 20], root)):
                break
    if words < min_words:
        raise RuntimeError(
            f"this Python's documentation gives only {words} words of prose, "
            f"{min_words} are needed; use a smaller --scale"
        )
    return tuple(out)


def title_for(paragraph: str, rng: random.Random) -> str:
    """A headline from the opening words of an article's first paragraph."""
    words = re.sub(r"[\"*`()\[\]]", "", paragraph).split()
    head = " ".join(words[: rng.randint(5, 9)]).rstrip(",.;:")
    return head[:1].upper() + head[1:]


def pack_articles(
    paragraphs: tuple[Paragraph, ...],
    rng: random.Random,
    count: int,
    min_words: int,
    max_words: int,
) -> tuple[list[Article], list[str]]:
    """`count` articles of min..max words from consecutive paragraphs, and the rest.

    Neighbouring paragraphs mostly share a module or topic, so an article reads as one
    piece; the paragraphs left over make the short pages.
    """
    articles: list[Article] = []
    current: list[str] = []
    words = 0
    target = rng.randint(min_words, max_words)
    for used, p in enumerate(paragraphs, start=1):
        current.append(p.text)
        words += p.words
        if words >= target:
            articles.append(Article(title_for(current[0], rng), tuple(current)))
            if len(articles) == count:
                return articles, [q.text for q in paragraphs[used:]]
            current, words = [], 0
            target = rng.randint(min_words, max_words)
    raise NotEnoughText(f"only {len(articles)} articles of text, {count} needed")


# Passages written for this project, for the pages the language filter must remove.
FOREIGN_TEXTS: dict[str, tuple[str, str]] = {
    "de-harbour": (
        "Die kleine Hafenstadt an der Flussmündung",
        "Die kleine Hafenstadt liegt an der Mündung eines breiten Flusses, der seit "
        "Jahrhunderten den Handel der ganzen Region bestimmt. Früher legten hier jeden Morgen "
        "Dutzende Fischerboote an, und auf dem Markt neben dem alten Rathaus wurden Heringe, "
        "Salz und Holz verkauft.\n\nHeute kommen vor allem Besucher, die durch die engen Gassen "
        "spazieren, in den Cafés am Ufer sitzen und den Schiffen auf dem Weg zum Meer "
        "nachschauen. Im Sommer veranstaltet der Heimatverein ein Fest mit Musik, Laternen und "
        "einem Umzug, an dem fast alle Familien der Stadt teilnehmen.\n\nDie Bürgermeisterin "
        "betont, dass der Tourismus zwar wichtig sei, die Stadt aber ihren Charakter nicht "
        "verlieren dürfe. Deshalb werden alte Speicherhäuser sorgfältig restauriert, statt sie "
        "durch moderne Hotels zu ersetzen. Viele junge Leute, die zum Studium in größere Städte "
        "gezogen sind, kehren inzwischen zurück, weil sie hier ruhiger leben und trotzdem mit "
        "der Bahn schnell in der Hauptstadt sind.",
    ),
    "de-bread": (
        "Brot backen mit Sauerteig",
        "Wer zu Hause Brot backen möchte, braucht vor allem Geduld. Ein guter Sauerteig "
        "entsteht aus Mehl und Wasser, die man einige Tage an einem warmen Ort stehen lässt und "
        "jeden Tag auffrischt. Die wilden Hefen und Milchsäurebakterien sorgen dafür, dass der "
        "Teig aufgeht und einen leicht säuerlichen Geschmack bekommt.\n\nAm Abend vor dem Backen "
        "wird der Teig angesetzt und über Nacht im Kühlschrank gelagert, damit sich die Aromen "
        "langsam entwickeln können. Am nächsten Morgen formt man einen runden Laib, lässt ihn "
        "noch einmal ruhen und schneidet die Oberfläche mit einem scharfen Messer ein.\n\nDer "
        "Ofen sollte sehr heiß sein, und eine Schale mit Wasser auf dem Boden erzeugt den Dampf, "
        "der für eine knusprige Kruste notwendig ist. Nach etwa vierzig Minuten klingt das Brot "
        "hohl, wenn man auf die Unterseite klopft. Dann muss es vollständig abkühlen, bevor man "
        "es anschneidet, auch wenn der Duft in der Küche kaum auszuhalten ist.",
    ),
    "fr-trail": (
        "Le sentier du col",
        "Le sentier qui monte vers le col commence derrière l'église du village, au bord d'un "
        "petit torrent dont l'eau reste froide même au mois d'août. Pendant la première heure, "
        "le chemin traverse une forêt de sapins où l'on entend surtout le vent et le bruit des "
        "pas sur les aiguilles.\n\nEnsuite, la pente devient plus raide et les arbres laissent "
        "place aux prairies couvertes de fleurs, où paissent des vaches dont les cloches "
        "résonnent dans toute la vallée. Les randonneurs prudents partent tôt le matin, car les "
        "orages éclatent souvent dans l'après-midi et la descente devient alors glissante.\n\n"
        "Au sommet, un refuge en pierre accueille les marcheurs fatigués avec une soupe chaude, "
        "du pain et du fromage de la région. Par temps clair, on aperçoit les glaciers du massif "
        "voisin et, très loin vers l'ouest, la ligne bleue du lac. Le gardien du refuge raconte "
        "volontiers l'histoire des contrebandiers qui empruntaient autrefois ce passage pour "
        "éviter la douane.",
    ),
}

# Words for host names, navigation, bylines and headlines of pages nobody fetches.
WORDS = (
    "acorn amber anchor apple arbor aspen aurora autumn badger bamboo basalt beacon birch "
    "bison blossom bramble breeze brook cactus canyon cedar chalk cherry cinder citrus clover "
    "cobalt comet copper coral crane crater cypress dahlia delta dune ember falcon fern fjord "
    "flint forest fossil garnet geyser ginger glacier granite grove harbor hazel heron "
    "hickory horizon indigo iris ivory jasper juniper kelp kestrel lagoon lantern larch "
    "lemon lichen lotus magnet maple marble meadow mesa mint monsoon moss nectar nimbus "
    "oak oasis obsidian olive onyx orchid osprey otter pebble pepper pine plume poplar prairie "
    "quartz quill raven reef ridge river robin saffron sage sequoia shale sierra slate sparrow "
    "spruce summit sumac talon thistle thunder tidal timber topaz tundra valley velvet willow "
    "walnut wren yarrow zephyr"
).split()


def shingles(text: str, n: int = SHINGLE) -> set[tuple[str, ...]]:
    words = text.lower().split()
    return {tuple(words[i : i + n]) for i in range(max(len(words) - n + 1, 1))}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb) if sa or sb else 1.0


def slugify(text: str, max_words: int = 6) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words[:max_words]) or "page"


def near_copy(article: Article, rng: random.Random) -> Article:
    """The article with a few words changed, the way a syndicated copy drifts."""
    while True:
        paragraphs = [p.split() for p in article.paragraphs]
        positions = [(i, j) for i, p in enumerate(paragraphs) for j in range(len(p))]
        edits = max(1, article.words // 200)
        for i, j in rng.sample(positions[SHINGLE:-SHINGLE], edits):
            paragraphs[i][j] = rng.choice(WORDS)
        copy = Article(article.title, tuple(" ".join(p) for p in paragraphs))
        if jaccard(body_text(copy), body_text(article)) >= NEAR_DUP_MIN_JACCARD:
            return copy


def body_text(article: Article) -> str:
    return "\n\n".join(article.paragraphs)
