"""Distribution shifts for robustness evaluation: the paper's 27 variants and more.

    from vittle.analysis.perturb import apply, all_paper_variants, list_perturbations
    image, text = apply("zoom_blur:3+greek", image=img, text="<image>\\nWhat is this?", seed=0)

Importing this package is cheap: imagecorruptions, nlpaug, nltk and httpx load on first use.
"""

from .api import apply, describe
from .registry import (
    PAPER_SEVERITY,
    PAPER_TEXT_LEVEL,
    REGISTRY,
    Category,
    Modality,
    Perturbation,
    all_paper_variants,
    get_perturbation,
    list_perturbations,
    spec_sets,
    unavailable,
)
from .spec import CLEAN, Spec, Step, expand_specs, parse_spec
from .translate import (
    Language,
    TranslationSettings,
    TranslationUnavailable,
    Translator,
    get_translator,
)

__all__ = [
    "CLEAN",
    "PAPER_SEVERITY",
    "PAPER_TEXT_LEVEL",
    "REGISTRY",
    "Category",
    "Language",
    "Modality",
    "Perturbation",
    "Spec",
    "Step",
    "TranslationSettings",
    "TranslationUnavailable",
    "Translator",
    "all_paper_variants",
    "expand_specs",
    "spec_sets",
    "unavailable",
    "apply",
    "describe",
    "get_perturbation",
    "get_translator",
    "list_perturbations",
    "parse_spec",
]
