"""Text normalization keeps what GPT-2 reads and repairs what is broken."""

from __future__ import annotations

import unicodedata

from pipeline.textnorm import normalize_text, text_hash


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
