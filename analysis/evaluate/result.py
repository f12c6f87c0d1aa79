"""What an evaluation returns: scores per spec with every question and prediction kept.

    result = evaluate(assistant, samples, ["clean", "frost:3"])
    result.accuracy("frost:3")            # percent
    result.predictions("frost:3")         # one answer per sample, in sample order
    EvalResult.from_json(result.to_json()) == result
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FORMAT_VERSION = 2
"""1: three example predictions per spec; 2: every question and prediction."""


@dataclass
class SpecScore:
    """One spec: exact-match scores (`vittle.analysis.evaluate.scoring.score`) and the inputs and
    answers they were computed from."""

    spec: str
    accuracy: float
    """Percent of questions answered exactly (after normalisation)."""
    n: int
    by_kind: dict[str, float]
    n_by_kind: dict[str, int]
    questions: list[str]
    """The questions as asked (perturbed for a text shift), in sample order."""
    predictions: list[str]
    """The model's answers, in sample order."""
    grounded: float | None = None
    """Accuracy on the colour and shape questions, when there are any."""
    yes_no: dict[str, Any] | None = None
    """POPE-style metrics of the yes/no questions (with "plain" / "negated" splits), when there are any."""

    @classmethod
    def from_scores(cls, spec: str, scores: dict[str, Any], questions: list[str], predictions: list[str]) -> SpecScore:
        return cls(spec=spec, accuracy=scores["accuracy"], n=scores["n"], by_kind=scores["by_kind"], n_by_kind=scores["n_by_kind"],
                   questions=list(questions), predictions=list(predictions), grounded=scores.get("grounded"),
                   yes_no=scores.get("yes_no"))

    def to_json(self) -> dict[str, Any]:
        data = {"accuracy": self.accuracy, "n": self.n, "by_kind": self.by_kind, "n_by_kind": self.n_by_kind}
        if self.grounded is not None:
            data["grounded"] = self.grounded
        if self.yes_no is not None:
            data["yes_no"] = self.yes_no
        return {**data, "questions": self.questions, "predictions": self.predictions}

    @classmethod
    def from_json(cls, spec: str, data: dict[str, Any]) -> SpecScore:
        return cls.from_scores(spec, data, data["questions"], data["predictions"])


@dataclass
class EvalResult:
    """One model on one sample list under several specs (in evaluation order)."""

    n_questions: int
    scores: dict[str, SpecScore]
    seconds: float = 0.0
    answers: list[str] = field(default_factory=list)
    """The reference answers, in sample order."""

    @property
    def specs(self) -> list[str]:
        return list(self.scores)

    def accuracy(self, spec: str) -> float:
        return self._score(spec).accuracy

    def accuracies(self) -> dict[str, float]:
        """{spec: accuracy (%)}, in evaluation order."""
        return {spec: score.accuracy for spec, score in self.scores.items()}

    def predictions(self, spec: str) -> list[str]:
        return self._score(spec).predictions

    def _score(self, spec: str) -> SpecScore:
        if spec not in self.scores:
            raise KeyError(f"spec {spec!r} was not evaluated; evaluated: {', '.join(self.scores)}")
        return self.scores[spec]

    def to_json(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "n_questions": self.n_questions, "seconds": self.seconds,
                "answers": self.answers, "results": {spec: score.to_json() for spec, score in self.scores.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvalResult:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"evaluation results of format {version!r}; this version reads format {FORMAT_VERSION} "
                             "(results written before it kept three predictions per spec: evaluate again)")
        return cls(n_questions=data["n_questions"], seconds=data.get("seconds", 0.0), answers=list(data.get("answers", [])),
                   scores={spec: SpecScore.from_json(spec, entry) for spec, entry in data["results"].items()})
