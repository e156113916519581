"""Text normalization for extracted documents, and the hash used for exact deduplication.

GPT-2 was trained on text as the web writes it: paragraphs, punctuation and any script. So
normalization repairs only what is broken and keeps everything else:

- mojibake (UTF-8 read as cp1252 and similar) is undone with ftfy, which is slow and so
  only runs on text that shows a sign of it;
- control characters and invisible format characters that carry no text are removed;
- runs of spaces and tabs become one space, lines are stripped, and more than one blank
  line becomes one, so paragraph breaks survive but stray whitespace does not;
- the result is in Unicode NFC, so one string has one encoding.

Curly quotes, full-width forms and ligatures are left as they are: they are real text.

It runs on every extracted document, so it works line by line and leaves alone the lines
that need nothing, which is most of them: a line for which `str.isprintable()` holds has no
control character and no whitespace but the ASCII space (tab, no-break space and the other
Unicode spaces are not printable), so it only needs its spaces tidied, and only when it has
two in a row or one at an end. The result is the same as running each rule as a regular
expression over the whole text, only faster (tests/test_textnorm.py checks both against each
other on random strings).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import ftfy

_FTFY_CONFIG = ftfy.TextFixerConfig(
    unescape_html=False,  # trafilatura already unescaped; "&amp;" left in text is literal
    uncurl_quotes=False,
    fix_character_width=False,
    fix_latin_ligatures=False,
    normalization="NFC",
    explain=False,
)
# What mojibake of the Latin-1/cp1252 family looks like: a UTF-8 lead byte read as a Latin
# letter (Â..ô) followed by a continuation byte read as Latin-1 or cp1252; also C1 controls
# and lone surrogates. Text without any of these skips ftfy, which is the slow part. The
# pattern starts with one character class, which the regex engine scans for quickly; the
# lookbehinds then tell a lead letter, which needs a continuation after it, from the rest.
_LEAD = "\u00c2-\u00f4"
_CONTINUATION = (
    "\u00a0-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014"
    "\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122"
)
_MAYBE_BROKEN = re.compile(
    f"[\u0080-\u009f\ud800-\udfff{_LEAD}](?:(?<=[{_LEAD}])[{_CONTINUATION}]|(?<![{_LEAD}]))"
)
# C0/C1 controls other than newline and tab, lone surrogates, private-use code points
# (icon-font glyphs that extraction turns into meaningless characters), and invisible
# characters that only break words apart for a tokenizer: zero-width space, word joiner,
# soft hyphen, byte-order mark. ZWJ and ZWNJ are kept: emoji and Persian need them.
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ue000-\uf8ff\U000f0000-\U0010ffff"
    "\u200b\u2060\u00ad\ufeff]"
)


def normalize_text(text: str) -> str:
    """Repair mojibake, drop control characters, tidy whitespace, keep paragraphs; NFC."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii() and _MAYBE_BROKEN.search(text):
        text = ftfy.fix_text(text, _FTFY_CONFIG)
    lines: list[str] = []
    previous_blank = True  # no blank line at the start
    for line in text.split("\n"):
        if not line.isprintable():
            line = " ".join(_CONTROL.sub("", line).split())
        elif "  " in line or line.startswith(" ") or line.endswith(" "):
            line = " ".join(line.split())
        if line or not previous_blank:
            lines.append(line)
        previous_blank = not line
    if lines and not lines[-1]:
        lines.pop()
    return unicodedata.normalize("NFC", "\n".join(lines))


def word_count(text: str) -> int:
    """Whitespace-separated words."""
    return len(text.split())


def text_hash(text: str) -> str:
    """Hex SHA-256 of the UTF-8 text: equal texts, equal hashes, on every machine."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
