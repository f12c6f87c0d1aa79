"""Closed-form benchmarks: multiple choice (ScienceQA-IMG, MMMU, MMStar, MMBench style) and
MME's yes/no pairs.

Multiple choice: the prompt lists the options as "A. ...", "B. ..." after the question and
ends with LLaVA's instruction "Answer with the option's letter from the given choices
directly."; the letter is read from a free answer by `extract_letter` (a bare letter, "B.",
"(B)", "B) ...", "The answer is B", or the text of exactly one option); an answer with no
letter is wrong. Questions file (JSON lines): `question_id`, `image`, `question`, `options`
(list), `answer` (letter or option text), optional `context` and `category`.

MME: JSON lines with `question_id`, `image`, `text` (the question, LLaVA's "Answer the
question using a single word or phrase." appended), `answer` ("Yes"/"No") and `category`
(the subtask). Each image has two questions, one "Yes" and one "No". An answer is read as
MME's scorer does (lower-case, periods dropped; "yes"/"no" exactly, else whichever of them
the first four characters hold, else neither). Per subtask: accuracy, accuracy+ (the share
of images with both questions right) and score = accuracy + accuracy+ (at most 200);
perception and cognition totals are sums over their subtasks.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
YES_NO_INSTRUCTION = "Answer the question using a single word or phrase."
MME_PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR")
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")

_ANSWER_IS = re.compile(r"\banswer is:?\s*\(?([A-Z])\b\)?")
_LEADING = re.compile(r"^\(?([A-Z])(?:[.):]|$)")
"""A bare letter, "B.", "B)", "B:", "(B)": not "A cat ..." (an article is not an option)."""


def mc_prompt(question: str, options: Sequence[str], context: str | None = None) -> str:
    """The multiple-choice prompt: context line (when given), question, lettered options, instruction."""
    if not 2 <= len(options) <= 26:
        raise ValueError(f"a multiple-choice question needs 2 to 26 options, got {len(options)}")
    lines = [f"Context: {context}"] if context else []
    lines.append(question.strip())
    lines += [f"{letter}. {str(option).strip()}" for letter, option in zip(string.ascii_uppercase, options)]
    lines.append(MC_INSTRUCTION)
    return "\n".join(lines)


def extract_letter(answer: str, options: Sequence[str]) -> str | None:
    """The option letter a free-form answer gives, or None."""
    letters = string.ascii_uppercase[: len(options)]
    text = answer.strip()
    if not text:
        return None
    match = _LEADING.match(text)
    if match and match.group(1) in letters:
        return match.group(1)
    match = _ANSWER_IS.search(text)
    if match and match.group(1) in letters:
        return match.group(1)
    said = text.lower().rstrip(".").strip()
    named = [letter for letter, option in zip(letters, options) if str(option).strip().lower() == said]
    return named[0] if len(named) == 1 else None


def gold_letter(answer: Any, options: Sequence[str]) -> str:
    """The correct option's letter from a letter, an index or the option's text."""
    letters = string.ascii_uppercase[: len(options)]
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(options):
        return letters[answer]
    text = str(answer).strip()
    if len(text) == 1 and text.upper() in letters:
        return text.upper()
    named = [letter for letter, option in zip(letters, options) if str(option).strip().lower() == text.lower()]
    if len(named) != 1:
        raise ValueError(f"the answer {answer!r} is neither a letter among {letters} nor exactly one option's text")
    return named[0]


def mc_scores(predictions: Sequence[str | None], golds: Sequence[str], categories: Sequence[str | None] | None = None) -> dict[str, Any]:
    """Accuracy (percent) overall and per category; `predictions` are extracted letters (None: no letter)."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions but {len(golds)} answers")
    if not golds:
        raise ValueError("nothing to score: no answers")
    categories = list(categories) if categories is not None else [None] * len(golds)
    groups: dict[str, list[bool]] = {}
    for predicted, gold, category in zip(predictions, golds, categories):
        for key in dict.fromkeys(([category] if category else []) + ["all"]):
            groups.setdefault(key, []).append(predicted == gold)
    result = {key: {"n": len(hits), "accuracy": 100.0 * sum(hits) / len(hits)} for key, hits in groups.items() if key != "all"}
    result["all"] = {"n": len(golds), "accuracy": 100.0 * sum(groups["all"]) / len(golds),
                     "no_letter": sum(p is None for p in predictions)}
    return result


def parse_mme(answer: str) -> str:
    """"yes", "no" or "other", by MME's rule."""
    text = answer.lower().strip().replace(".", "")
    if text in ("yes", "no"):
        return text
    head = text[:4]
    if "yes" in head:
        return "yes"
    if "no" in head:
        return "no"
    return "other"


def mme_scores(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """MME's scores from rows with `category`, `image`, `answer` (gold) and `prediction`
    (free text): per subtask accuracy, accuracy+ and score; perception and cognition totals."""
    if not rows:
        raise ValueError("nothing to score: no answers")
    by_task: dict[str, dict[Any, list[bool]]] = {}
    for row in rows:
        hit = parse_mme(str(row["prediction"])) == str(row["answer"]).strip().lower()
        by_task.setdefault(str(row["category"]), {}).setdefault(row["image"], []).append(hit)
    tasks: dict[str, dict[str, float]] = {}
    for task, images in sorted(by_task.items()):
        hits = [hit for answers in images.values() for hit in answers]
        accuracy = 100.0 * sum(hits) / len(hits)
        plus = 100.0 * sum(all(answers) for answers in images.values()) / len(images)
        tasks[task] = {"n": len(hits), "images": len(images), "accuracy": accuracy, "accuracy_plus": plus, "score": accuracy + plus}
    totals = {name: sum((tasks[t]["score"] for t in members if t in tasks), 0.0)
              for name, members in (("perception", MME_PERCEPTION), ("cognition", MME_COGNITION))}
    return {"tasks": tasks, **totals}
