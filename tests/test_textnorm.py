"""Text normalization keeps what GPT-2 reads and repairs what is broken."""

from __future__ import annotations

import random
import re
import unicodedata

import ftfy

from pipeline.build import textnorm
from pipeline.build.textnorm import normalize_text, text_hash


def test_paragraph_breaks_are_kept():
    assert normalize_text("First paragraph.\nSecond one.\n\nThird.") == (
        "First paragraph.\nSecond one.\n\nThird."
    )


def test_many_blank_lines_become_one():
    assert normalize_text("a\n\n\n\n\nb") == "a\n\nb"


def test_stray_whitespace_is_collapsed_and_lines_stripped():
    assert normalize_text("  Hello \t  world\u00a0 !  \n   next   ") == "Hello world !\nnext"


def test_windows_and_old_mac_line_endings_become_newlines():
    assert normalize_text("one\r\ntwo\rthree") == "one\ntwo\nthree"


def test_mojibake_is_repaired():
    # UTF-8 bytes of "café – naïve" read as cp1252
    broken = "café – naïve".encode().decode("cp1252")
    assert broken != "café – naïve"
    assert normalize_text(broken) == "café – naïve"


def test_control_and_invisible_characters_are_removed():
    assert normalize_text("ab\x00c\x07d\u200be\ufefff\u00adg\x7f") == "abcdefg"


def test_c1_control_from_cp1252_becomes_its_character():
    # U+0085 in web text is almost always cp1252's byte 0x85, an ellipsis, decoded as latin-1
    assert normalize_text("Wait\x85 what") == "Wait… what"


def test_private_use_icon_glyphs_are_removed():
    assert normalize_text("\uf099 Follow us") == "Follow us"


def test_punctuation_and_unicode_are_kept():
    text = "“Quoted” — it’s ½ of ﬁve, ＡＢＣ, 東京, Ελληνικά, emoji 👩‍💻!"
    assert normalize_text(text) == text


def test_output_is_nfc():
    decomposed = "Cafe\u0301"
    assert normalize_text(decomposed) == "Café"
    assert unicodedata.is_normalized("NFC", normalize_text(decomposed))


def test_normalization_is_idempotent():
    text = "  Some   text\r\n\r\n\r\nwith  \u00e2\u20ac\u201c mojibake\x01 "
    once = normalize_text(text)
    assert normalize_text(once) == once


def test_text_hash_is_stable_and_distinguishes_texts():
    assert text_hash("hello") == text_hash("hello")
    assert text_hash("hello") != text_hash("hello.")
    assert text_hash("hello") == (
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    )


def _normalize_by_rules(text: str) -> str:
    """The rules of normalize_text stated as whole-text regular expressions, one per rule:
    slower, and the reference that the line-by-line implementation must equal."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lead = "\u00c2-\u00f4"
    broken = f"[\u0080-\u009f\ud800-\udfff]|[{lead}][{textnorm._CONTINUATION}]"
    if re.search(broken, text):
        text = ftfy.fix_text(text, textnorm._FTFY_CONFIG)
    text = textnorm._CONTROL.sub("", text)
    text = re.sub(r"[^\S\n]+", " ", text)  # runs of whitespace other than newlines
    text = re.sub(" ?\n ?", "\n", text)  # lines stripped
    text = re.sub(r"\n{3,}", "\n\n", text).strip()  # at most one blank line
    return unicodedata.normalize("NFC", text)


def test_line_by_line_equals_the_rules_on_random_text():
    pieces = list("ab. \t\n\r\x00\x0b\x0c\x1c\x85\xa0\u2028\u3000\u200b\u00ad\ufeff\ue000")
    pieces += ["\u00c3\u00a9", "\u00e2\u20ac\u2122", "\u00e9", "e\u0301", "\ud800", "  ", "\n\n\n"]
    rng = random.Random(1234)
    for _ in range(5_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 24)))
        assert normalize_text(text) == _normalize_by_rules(text), repr(text)


def test_word_count_of_normalized_text_equals_split_on_random_text():
    pieces = list("ab. \t\n\r\x00\x1c\x85\xa0\u2028\u3000\u200b\ufeff") + ["  ", "\n\n\n"]
    rng = random.Random(99)
    for _ in range(5_000):
        text = normalize_text("".join(rng.choice(pieces) for _ in range(rng.randint(0, 30))))
        assert textnorm.word_count(text) == len(text.split()), repr(text)
