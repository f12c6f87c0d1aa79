"""An offline word-by-word gloss over Debian's freedict English-X dictionaries.

This is NOT a translation: each English word (or known 2-3 word phrase) becomes the first
sense the dictionary lists, in English word order, and unknown words stay English. It
exists so the translation variants can be built and tested with no network and no model,
and it is labelled as a gloss wherever it shows.

The dictionaries are GPL (packages dict-freedict-eng-ara, -eng-ell, -eng-hin); they are
read from /usr/share/dictd at run time and never copied into this project.
"""

from __future__ import annotations

import gzip
import logging
import re
import threading
from pathlib import Path

from .prompt import Layout
from .translation_types import Language, TranslationUnavailable, Translator

logger = logging.getLogger(__name__)

APT_PACKAGES = "dict-freedict-eng-ara dict-freedict-eng-ell dict-freedict-eng-hin"
MAX_PHRASE_WORDS = 3
_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
_NUMBERING_RE = re.compile(r"^\d+\.\s*")
_ANNOTATION_RE = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>|\{[^}]*\}")


def _files(dict_dir: str | Path, language: Language) -> tuple[Path, Path]:
    stem = Path(dict_dir) / f"freedict-eng-{language.freedict}"
    return stem.with_suffix(".index"), stem.with_suffix(".dict.dz")


def dictionaries_present(dict_dir: str | Path) -> bool:
    """Whether all three English-X dictionaries are installed in `dict_dir`."""
    return all(path.is_file() for lang in Language for path in _files(dict_dir, lang))


def _decode_b64_number(text: str) -> int:
    """dictd indexes write offsets and lengths as base-64 numerals."""
    value = 0
    for char in text:
        value = value * 64 + _B64[char]
    return value


def first_sense(entry: str) -> str | None:
    """The first listed translation in a dictd entry (headword line first, example
    sentences in quotes, senses possibly numbered, multiword senses joined by '~')."""
    for line in entry.splitlines()[1:]:
        line = line.strip()
        if not line or line.startswith('"'):
            continue
        sense = _ANNOTATION_RE.sub("", _NUMBERING_RE.sub("", line))
        sense = re.split(r"[,;]", sense)[0].replace("~", " ").strip()
        if sense:
            return sense
    return None


def word_forms(word: str) -> list[str]:
    """`word` and plausible dictionary forms of it (plurals, -ed, -ing)."""
    lower = word.lower()
    forms = [lower]
    for suffix, replacement in (("'s", ""), ("ies", "y"), ("es", ""), ("s", ""), ("ied", "y"),
                                ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e")):
        if lower.endswith(suffix) and len(lower) - len(suffix) >= 2:
            stem = lower[: -len(suffix)]
            forms.append(stem + replacement)
            if suffix in ("ed", "ing") and len(stem) >= 3 and stem[-1] == stem[-2] and stem[-1] not in "aeiou":
                forms.append(stem[:-1])  # running -> run, stopped -> stop
    return list(dict.fromkeys(forms))


class FreedictDictionary:
    """One English-X dictionary: headword -> first sense."""

    def __init__(self, index_path: Path, dict_path: Path) -> None:
        self._entries: dict[str, tuple[int, int]] = {}
        with open(index_path, encoding="utf-8") as index:
            for line in index:
                fields = line.rstrip("\n").split("\t")
                if len(fields) >= 3 and not fields[0].startswith("00database"):
                    # The first entry of a headword is its most common sense.
                    location = (_decode_b64_number(fields[1]), _decode_b64_number(fields[2]))
                    self._entries.setdefault(fields[0].lower(), location)
        with gzip.open(dict_path) as data:  # dictzip files are valid gzip
            self._data = data.read()

    def lookup(self, phrase: str) -> str | None:
        location = self._entries.get(phrase.lower())
        if location is None:
            return None
        offset, length = location
        return first_sense(self._data[offset : offset + length].decode("utf-8", errors="replace"))

    def gloss_word(self, word: str) -> str | None:
        for form in word_forms(word):
            sense = self.lookup(form)
            if sense:
                return sense
        return None


class FreedictGlossTranslator(Translator):
    """Word-by-word gloss into Arabic, Greek or Hindi. Not a translation."""

    is_gloss = True

    def __init__(self, dict_dir: str | Path = "/usr/share/dictd") -> None:
        self.dict_dir = Path(dict_dir)
        self._dictionaries: dict[Language, FreedictDictionary] = {}
        self._lock = threading.Lock()

    @property
    def backend_id(self) -> str:
        return "freedict-gloss"

    def dictionary(self, language: Language) -> FreedictDictionary:
        with self._lock:
            if language not in self._dictionaries:
                index_path, dict_path = _files(self.dict_dir, language)
                if not (index_path.is_file() and dict_path.is_file()):
                    raise TranslationUnavailable(
                        f"freedict English-{language.display} dictionary not found in {self.dict_dir}; "
                        f"install it with `apt-get install -y {APT_PACKAGES}`"
                    )
                self._dictionaries[language] = FreedictDictionary(index_path, dict_path)
                logger.debug("loaded freedict English-%s", language.display)
            return self._dictionaries[language]

    def translate(self, text: str, language: Language) -> str:
        dictionary = self.dictionary(Language(language))
        layout = Layout.of(text)
        words, gaps = layout.words, layout.gaps
        out, index = [gaps[0]], 0
        while index < len(words):
            sense, used = self._longest_match(dictionary, words, gaps, index)
            out.append(sense if sense is not None else words[index])
            index += used
            out.append(gaps[index])
        return "".join(out)

    @staticmethod
    def _longest_match(dictionary: FreedictDictionary, words: list[str], gaps: list[str],
                       start: int) -> tuple[str | None, int]:
        """The longest phrase at `start` the dictionary knows (words joined by single
        spaces only), as (sense, words used); (None, 1) when even the word is unknown."""
        for length in range(min(MAX_PHRASE_WORDS, len(words) - start), 1, -1):
            if all(gaps[start + k] == " " for k in range(1, length)):
                sense = dictionary.lookup(" ".join(words[start : start + length]))
                if sense:
                    return sense, length
        return dictionary.gloss_word(words[start]), 1
