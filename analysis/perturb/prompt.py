"""Which parts of a benchmark prompt a text perturbation may touch, and its words.

A prompt such as "<image>\\nWhat is shown?\\nA. cat\\nB. dog\\nAnswer with the option's
letter from the given choices directly." has a protected prefix (the image placeholder),
a protected answer-format suffix, and a core in between. Only the core's words change;
option labels ("A.") stay, because the answer parser relies on them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

IMAGE_PLACEHOLDER = "<image>"

# Answer-format instructions of LLaVA-style benchmark prompts (POPE, VQAv2, GQA, MME,
# ScienceQA, MMMU, MMBench, SEED ...). They tell the model how to answer; damaging them
# would measure the parser, not robustness.
ANSWER_SUFFIXES = (
    "Answer with the option's letter from the given choices directly.",
    "Answer the question using a single word or phrase.",
    "Answer the question using a single word.",
    "Please answer yes or no.",
    "Answer yes or no.",
    "Please answer this question with one word.",
    "When the provided information is insufficient, respond with 'Unanswerable'.",
)

_PLACEHOLDER_RE = re.compile(r"\s*" + re.escape(IMAGE_PLACEHOLDER) + r"\s*")
_SUFFIX_RE = re.compile(r"(?:\s*(?:" + "|".join(re.escape(s) for s in ANSWER_SUFFIXES) + r"))+\s*$")
_WORD_RE = re.compile(r"\w+(?:['\u2019]\w+)*")
_OPTION_LABEL_RE = re.compile(r"(?:^|\n)[ \t]*\(?([A-Za-z])[.)](?=\s)")


@dataclass
class PromptParts:
    """A prompt split into protected and editable pieces: `str` joins them back."""

    pieces: list[str]  # alternating protected, editable, protected, ... (starts protected)

    @property
    def editable(self) -> list[str]:
        return self.pieces[1::2]

    def replace_editable(self, new: list[str]) -> PromptParts:
        pieces = list(self.pieces)
        pieces[1::2] = new
        return PromptParts(pieces)

    def __str__(self) -> str:
        return "".join(self.pieces)


def split_prompt(text: str) -> PromptParts:
    """Split `text` so every placeholder (with its line break) and the answer-format
    suffix are protected; editable pieces carry no outer whitespace."""
    suffix_match = _SUFFIX_RE.search(text)
    body, suffix = (text[: suffix_match.start()], suffix_match.group()) if suffix_match else (text, "")
    pieces = [""]
    cursor = 0
    for match in _PLACEHOLDER_RE.finditer(body):
        _add_editable(pieces, body[cursor : match.start()])
        pieces[-1] += match.group()
        cursor = match.end()
    _add_editable(pieces, body[cursor:])
    pieces[-1] += suffix
    return PromptParts(pieces)


def _add_editable(pieces: list[str], chunk: str) -> None:
    """Append `chunk` as an editable piece, keeping its outer whitespace protected."""
    core = chunk.strip()
    if not core:
        pieces[-1] += chunk
        return
    start = chunk.index(core)
    pieces[-1] += chunk[:start]
    pieces.append(core)
    pieces.append(chunk[start + len(core) :])


@dataclass
class Layout:
    """The words of an editable piece and the text around them.

    `gaps[i]` precedes `words[i]`; `gaps[-1]` follows the last word. Punctuation, line
    breaks and option labels live in the gaps, so word operations cannot damage them.
    """

    words: list[str]
    gaps: list[str]

    @classmethod
    def of(cls, text: str) -> Layout:
        labels = {m.start(1) for m in _OPTION_LABEL_RE.finditer(text)}
        words, gaps, cursor = [], [], 0
        for match in _WORD_RE.finditer(text):
            if match.start() in labels and len(match.group()) == 1:
                continue  # an option label: leave it in the gap
            gaps.append(text[cursor : match.start()])
            words.append(match.group())
            cursor = match.end()
        gaps.append(text[cursor:])
        return cls(words, gaps)

    def render(self, words: list[str] | None = None) -> str:
        """Join `words` (default: the layout's own) into the original gaps."""
        words = self.words if words is None else words
        if len(words) != len(self.words):
            raise ValueError(f"expected {len(self.words)} words, got {len(words)}")
        return "".join(g + w for g, w in zip(self.gaps, words)) + self.gaps[-1]

    def render_without(self, deleted: set[int], words: list[str] | None = None) -> str:
        """Render with the words at `deleted` removed, each with one adjoining space."""
        words = list(self.words if words is None else words)
        gaps = list(self.gaps)
        for index in sorted(deleted, reverse=True):
            after, before = gaps[index + 1], gaps[index]
            # Drop the word with the plain space after it ("the big dog"), else with the
            # plain space before it ("big dog?"); keep line breaks and punctuation.
            if after.isspace() and "\n" not in after:
                merged = before
            elif before.isspace() and "\n" not in before:
                merged = after
            else:
                merged = before + after
            gaps[index : index + 2] = [merged]
            del words[index]
        return "".join(g + w for g, w in zip(gaps, words)) + gaps[-1]

    def render_with(self, insertions: list[tuple[int, str]]) -> str:
        """Render with each (position, word) inserted before word `position` (or after
        the last word when position == len(words)), separated by a space."""
        words = list(self.words)
        gaps = list(self.gaps)
        for position, word in sorted(insertions, key=lambda item: item[0], reverse=True):
            if position < len(words):
                words.insert(position, word)
                gaps.insert(position + 1, " ")
            else:
                words.append(word)
                gaps.insert(len(gaps) - 1, " ")
        return "".join(g + w for g, w in zip(gaps, words)) + gaps[-1]
