"""Typed results of the app's probes beyond the four answers: the answer distributions of a turn
with the shift's effect on them, and a severity sweep. Each has `to_dict` / `from_dict`, so a
turn's download (`vittle.app.record`) holds them as they were shown."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from vittle.distribution import AnswerDistribution, total_variation


@dataclass
class ShiftEffect:
    """What the shift did to one model's answer distribution."""

    clean_answer: str
    """The model's own (greedy) answer to the clean query."""
    clean_prob: float
    """Probability of that answer on the clean query (renormalised over the candidates)."""
    perturbed_prob: float
    """Probability of the same answer on the perturbed query."""
    total_variation: float
    """Total variation distance between the clean and the perturbed distribution (0..1)."""

    @property
    def drop(self) -> float:
        """How much probability the clean answer lost under the shift (negative: it gained)."""
        return self.clean_prob - self.perturbed_prob

    @classmethod
    def of(cls, clean_answer: str, clean: AnswerDistribution, perturbed: AnswerDistribution) -> ShiftEffect:
        return cls(clean_answer.strip(), clean.prob(clean_answer), perturbed.prob(clean_answer), total_variation(clean, perturbed))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "drop": self.drop}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShiftEffect:
        return cls(data["clean_answer"], data["clean_prob"], data["perturbed_prob"], data["total_variation"])


@dataclass
class TurnDistributions:
    """The four answers' distributions of a turn and, per model, the shift's effect."""

    distributions: dict[str, AnswerDistribution]
    """Role ("baseline_clean", ..., "vittle_perturbed") -> its distribution; a model's clean and
    perturbed distributions share their candidates."""
    effects: dict[str, ShiftEffect]
    """Model label -> the shift's effect on its distribution."""
    over: str
    """What the distributions are over, in words (shown under the charts)."""
    alpha: float | None = None
    """The Vittle model's inference alpha (None: its training alpha)."""
    unavailable: str = ""
    """Why there are no distributions (the models' family cannot score candidate answers yet; the
    page shows this instead of the charts); "" when there are."""

    def to_dict(self) -> dict[str, Any]:
        return {"distributions": {role: d.to_dict() for role, d in self.distributions.items()},
                "effects": {label: e.to_dict() for label, e in self.effects.items()}, "over": self.over, "alpha": self.alpha,
                **({"unavailable": self.unavailable} if self.unavailable else {})}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TurnDistributions:
        return cls({role: AnswerDistribution.from_dict(d) for role, d in data["distributions"].items()},
                   {label: ShiftEffect.from_dict(e) for label, e in data["effects"].items()}, data["over"], data.get("alpha"),
                   data.get("unavailable", ""))


@dataclass
class SweepPoint:
    severity: int
    spec: str
    clean_answer_prob: float
    """Probability of the model's clean answer on the query perturbed at this severity."""
    total_variation: float
    """Total variation distance from the clean query's distribution."""
    cosine_distance: float
    """Cosine distance between the clean and the perturbed query's layer-l last-token state."""
    best: str
    """The most likely candidate at this severity."""


@dataclass
class Sweep:
    """The current query at severities (and text levels) 1..5, for both models."""

    setting: str
    """In words: which shift is swept, e.g. "Frost, severity 1-5"."""
    clean_answers: dict[str, str]
    """Model label -> its answer to the clean query."""
    clean_probs: dict[str, float]
    """Model label -> the probability of that answer on the clean query (severity 0)."""
    points: dict[str, list[SweepPoint]]
    """Model label -> one point per severity, 1..5."""
    over: str
    alpha: float | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["points"] = {label: [asdict(p) for p in points] for label, points in self.points.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sweep:
        points = {label: [SweepPoint(**p) for p in rows] for label, rows in data["points"].items()}
        return cls(data["setting"], dict(data["clean_answers"]), dict(data["clean_probs"]), points, data["over"],
                   data.get("alpha"), data.get("seconds", 0.0), list(data.get("notes", [])))
