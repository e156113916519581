from pathlib import Path

import pytest

from pipeline.bpe import EOT_ID, TokenizerError, load_gpt2
from pipeline.config import TokenizerConfig


def test_local_ranks_give_gpt2_ids(ranks_file: Path) -> None:
    enc = load_gpt2(TokenizerConfig(str(ranks_file)))
    assert enc.n_vocab == 50257
    assert enc.eot_token == EOT_ID
    # GPT-2's ids for this string, as published with the model.
    assert enc.encode_ordinary("Hello world") == [15496, 995]


def test_environment_variable_is_second(ranks_file: Path, monkeypatch) -> None:
    monkeypatch.setenv("WEBTEXT_TIKTOKEN_RANKS", str(ranks_file))
    assert load_gpt2(TokenizerConfig("")).encode_ordinary(" the") == [262]


def test_wrong_file_is_refused_by_its_hash(tmp_path: Path) -> None:
    bad = tmp_path / "ranks.tiktoken"
    bad.write_text("SGVsbG8= 0\n")
    with pytest.raises(TokenizerError, match="ranks file"):
        load_gpt2(TokenizerConfig(str(bad)))


def test_no_file_and_no_network_names_both_fixes(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WEBTEXT_TIKTOKEN_RANKS", raising=False)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # an empty cache
    # Send tiktoken's download through a proxy on a closed loopback port: offline, for certain.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(TokenizerError) as err:
        load_gpt2(TokenizerConfig(""))
    message = str(err.value)
    assert "ranks_file" in message and "WEBTEXT_TIKTOKEN_RANKS" in message
    assert "\n" not in message
