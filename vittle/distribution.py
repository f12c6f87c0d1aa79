"""How likely each candidate answer is: `AnswerDistribution` (what `Assistant.answer_distribution`
returns; scored by `vittle.scoring`) and the total variation between two of them. No torch here,
so the app's page code can read them.

A candidate's score is the log-probability of the whole answer, its end-of-answer token
included (so "red" and "red triangle" are different answers). The distribution is these
probabilities renormalised over the candidates; `coverage` says how much of the model's
probability the candidates hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class AnswerDistribution:
    """A model's probabilities over candidate answers to one query."""

    candidates: list[str]
    log_probs: list[float]
    """Full-sequence log-probability of each candidate as the complete answer (nats)."""

    @property
    def probs(self) -> np.ndarray:
        """The candidates' probabilities renormalised to sum to 1."""
        values = np.asarray(self.log_probs, dtype=np.float64)
        weights = np.exp(values - values.max())
        return weights / weights.sum()

    @property
    def coverage(self) -> float:
        """How much of the model's probability the candidates hold together (0..1)."""
        return float(np.exp(np.logaddexp.reduce(np.asarray(self.log_probs, dtype=np.float64))))

    @property
    def best(self) -> str:
        return self.candidates[int(np.argmax(self.log_probs))]

    def prob(self, answer: str) -> float:
        """The renormalised probability of `answer` (0.0 when it is not a candidate)."""
        answer = answer.strip()
        return float(self.probs[self.candidates.index(answer)]) if answer in self.candidates else 0.0

    def top(self, count: int) -> list[tuple[str, float]]:
        """The `count` most likely candidates and their probabilities, most likely first."""
        probs = self.probs
        order = np.argsort(-probs, kind="stable")[:count]
        return [(self.candidates[i], float(probs[i])) for i in order]

    def to_dict(self) -> dict[str, Any]:
        return {"candidates": list(self.candidates), "log_probs": [float(v) for v in self.log_probs],
                "probs": [float(v) for v in self.probs], "coverage": self.coverage}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnswerDistribution:
        return cls(list(data["candidates"]), [float(v) for v in data["log_probs"]])


def total_variation(p: AnswerDistribution, q: AnswerDistribution) -> float:
    """Total variation distance (half the L1 distance, 0..1) between two distributions over
    the same candidates."""
    if p.candidates != q.candidates:
        raise ValueError(f"the distributions have different candidates: {p.candidates} vs {q.candidates}")
    return float(0.5 * np.abs(p.probs - q.probs).sum())


def unique_answers(answers: Sequence[str]) -> list[str]:
    """Stripped, non-empty answers in first-seen order, each once."""
    return list(dict.fromkeys(a.strip() for a in answers if a and a.strip()))
