"""Character and word perturbations: amount per level, protected parts, determinism,
real WordNet synonyms, and no leak into the caller's random state."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from vittle.analysis.perturb import apply
from vittle.analysis.perturb.prompt import Layout, split_prompt
from vittle.analysis.perturb.text import STOPWORDS, TEXT_OPS, perturb_text

from . import need

QUESTION = (
    "Looking carefully at the crowded street market scene in this photograph, which colourful "
    "object is the elderly woman standing beside the fruit stall holding in her right hand while "
    "she talks with the young vendor wearing a striped apron and a straw hat?"
)
MCQ_SUFFIX = "\nAnswer with the option's letter from the given choices directly."
SHORT_SUFFIX = "\nAnswer the question using a single word or phrase."
PROMPT = f"<image>\n{QUESTION}\nA. a basket\nB. an umbrella{MCQ_SUFFIX}"
N_WORDS = len(Layout.of(QUESTION).words)


def _levenshtein(a: list | str, b: list | str) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def _core(prompt: str) -> str:
    return split_prompt(prompt).editable[0]


def _changed_words(level: int, words: int = N_WORDS) -> int:
    return max(1, math.ceil(0.05 * level * words))


def test_the_six_operations():
    assert TEXT_OPS == ("char_typo", "char_insert", "char_delete", "word_swap", "word_delete", "word_insert")


def test_prompt_split_protects_placeholder_and_answer_format():
    parts = split_prompt(PROMPT)
    assert parts.pieces[0] == "<image>\n"
    assert parts.pieces[-1] == MCQ_SUFFIX
    assert str(parts) == PROMPT
    layout = Layout.of(parts.editable[0])
    assert "A" not in layout.words and "B" not in layout.words  # option labels are not words
    assert layout.render() == parts.editable[0]


@pytest.mark.parametrize("name", TEXT_OPS)
@pytest.mark.parametrize("suffix", [MCQ_SUFFIX, SHORT_SUFFIX])
def test_protected_parts_survive_every_level(name, suffix):
    prompt = f"<image>\n{QUESTION}{suffix}"
    for level in range(1, 6):
        out = perturb_text(prompt, name, level, seed=level)
        assert out.startswith("<image>\n") and out.endswith(suffix)
        assert out.count("<image>") == 1
        assert out != prompt


@pytest.mark.parametrize("name", ["char_typo", "char_insert", "char_delete"])
def test_character_edits_per_level(name):
    for level in range(1, 6):
        words = _changed_words(level)
        out = _core(perturb_text(f"<image>\n{QUESTION}{SHORT_SUFFIX}", name, level, seed=3))
        distance = _levenshtein(QUESTION, out)
        # each changed word gets 1..ceil(30% of its letters) edits (nlpaug's default, at most 10)
        longest = max(len(w) for w in Layout.of(QUESTION).words)
        assert 1 <= distance <= words * min(10, math.ceil(0.3 * longest)) * 2, (level, distance, out)
        if name != "char_typo":  # a typo can turn a letter into a space; the others cannot
            changed = sum(a != b for a, b in zip(QUESTION.split(), out.split(), strict=True))
            assert changed == words, (level, changed, out)


def test_more_level_more_change_on_average():
    for name in TEXT_OPS:
        mean = [np.mean([_levenshtein(QUESTION, _core(perturb_text(QUESTION, name, level, seed=s)))
                         for s in range(4)]) for level in (1, 3, 5)]
        assert mean[0] < mean[1] < mean[2], (name, mean)


def test_word_swap_moves_words_without_losing_any():
    for level in range(1, 6):
        out = _core(perturb_text(QUESTION, "word_swap", level, seed=0))
        before, after = Layout.of(QUESTION).words, Layout.of(out).words
        assert sorted(w.lower() for w in before) == sorted(w.lower() for w in after)
        moved = sum(a.lower() != b.lower() for a, b in zip(before, after))
        assert 2 <= moved <= 2 * _changed_words(level), (level, moved)


def test_word_delete_removes_exactly_the_rate():
    for level in range(1, 6):
        out = _core(perturb_text(QUESTION, "word_delete", level, seed=0))
        after = Layout.of(out).words
        assert len(after) == N_WORDS - _changed_words(level)
        assert _levenshtein([w.lower() for w in Layout.of(QUESTION).words], [w.lower() for w in after]) == \
            _changed_words(level)
        assert "  " not in out and out.endswith("?")


def test_word_insert_adds_real_wordnet_synonyms():
    need_wordnet()
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    from vittle.analysis.perturb.wordnet import wordnet

    reader = wordnet()
    assert isinstance(reader, WordNetCorpusReader)
    original = Layout.of(QUESTION).words
    for level in (1, 3, 5):
        after = Layout.of(_core(perturb_text(QUESTION, "word_insert", level, seed=level))).words
        assert len(after) == N_WORDS + _changed_words(level)
        inserted = _inserted(original, after)
        assert len(inserted) == _changed_words(level)
        for word in inserted:
            sources = [w for w in original if w.lower() not in STOPWORDS]
            assert any(word in {lemma for s in reader.synsets(src.lower()) for lemma in s.lemma_names()}
                       and word.lower() != src.lower() for src in sources), word


def _inserted(original: list[str], after: list[str]) -> list[str]:
    """The words of `after` that an order-preserving match with `original` leaves over."""
    extra, cursor = [], 0
    for word in after:
        if cursor < len(original) and word == original[cursor]:
            cursor += 1
        else:
            extra.append(word)
    assert cursor == len(original)
    return extra


def need_wordnet():
    need(Path("/usr/share/wordnet/data.noun").is_file(), "WordNet missing: apt-get install wordnet-base")


@pytest.mark.parametrize("name", TEXT_OPS)
def test_deterministic_for_a_seed_and_varies_across_seeds(name):
    if name == "word_insert":
        need_wordnet()
    outs = {seed: perturb_text(PROMPT, name, 3, seed=seed) for seed in (0, 1, 2, 3)}
    assert perturb_text(PROMPT, name, 3, seed=0) == outs[0]
    assert apply(f"{name}:3", text=PROMPT, seed=0)[1] == outs[0]
    assert len(set(outs.values())) > 1


def test_caller_random_state_is_untouched():
    need_wordnet()
    random.seed(9)
    np.random.seed(9)
    expected = (random.random(), np.random.rand())
    random.seed(9)
    np.random.seed(9)
    for name in TEXT_OPS:
        perturb_text(PROMPT, name, 2, seed=4)
    assert (random.random(), np.random.rand()) == expected


@pytest.mark.parametrize("name", ["char_typo", "char_insert", "char_delete", "word_insert"])
def test_short_text_still_changes(name):
    if name == "word_insert":
        need_wordnet()
    for text in ("<image>\nIs it red?", "<image>\nIs it on?"):  # the second: function words only
        assert perturb_text(text, name, 1, seed=0) != text


@pytest.mark.parametrize("name", TEXT_OPS)
def test_nothing_to_perturb_is_left_alone(name):
    for text in ("", "<image>\n", "<image>\n???" + SHORT_SUFFIX, SHORT_SUFFIX.strip()):
        assert perturb_text(text, name, 5, seed=0) == text


def test_unknown_operation_or_level():
    with pytest.raises(ValueError, match="char_typo"):
        perturb_text("hello", "char_swap", 1)
    with pytest.raises(ValueError, match=r"\[1, 2, 3, 4, 5\]"):
        perturb_text("hello", "word_swap", 0)


def test_same_output_in_another_process():
    """Reruns must reproduce the text exactly, whatever the process's hash seed."""
    import json
    import os
    import subprocess
    import sys

    need_wordnet()
    code = ("import json, sys; from vittle.analysis.perturb.text import perturb_text, TEXT_OPS; "
            "print(json.dumps([perturb_text(sys.argv[1], op, 4, seed=11) for op in TEXT_OPS]))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run([sys.executable, "-c", code, PROMPT], capture_output=True, text=True, env=env,
                            check=True, cwd=Path(__file__).resolve().parents[2])
    assert json.loads(result.stdout) == [perturb_text(PROMPT, op, 4, seed=11) for op in TEXT_OPS]


def test_synonym_insertion_is_thread_safe_from_a_cold_start():
    """nltk's WordNet reader seeks and reads shared files: unguarded, 16 server threads asking
    at once built it 16 times (74 s) and read torn lines (WordNetError). Results from 8
    threads at once must equal the sequential ones."""
    import threading

    from vittle.analysis.perturb import wordnet as wordnet_module

    need_wordnet()
    questions = [f"Is there a red circle near the big square number {i}?" for i in range(8)]
    expected = [perturb_text(q, "word_insert", 3, seed=i) for i, q in enumerate(questions)]
    wordnet_module._load_wordnet.cache_clear()
    wordnet_module._synonyms.cache_clear()
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            results[index] = perturb_text(questions[index], "word_insert", 3, seed=index)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:1]
    assert [results[i] for i in range(8)] == expected
