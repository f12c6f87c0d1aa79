"""WordNet laid out for nltk from Debian's package."""

from __future__ import annotations

from pathlib import Path

import pytest

from vittle.analysis.perturb.wordnet import (
    DEBIAN_WORDNET,
    WordNetUnavailable,
    ensure_wordnet,
    lexnames_text,
)

from . import need


def test_lexnames_is_the_standard_45_lines():
    lines = lexnames_text().splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3" and lines[3] == "03\tnoun.Tops\t1"
    assert lines[29] == "29\tverb.body\t2" and lines[44] == "44\tadj.ppl\t3"


def test_layout_copies_files_and_registers_the_data_dir(tmp_path, monkeypatch):
    need((DEBIAN_WORDNET / "data.noun").is_file(), "WordNet missing: apt-get install wordnet-base")
    import nltk

    monkeypatch.setenv("VITTLE_NLTK_DATA", str(tmp_path / "nltk_data"))
    monkeypatch.setattr(nltk.data, "path", [])  # only the directory under test
    root = ensure_wordnet()
    corpus = root / "corpora" / "wordnet"
    assert root == tmp_path / "nltk_data" and str(root) in nltk.data.path
    for name in ("data.noun", "index.verb", "noun.exc", "lexnames"):
        assert (corpus / name).is_file() and not (corpus / name).is_symlink()
    assert (corpus / "data.noun").stat().st_size == (DEBIAN_WORDNET / "data.noun").stat().st_size
    assert Path(nltk.data.find("corpora/wordnet/lexnames")) == corpus / "lexnames"
    assert ensure_wordnet() == root  # second call: nothing to do
    assert nltk.data.path.count(str(root)) == 1


def test_missing_debian_package_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("VITTLE_NLTK_DATA", str(tmp_path / "nltk_data"))
    with pytest.raises(WordNetUnavailable, match="wordnet-base wordnet-sense-index"):
        ensure_wordnet(source=tmp_path / "nowhere")
