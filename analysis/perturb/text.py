"""The six character/word perturbations of MM_Robustness, on nlpaug and WordNet.

Level L changes a share 0.05 * L of the words (at least one): for character operations
that share of words each get character edits (nlpaug's default 30% of their letters), for
word operations that share of words is swapped, deleted, or gets a synonym inserted.
Only the editable core of a prompt changes (see `prompt.py`), and only whole words:
punctuation, line breaks and option labels stay where they are.
"""

from __future__ import annotations

import functools
import math
import random
from typing import Any

from ._rng import derive_seed, seeded_global_rng
from .prompt import Layout, split_prompt
from .registry import LEVELS, Category, list_perturbations
from .wordnet import synonyms

TEXT_OPS = tuple(p.name for p in list_perturbations() if p.category in (Category.CHARACTER, Category.WORD))
WORD_RATE_PER_LEVEL = 0.05
NLPAUG_MIN_CHAR = 4  # nlpaug's default: shorter words get no character edits
_JOIN = "\x1f"  # joins words for nlpaug; never produced by its edits
# Function words are skipped as sources of synonyms: WordNet maps "a" to "angstrom" and
# "in" to "Indiana", which tests the model's patience more than its robustness.
STOPWORDS = frozenset({
    "a", "an", "the", "and", "or", "but", "if", "of", "at", "by", "for", "with", "about", "to",
    "from", "in", "on", "off", "out", "over", "under", "up", "down", "is", "are", "was", "were",
    "be", "been", "being", "am", "do", "does", "did", "have", "has", "had", "can", "could", "will",
    "would", "shall", "should", "may", "might", "must", "i", "me", "my", "we", "our", "you", "your",
    "he", "him", "his", "she", "her", "it", "its", "they", "them", "their", "this", "that", "these",
    "those", "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "there",
    "here", "not", "no", "so", "than", "too", "very", "as", "into", "onto",
})


def word_rate(level: int) -> float:
    """Share of words changed at `level` (MM_Robustness: 0.05 * level)."""
    return WORD_RATE_PER_LEVEL * level


def perturb_text(text: str, name: str, level: int, seed: int = 0) -> str:
    """Apply text operation `name` at `level` to the editable parts of a prompt."""
    if name not in TEXT_OPS:
        raise ValueError(f"unknown text operation {name!r}; valid: {', '.join(TEXT_OPS)}")
    if level not in LEVELS:
        raise ValueError(f"invalid level {level!r} for {name!r}; valid: {list(LEVELS)}")
    parts = split_prompt(text)
    edited = [
        _perturb_piece(piece, name, level, derive_seed(seed, name, level, index))
        for index, piece in enumerate(parts.editable)
    ]
    return str(parts.replace_editable(edited))


def _perturb_piece(piece: str, name: str, level: int, seed: int) -> str:
    layout = Layout.of(piece)
    if not layout.words:
        return piece
    if name == "word_insert":
        return _insert_synonyms(layout, word_rate(level), random.Random(seed))
    if name in ("word_swap", "word_delete"):
        return _word_op(layout, name, word_rate(level), seed)
    return _char_op(layout, name, word_rate(level), seed)


def _char_op(layout: Layout, name: str, rate: float, seed: int) -> str:
    longest = max(len(w) for w in layout.words)
    # Guarantee an edit when every word is short: relax nlpaug's minimum word length,
    # but never delete the only letter of a word.
    min_char = NLPAUG_MIN_CHAR if longest >= NLPAUG_MIN_CHAR else (2 if name == "char_delete" else 1)
    if longest < min_char:
        return layout.render()
    augmenter = _char_augmenter(name, rate, min_char)
    with seeded_global_rng(seed):
        tokens = augmenter.augment(_JOIN.join(layout.words))[0].split(_JOIN)
    return layout.render(tokens)


def _word_op(layout: Layout, name: str, rate: float, seed: int) -> str:
    augmenter = _word_augmenter(name, rate)
    with seeded_global_rng(seed):
        tokens = augmenter.augment(_JOIN.join(layout.words))[0].split(_JOIN)
    if name == "word_swap":
        return layout.render(tokens)
    deleted, aligned = _align_deletion(layout.words, tokens)
    return layout.render_without(deleted, aligned)


def _align_deletion(original: list[str], kept: list[str]) -> tuple[set[int], list[str]]:
    """Which words a deletion removed, and the words with the survivors' new spelling
    in place (nlpaug capitalizes a word that becomes the first)."""
    deleted, aligned, cursor = set(), list(original), 0
    for index, word in enumerate(original):
        if cursor < len(kept) and kept[cursor].lower() == word.lower():
            aligned[index] = kept[cursor]
            cursor += 1
        else:
            deleted.add(index)
    return deleted, aligned


def _insert_synonyms(layout: Layout, rate: float, rng: random.Random) -> str:
    """Insert WordNet synonyms of random words at random positions (no POS tagging:
    nltk's tagger data is not installable offline, and EDA-style insertion needs none)."""
    with_synonyms = [i for i, w in enumerate(layout.words) if synonyms(w)]
    # Content words first; function words only when nothing else has a synonym.
    candidates = [i for i in with_synonyms if layout.words[i].lower() not in STOPWORDS] or with_synonyms
    if not candidates:
        return layout.render()
    count = max(1, math.ceil(rate * len(layout.words)))
    insertions = []
    for _ in range(count):
        source = layout.words[rng.choice(candidates)]
        insertions.append((rng.randint(0, len(layout.words)), rng.choice(synonyms(source))))
    return layout.render_with(insertions)


def _split_words(text: str) -> list[str]:
    return text.split(_JOIN)


@functools.cache
def _char_augmenter(name: str, rate: float, min_char: int) -> Any:
    import nlpaug.augmenter.char as nac  # heavy: ~2-6 s import (pulls torch): only when needed

    common = {"aug_word_p": rate, "aug_word_min": 1, "aug_word_max": None, "min_char": min_char,
              "tokenizer": _split_words, "reverse_tokenizer": _JOIN.join}
    if name == "char_typo":
        return nac.KeyboardAug(**common)
    action = {"char_insert": "insert", "char_delete": "delete"}[name]
    return nac.RandomCharAug(action=action, **common)


@functools.cache
def _word_augmenter(name: str, rate: float) -> Any:
    import nlpaug.augmenter.word as naw  # heavy

    action = {"word_swap": "swap", "word_delete": "delete"}[name]
    return naw.RandomWordAug(action=action, aug_p=rate, aug_min=1, aug_max=None,
                             tokenizer=_split_words, reverse_tokenizer=_JOIN.join)
