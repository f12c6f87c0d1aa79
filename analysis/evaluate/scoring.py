"""Exact-match accuracy, per question kind, and POPE-style yes/no metrics."""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

_PUNCT = re.compile(r"[^\w\s]")
GROUNDED_KINDS = ("color", "shape")
"""Question kinds that cannot be answered without the image (easy-vqa's open questions); their
accuracy is reported as `grounded`."""


def normalize_answer(text: str) -> str:
    """Lower-case, strip punctuation and surrounding space: "Yes." and "yes" match."""
    text = unicodedata.normalize("NFKC", text).strip().lower()
    return " ".join(_PUNCT.sub(" ", text).split())


def yes_no_metrics(predictions: Sequence[str], answers: Sequence[str]) -> dict[str, float]:
    """POPE's metrics with "yes" as the positive class: accuracy, precision, recall, F1 and
    the share of "yes" predictions. Predictions other than yes/no count as wrong ("no" for
    precision/recall, as POPE does)."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} answers")
    if not answers:
        return {"n": 0}
    said_yes = [normalize_answer(p) == "yes" for p in predictions]
    is_yes = [normalize_answer(a) == "yes" for a in answers]
    correct = [normalize_answer(p) == normalize_answer(a) for p, a in zip(predictions, answers)]
    tp = sum(p and t for p, t in zip(said_yes, is_yes))
    fp = sum(p and not t for p, t in zip(said_yes, is_yes))
    fn = sum(not p and t for p, t in zip(said_yes, is_yes))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": len(answers),
        "accuracy": 100.0 * sum(correct) / len(answers),
        "precision": 100.0 * precision,
        "recall": 100.0 * recall,
        "f1": 100.0 * f1,
        "yes_ratio": 100.0 * sum(said_yes) / len(answers),
    }


def score(samples: Sequence[dict[str, Any]], predictions: Sequence[str]) -> dict[str, Any]:
    """Exact match (after `normalize_answer`) overall and per `kind`; yes/no questions also
    POPE-style, overall and split into plain and negated questions. Accuracies in percent."""
    if len(samples) != len(predictions):
        raise ValueError(f"{len(samples)} samples but {len(predictions)} predictions")
    if not samples:
        raise ValueError("nothing to score: no samples")
    by_kind: dict[str, list[bool]] = defaultdict(list)
    hits = []
    for sample, prediction in zip(samples, predictions):
        ok = normalize_answer(prediction) == normalize_answer(sample["answer"])
        hits.append(ok)
        by_kind[sample.get("kind") or "other"].append(ok)
    result: dict[str, Any] = {
        "n": len(samples),
        "accuracy": 100.0 * sum(hits) / len(hits),
        "by_kind": {kind: 100.0 * sum(v) / len(v) for kind, v in sorted(by_kind.items())},
        "n_by_kind": {kind: len(v) for kind, v in sorted(by_kind.items())},
    }
    grounded = [hit for kind, v in by_kind.items() if kind in GROUNDED_KINDS for hit in v]
    if grounded:
        result["grounded"] = 100.0 * sum(grounded) / len(grounded)
    yes_no = [(s, p) for s, p in zip(samples, predictions) if s.get("kind") == "yes/no"]
    if yes_no:
        result["yes_no"] = yes_no_metrics([p for _, p in yes_no], [s["answer"] for s, _ in yes_no])
        for name, negated in (("plain", False), ("negated", True)):
            part = [(s, p) for s, p in yes_no if bool(s.get("negated")) is negated]
            if part:
                result["yes_no"][name] = yes_no_metrics([p for _, p in part], [s["answer"] for s, _ in part])
    return result
