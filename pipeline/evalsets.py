"""The zero-shot test sets, read from local files (Beam-free: the trainer and the build use it).

    lambada_openai.jsonl         {"context", "continuation"} per line; text = context + " " + word
    wikitext-2-raw-v1.test.txt   the raw WikiText-2 test rows joined by "\\n\\n" (empty rows too)

WikiText is scored per article, as lm-evaluation-harness's document-level WikiText does: the
rows are recovered from the joined file and grouped at each top-level heading (" = Title = ").
"""

from __future__ import annotations

import json
import re
from pathlib import Path

DEFAULT_DIR = "../shared/eval"
FILES = {"lambada": "lambada_openai.jsonl", "wikitext": "wikitext-2-raw-v1.test.txt"}
ARTICLE_HEADING = re.compile(r"^ = [^=].* = \n$")


def path_of(name: str, eval_dir: str = DEFAULT_DIR) -> Path:
    if name not in FILES:
        raise ValueError(f"unknown eval set {name!r}; expected one of {', '.join(FILES)}")
    return Path(eval_dir) / FILES[name]


def read_lambada(path: str | Path) -> list[str]:
    """Each passage whole: the context, one space, the last word."""
    texts = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            texts.append(record["context"].rstrip() + " " + record["continuation"].strip())
    return texts


def wikitext_rows(joined: str) -> list[str]:
    """The dataset's rows back from `"\\n\\n".join(rows)`: a row is "" or one line with its "\\n"."""
    rows, at = [], 0
    while at < len(joined):
        if joined[at] == "\n":
            rows.append("")
        else:
            end = joined.find("\n", at)
            end = len(joined) if end < 0 else end + 1
            rows.append(joined[at:end])
            at = end
        at += 2  # the "\n\n" separator
    return rows


def read_wikitext(path: str | Path) -> list[str]:
    """One string per article: its rows as lines (an empty row is an empty line)."""
    pages: list[list[str]] = []
    for row in wikitext_rows(Path(path).read_text(encoding="utf-8")):
        if ARTICLE_HEADING.match(row) or not pages:
            pages.append([])
        pages[-1].append(row or "\n")
    return ["".join(lines) for lines in pages if "".join(lines).strip()]


def read(name: str, path: str | Path) -> list[str]:
    """The passages (LAMBADA) or articles (WikiText) of an eval set."""
    return read_lambada(path) if name == "lambada" else read_wikitext(path)
