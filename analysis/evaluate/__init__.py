"""Robustness evaluation: exact match, clean and under perturbations; POPE-style yes/no.

    from analysis.evaluate import load_samples, Variants, evaluate, expand_specs
"""

from .runner import (
           Variants,
           evaluate,
           expand_specs,
           load_samples,
           markdown_table,
           spec_sets,
)
from .scoring import normalize_answer, score, yes_no_metrics

__all__ = ["Variants", "evaluate", "expand_specs", "load_samples", "markdown_table", "normalize_answer", "score",
           "spec_sets", "yes_no_metrics"]
