"""The one content policy that fetch and build share: HTML or not, and the charset."""

from __future__ import annotations

from pipeline.content import choose_charset, decode_html, judge_content_type, sniff_html


def test_sniffing_tells_html_from_binary_and_unknown():
    assert sniff_html(b"\xef\xbb\xbf  <!DOCTYPE html><html>") is True
    assert sniff_html(b"%PDF-1.4 ...") is False
    assert sniff_html(b"\x89PNG\r\n") is False
    assert sniff_html(b"just some words") is None


def test_content_type_is_judged_by_header_and_sniffing():
    assert judge_content_type("text/html", b"<html>") is None
    assert judge_content_type("text/html", b"%PDF-1.7") == "sniffed_binary"
    assert judge_content_type("application/octet-stream", b"<html><body>") is None
    assert judge_content_type("", b"plain words") == "sniffed_not_html"
    assert judge_content_type("application/pdf", b"<html>") == "header"


def test_charset_is_bom_then_utf8_then_declared_then_meta_then_detection():
    text = "Café au lait, crème brûlée, naïve façade. " * 20
    assert choose_charset(text.encode("utf-8"), "windows-1252") == ("utf-8", "utf-8")
    assert choose_charset(b"\xef\xbb\xbf" + text.encode("utf-8")) == ("utf-8", "bom")
    meta = b'<meta charset="windows-1252">' + text.encode("cp1252")
    assert choose_charset(meta, "utf-8") == ("cp1252", "meta")
    assert choose_charset(meta, "no-such-charset") == ("cp1252", "meta")
    assert choose_charset(text.encode("cp1252"), "iso-8859-1") == ("cp1252", "declared")
    assert choose_charset(text.encode("cp1252")) == ("cp1252", "default")
    japanese = "日本語のページです。文字化けしてはいけません。".encode("shift_jis") * 5
    assert choose_charset(japanese)[1] == "detected"


def test_a_body_cut_inside_a_utf8_character_is_still_utf8():
    body = "<p>東京</p>".encode()[:-5]  # ends in the middle of 京
    assert choose_charset(body) == ("utf-8", "utf-8")
    assert decode_html(body).endswith("東\ufffd")


# ---- decoding -----------------------------------------------------------------------------


def test_utf8_without_declaration_decodes():
    assert decode_html("<p>naïve café 東京</p>".encode()) == "<p>naïve café 東京</p>"


def test_cp1252_declared_in_http_header_decodes():
    body = "<p>“Smart quotes” – and €5</p>".encode("cp1252")
    assert decode_html(body, "windows-1252") == "<p>“Smart quotes” – and €5</p>"


def test_iso_8859_1_label_is_read_as_cp1252():
    # servers label cp1252 text as ISO-8859-1; 0x93/0x94 are quotes in cp1252, controls in latin-1
    body = "<p>“quoted” café</p>".encode("cp1252")
    assert decode_html(body, "ISO-8859-1") == "<p>“quoted” café</p>"


def test_latin1_declared_in_meta_decodes():
    html = '<html><head><meta charset="iso-8859-1"></head><body>Crème brûlée à la française</body>'
    assert decode_html(html.encode("latin-1")) == html


def test_latin1_without_any_declaration_decodes():
    text = "Les élèves ont mangé une crème brûlée à côté de la forêt, déjà très âgée. " * 8
    body = f"<html><body><p>{text}</p></body></html>".encode("latin-1")
    assert text in decode_html(body)


def test_shift_jis_declared_in_meta_decodes():
    html = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS">'
        "</head><body><p>東京の天気は晴れです。今日はとても暑い日になりました。</p></body></html>"
    )
    assert decode_html(html.encode("shift_jis")) == html


def test_shift_jis_declared_in_http_header_decodes():
    html = "<p>日本語のページです。文字化けしてはいけません。</p>"
    assert decode_html(html.encode("shift_jis"), "Shift_JIS") == html


def test_utf8_body_mislabelled_as_latin1_decodes_as_utf8():
    assert decode_html("<p>naïve — café</p>".encode(), "iso-8859-1") == "<p>naïve — café</p>"


def test_utf8_bom_is_honoured_and_dropped():
    assert decode_html(b"\xef\xbb\xbf<p>caf\xc3\xa9</p>", "iso-8859-1") == "<p>café</p>"


def test_unknown_charset_label_falls_back():
    assert decode_html(b"<p>plain</p>", "x-no-such-charset") == "<p>plain</p>"
