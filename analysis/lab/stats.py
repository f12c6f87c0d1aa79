"""Paired statistics for the lab: arm-minus-baseline differences with bootstrap intervals.

Each arm is fine-tuned from the same base as the baseline of its seed and evaluated on the
same questions, so the comparison is paired twice: by seed (the base) and by question. The
95% interval resamples both, seeds and questions with replacement, and takes percentiles of
the mean difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Interval:
    """A paired difference in accuracy points: its mean, a 95% bootstrap interval, and the
    mean difference of each seed (in seed order)."""

    mean: float
    low: float
    high: float
    per_seed: list[float]

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_bootstrap(differences: np.ndarray, reps: int = 4000, seed: int = 0, level: float = 0.95) -> Interval:
    """`differences[s, q]`: arm minus baseline (in points, e.g. 100 * (hit_arm - hit_base),
    averaged over the specs of a group) for seed s and question q. Resamples seeds and
    questions independently with replacement; returns the mean and the percentile interval."""
    d = np.asarray(differences, dtype=np.float64)
    if d.ndim != 2 or 0 in d.shape:
        raise ValueError(f"differences must be a non-empty (seeds, questions) matrix, got shape {d.shape}")
    if not np.isfinite(d).all():
        raise ValueError("differences hold NaN or inf")
    rng = np.random.default_rng(seed)
    seeds, questions = d.shape
    seed_weights = rng.multinomial(seeds, [1.0 / seeds] * seeds, size=reps)  # (reps, seeds)
    question_weights = rng.multinomial(questions, [1.0 / questions] * questions, size=reps)  # (reps, questions)
    means = np.einsum("rs,sq,rq->r", seed_weights, d, question_weights) / (seeds * questions)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(d.mean()), float(low), float(high), [float(v) for v in d.mean(axis=1)])


def difference_matrix(arm: Sequence[Sequence[np.ndarray]], baseline: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """(seeds, questions) matrix of 100 * (arm - baseline) hits averaged over specs.

    `arm[s][k]` and `baseline[s][k]` are the boolean hits of seed s under spec k, one per
    question, in the same question order."""
    if len(arm) != len(baseline) or not arm:
        raise ValueError(f"{len(arm)} seeds for the arm but {len(baseline)} for the baseline")
    rows = []
    for a_specs, b_specs in zip(arm, baseline):
        if len(a_specs) != len(b_specs) or not a_specs:
            raise ValueError("arm and baseline must be evaluated under the same, non-empty spec list")
        a = np.stack([np.asarray(x, dtype=np.float64) for x in a_specs])
        b = np.stack([np.asarray(x, dtype=np.float64) for x in b_specs])
        if a.shape != b.shape:
            raise ValueError(f"arm hits {a.shape} and baseline hits {b.shape} differ in shape")
        rows.append(100.0 * (a - b).mean(axis=0))
    return np.stack(rows)


def seed_interval(per_seed: Sequence[float], level: float = 0.95) -> Interval:
    """A t-interval for the mean of per-seed differences: the seed-level analysis, for pooling
    seeds whose per-question records are not all at hand (it treats each seed's mean as one
    observation, so it leaves out the question-sampling part that `paired_bootstrap` adds)."""
    values = np.asarray(per_seed, dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise ValueError(f"need at least two per-seed values, got {values.size}")
    if not np.isfinite(values).all():
        raise ValueError("per-seed values hold NaN or inf")
    from scipy.stats import t  # heavy

    mean = float(values.mean())
    half = float(t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size))
    return Interval(mean, mean - half, mean + half, [float(v) for v in values])
