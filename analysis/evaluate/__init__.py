"""Robustness evaluation: exact match, clean and under perturbations; POPE-style yes/no.

    from vittle.analysis.evaluate import load_samples, Variants, evaluate
    from vittle.analysis.perturb import expand_specs   # expand_specs("paper", clean=True)
"""

from .result import EvalResult, SpecScore
from .runner import (
           Variants,
           evaluate,
           load_samples,
           markdown_table,
)
from .scoring import normalize_answer, score, yes_no_metrics

__all__ = ["EvalResult", "SpecScore", "Variants", "evaluate", "load_samples", "markdown_table", "normalize_answer", "score", "yes_no_metrics"]
