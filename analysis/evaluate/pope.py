"""POPE (Li et al., 2023): yes/no object-existence questions in three categories (random,
popular, adversarial), in LLaVA's files and with LLaVA's answer parsing.

Files:
- questions: LLaVA's `llava_pope_test.jsonl` (`question_id`, `image`, `text`, `category`);
- labels: a folder of `coco_pope_<category>.json`, JSON lines with `question_id`, `image`,
  `text` and `label` ("yes" / "no"), in the order of that category's questions in the
  question file (LLaVA's scorer pairs them by order; we pair them the same way and check that
  each pair names the same image, so a misaligned pair is an error, not a wrong score);
- answers: LLaVA's answers.jsonl (`vittle.analysis.evaluate.llava_files`).

An answer is parsed as LLaVA's `eval_pope.py` does: keep the text before the first ".",
drop commas, split on spaces; "no", "No" or "not" among the words means no, anything else
yes. Metrics with "yes" as the positive class: accuracy, precision, recall, F1, yes-ratio
(percent), per category and over all questions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vittle.analysis.evaluate.llava_files import FormatError, Question, read_jsonl

CATEGORIES = ("random", "popular", "adversarial")
LABEL_PREFIX = "coco_pope_"


def parse_yes_no(text: str) -> str:
    """"yes" or "no" from a free-form answer, by LLaVA's rule (see the module docstring)."""
    first = text.split(".")[0] if "." in text else text
    words = first.replace(",", "").split(" ")
    return "no" if any(word in ("no", "No", "not") for word in words) else "yes"


def read_labels(folder: str | Path) -> dict[str, list[dict[str, Any]]]:
    """{category: label rows in file order} from the `coco_pope_<category>.json` files of `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (POPE's label files coco_pope_<category>.json)")
    files = sorted(folder.glob(f"{LABEL_PREFIX}*.json"))
    if not files:
        raise FormatError(f"{folder}: no {LABEL_PREFIX}<category>.json label files")
    labels: dict[str, list[dict[str, Any]]] = {}
    for file in files:
        rows = read_jsonl(file)
        for number, row in enumerate(rows, 1):
            if str(row.get("label", "")).strip().lower() not in ("yes", "no"):
                raise FormatError(f"{file}, label {number}: 'label' must be yes or no, got {row.get('label')!r}")
        labels[file.name[len(LABEL_PREFIX):-len(".json")]] = rows
    return labels


def align_labels(questions: Sequence[Question], labels: Mapping[str, Sequence[dict[str, Any]]]) -> dict[Any, str]:
    """question_id -> "yes"/"no": the k-th question of a category takes the k-th label of
    that category's file. A pair that names different images, a category without a label
    file, or more questions than labels is a FormatError."""
    by_category: dict[str, list[Question]] = {}
    for question in questions:
        if question.category is None:
            raise FormatError(f"question {question.question_id!r} has no category (POPE's questions carry random, popular or adversarial)")
        by_category.setdefault(question.category, []).append(question)
    aligned: dict[Any, str] = {}
    for category, asked in by_category.items():
        if category not in labels:
            raise FormatError(f"no label file for the category {category!r} (have: {', '.join(sorted(labels)) or 'none'})")
        rows = labels[category]
        if len(asked) > len(rows):
            raise FormatError(f"category {category!r}: {len(asked)} questions but {len(rows)} labels")
        for index, (question, row) in enumerate(zip(asked, rows)):
            if question.image is not None and row.get("image") is not None and Path(question.image).name != Path(row["image"]).name:
                raise FormatError(f"category {category!r}, question {index + 1} (id {question.question_id!r}) is about "
                                  f"{question.image} but label {index + 1} about {row['image']}: the files are not in the same order")
            aligned[question.question_id] = str(row["label"]).strip().lower()
    return aligned


def pope_metrics(predictions: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 and yes-ratio (percent) with "yes" positive, and the counts.
    `predictions` are parsed answers ("yes"/"no")."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    if not labels:
        raise ValueError("nothing to score: no answers")
    tp = sum(p == "yes" and t == "yes" for p, t in zip(predictions, labels))
    fp = sum(p == "yes" and t == "no" for p, t in zip(predictions, labels))
    tn = sum(p == "no" and t == "no" for p, t in zip(predictions, labels))
    fn = sum(p == "no" and t == "yes" for p, t in zip(predictions, labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = len(labels)
    return {"n": n, "accuracy": 100.0 * (tp + tn) / n, "precision": 100.0 * precision, "recall": 100.0 * recall,
            "f1": 100.0 * f1, "yes_ratio": 100.0 * (tp + fp) / n, "tp": tp, "fp": fp, "tn": tn, "fn": fn}


def score_pope(answers: Sequence[Mapping[str, Any]], questions: Sequence[Question], labels: Mapping[Any, str]) -> dict[str, Any]:
    """{category: metrics, ..., "all": metrics} over the answered questions (answers are
    LLaVA answer rows; questions without an answer are left out and counted in "missing")."""
    by_id = {question.question_id: question for question in questions}
    texts = {}
    for row in answers:
        if row.get("question_id") not in by_id:
            raise FormatError(f"an answer names question_id {row.get('question_id')!r}, which is not in the question file")
        texts[row["question_id"]] = str(row.get("text", ""))
    parsed: dict[str, tuple[list[str], list[str]]] = {}
    for question in questions:
        if question.question_id not in texts:
            continue
        if question.question_id not in labels:
            raise FormatError(f"question {question.question_id!r} has no label")
        for key in dict.fromkeys((question.category or "all", "all")):
            predicted, truth = parsed.setdefault(key, ([], []))
            predicted.append(parse_yes_no(texts[question.question_id]))
            truth.append(labels[question.question_id])
    if not parsed:
        raise ValueError("nothing to score: no answered question")
    order = [c for c in CATEGORIES if c in parsed] + sorted(set(parsed) - set(CATEGORIES) - {"all"}) + ["all"]
    result: dict[str, Any] = {key: pope_metrics(*parsed[key]) for key in order}
    result["missing"] = len(questions) - len(texts)
    return result
