"""WordNet for nltk, laid out from Debian's `wordnet-base` package.

`nltk.download` needs the internet; Debian ships the same WordNet 3.0 database files.
nltk's reader wants them under `<data dir>/corpora/wordnet/` plus a `lexnames` file that
Debian does not ship, so we copy the files once into a private nltk data directory and
write `lexnames` ourselves.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEBIAN_WORDNET = Path("/usr/share/wordnet")
APT_PACKAGES = "wordnet-base wordnet-sense-index"
DATA_DIR_ENV = "VITTLE_NLTK_DATA"
_DONE_MARKER = ".vittle-complete"

# The 45 lexicographer files of WordNet 3.0: number, name, syntactic category.
_LEXNAMES = (
    ["adj.all", "adj.pert", "adv.all"]
    + [f"noun.{n}" for n in (
        "Tops", "act", "animal", "artifact", "attribute", "body", "cognition", "communication",
        "event", "feeling", "food", "group", "location", "motive", "object", "person", "phenomenon",
        "plant", "possession", "process", "quantity", "relation", "shape", "state", "substance",
        "time",
    )]
    + [f"verb.{n}" for n in (
        "body", "change", "cognition", "communication", "competition", "consumption", "contact",
        "creation", "emotion", "motion", "perception", "possession", "social", "stative", "weather",
    )]
    + ["adj.ppl"]
)
_POS_NUMBER = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}


class WordNetUnavailable(RuntimeError):
    """WordNet's database files are not installed."""


def lexnames_text() -> str:
    """The standard `lexnames` file: "00\\tadj.all\\t3" ... "44\\tadj.ppl\\t3"."""
    lines = [f"{i:02d}\t{name}\t{_POS_NUMBER[name.split('.')[0]]}" for i, name in enumerate(_LEXNAMES)]
    return "\n".join(lines) + "\n"


def data_dir() -> Path:
    """The nltk data directory we manage (env VITTLE_NLTK_DATA overrides)."""
    return Path(os.environ.get(DATA_DIR_ENV) or Path.home() / ".cache" / "vittle" / "nltk_data")


def wordnet_unavailable(source: Path = DEBIAN_WORDNET) -> str | None:
    """Why WordNet cannot be loaded here, or None (installed by apt, or already laid out)."""
    if (data_dir() / "corpora" / "wordnet" / _DONE_MARKER).is_file() or (source / "data.noun").is_file():
        return None
    return f"WordNet is not installed (apt-get install {APT_PACKAGES})"


def ensure_wordnet(source: Path = DEBIAN_WORDNET) -> Path:
    """Lay out WordNet for nltk on first use and put its data dir on nltk's path."""
    import nltk  # heavy: nltk costs ~1 s to import: only when WordNet is wanted

    root = data_dir()
    target = root / "corpora" / "wordnet"
    if not (target / _DONE_MARKER).is_file():
        _install(source, target)
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    return root


def _install(source: Path, target: Path) -> None:
    if not (source / "data.noun").is_file():
        raise WordNetUnavailable(
            f"WordNet database not found in {source}. Install it with "
            f"`apt-get install -y {APT_PACKAGES}` (Debian/Ubuntu), then retry."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a sibling folder and rename it into place, so concurrent workers never
    # see a half-copied corpus.
    staging = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=target.parent))
    try:
        for item in source.iterdir():
            if item.is_file():  # copies, not links: the data dir must outlive the package
                shutil.copyfile(item, staging / item.name)
        (staging / "lexnames").write_text(lexnames_text(), encoding="utf-8")
        (staging / _DONE_MARKER).write_text("copied from " + str(source) + "\n", encoding="utf-8")
        if (target / _DONE_MARKER).is_file():
            return  # another process finished first
        if target.exists():
            shutil.rmtree(target)  # an old layout without our marker
        os.rename(staging, target)
        logger.info("laid out WordNet for nltk in %s", target)
    except OSError:
        if not (target / _DONE_MARKER).is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


_LOCK = threading.RLock()
"""nltk's reader seeks and reads shared file objects: one thread at a time."""


def wordnet() -> Any:
    """An nltk WordNetCorpusReader over our layout, ready to use (built once, also when many
    threads ask at once: a server's first synonym insertion for 16 users built it 16 times).

    nltk's stock `nltk.corpus.wordnet` spends ~6 s at load building a WordNet-version map
    that only its multilingual (OMW) functions use; ours skips that map.
    """
    with _LOCK:
        return _load_wordnet()


@functools.cache
def _load_wordnet() -> Any:
    root = ensure_wordnet()
    from nltk.corpus.reader.wordnet import WordNetCorpusReader  # heavy

    class _EnglishWordNet(WordNetCorpusReader):
        def map_wn(self, version: str = "wordnet") -> None:
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "multilingual functions are not available"
        return _EnglishWordNet(str(root / "corpora" / "wordnet"), None)


def synonyms(word: str) -> tuple[str, ...]:
    """Single-word WordNet lemmas sharing a synset with `word`, other than the word itself,
    in WordNet order (deterministic). Thread-safe."""
    with _LOCK:
        return _synonyms(word)


@functools.lru_cache(maxsize=4096)
def _synonyms(word: str) -> tuple[str, ...]:
    found: dict[str, None] = {}
    lowered = word.lower()
    for synset in wordnet().synsets(lowered):
        for lemma in synset.lemma_names():
            if lemma.isalpha() and lemma.lower() != lowered:
                found.setdefault(lemma, None)
    return tuple(found)
