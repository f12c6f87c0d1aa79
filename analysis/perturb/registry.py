"""The catalogue of perturbations: every name, its modality, category and valid levels.

The app builds its menus from `list_perturbations()`; the spec parser validates against
the same table, so a name exists in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from vittle.options import UsageError  # a spec is a setting: a wrong one is a usage error (exit 2)

from .translate import translation_unavailable
from .wordnet import wordnet_unavailable

LEVELS = (1, 2, 3, 4, 5)

# The 27 paper variants use one severity for every visual shift and one level for every
# character/word shift; the paper's severity study sweeps these separately.
PAPER_SEVERITY = 3
PAPER_TEXT_LEVEL = 3
# The joint variants pair these visual shifts with the three translations.
PAPER_JOINT_VISUAL = ("zoom_blur", "frost", "gaussian_noise")


class Modality(str, Enum):
    VISUAL = "visual"
    TEXT = "text"


class Category(str, Enum):
    BLUR = "blur"
    DIGITAL = "digital"
    WEATHER = "weather"
    NOISE = "noise"
    CHARACTER = "character"
    WORD = "word"
    SENTENCE = "sentence"


@dataclass(frozen=True)
class Perturbation:
    """One named shift of one modality."""

    name: str  # spec name, e.g. "frost" or "char_typo"
    modality: Modality
    category: Category
    label: str  # human-readable name for menus
    levels: tuple[int, ...] = LEVELS  # empty for translations, which have no strength
    keeps_label: bool = True
    """Whether the shift leaves the answer to a colour or shape question as it was: blur, noise,
    typos and word edits do; brightness, contrast, fog and frost change the very colour asked
    about; a translation into a script the models never saw is not a rewording of the question."""

    @property
    def has_levels(self) -> bool:
        return bool(self.levels)


def _visual(name: str, category: Category, label: str, keeps_label: bool = True) -> Perturbation:
    return Perturbation(name, Modality.VISUAL, category, label, LEVELS, keeps_label)


def _text(name: str, category: Category, label: str, levels: tuple[int, ...] = LEVELS, keeps_label: bool = True) -> Perturbation:
    return Perturbation(name, Modality.TEXT, category, label, levels, keeps_label)


# Categories follow ImageNet-C (brightness is a weather effect there) and MM_Robustness.
_ALL = (
    _visual("defocus_blur", Category.BLUR, "Defocus blur"),
    _visual("zoom_blur", Category.BLUR, "Zoom blur"),
    _visual("contrast", Category.DIGITAL, "Contrast", keeps_label=False),
    _visual("brightness", Category.WEATHER, "Brightness", keeps_label=False),
    _visual("fog", Category.WEATHER, "Fog", keeps_label=False),
    _visual("frost", Category.WEATHER, "Frost", keeps_label=False),
    _visual("gaussian_noise", Category.NOISE, "Gaussian noise"),
    _visual("shot_noise", Category.NOISE, "Shot noise"),
    _visual("speckle_noise", Category.NOISE, "Speckle noise"),
    _text("char_typo", Category.CHARACTER, "Keyboard typos"),
    _text("char_insert", Category.CHARACTER, "Character insertion"),
    _text("char_delete", Category.CHARACTER, "Character deletion"),
    _text("word_swap", Category.WORD, "Word swap"),
    _text("word_delete", Category.WORD, "Word deletion"),
    _text("word_insert", Category.WORD, "Synonym insertion"),
    _text("arabic", Category.SENTENCE, "Translation to Arabic", (), keeps_label=False),
    _text("greek", Category.SENTENCE, "Translation to Greek", (), keeps_label=False),
    _text("hindi", Category.SENTENCE, "Translation to Hindi", (), keeps_label=False),
)
REGISTRY: dict[str, Perturbation] = {p.name: p for p in _ALL}
"""Every perturbation by name: the one place a shift is declared (its modality, category, menu
label, levels and whether it keeps the label); the spec sets and the lab's groups derive from it."""
TRANSLATIONS = tuple(p.name for p in _ALL if p.category is Category.SENTENCE)


def list_perturbations(modality: Modality | str | None = None) -> list[Perturbation]:
    """All perturbations in catalogue order, optionally of one modality."""
    if modality is None:
        return list(REGISTRY.values())
    modality = Modality(modality)
    return [p for p in REGISTRY.values() if p.modality is modality]


def get_perturbation(name: str) -> Perturbation:
    """The entry for `name`; ValueError listing the valid names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown perturbation {name!r}; valid names: {', '.join(REGISTRY)}, or 'clean'") from None


def all_paper_variants(severity: int = PAPER_SEVERITY, level: int = PAPER_TEXT_LEVEL) -> list[str]:
    """The paper's 27 spec strings: 9 visual, 9 text, 9 joint (visual x translation)."""
    if severity not in LEVELS or level not in LEVELS:
        raise ValueError(f"severity and level must be in {list(LEVELS)}, got {severity} and {level}")
    visual = [f"{p.name}:{severity}" for p in list_perturbations(Modality.VISUAL)]
    text = [f"{p.name}:{level}" if p.has_levels else p.name for p in list_perturbations(Modality.TEXT)]
    joint = [f"{v}:{severity}+{t}" for v in PAPER_JOINT_VISUAL for t in TRANSLATIONS]
    return visual + text + joint


def unavailable(name: str) -> str | None:
    """Why perturbation `name` cannot run on this machine (its data is not installed: WordNet
    for synonym insertion, a translation backend for the translations), or None. Cheap: checks
    files and settings, loads nothing. Menus hide what is unavailable (the app)."""
    perturbation = get_perturbation(name)
    if perturbation.name == "word_insert":
        return wordnet_unavailable()
    if perturbation.category is Category.SENTENCE:
        return translation_unavailable()
    return None


def spec_sets() -> dict[str, list[str]]:
    """Named spec lists: "paper" (the 27 variants at severity 3) and its thirds "paper-visual",
    "paper-text", "paper-joint" (9 each); "visual" (every visual perturbation at severities
    1..5), "text" (every text perturbation at the paper's level, translations included),
    "full" (visual + text)."""
    visual = [f"{p.name}:{s}" for p in list_perturbations(Modality.VISUAL) for s in LEVELS]
    text = [f"{p.name}:{PAPER_TEXT_LEVEL}" if p.has_levels else p.name for p in list_perturbations(Modality.TEXT)]
    paper_visual = [f"{p.name}:{PAPER_SEVERITY}" for p in list_perturbations(Modality.VISUAL)]
    paper_text = [f"{p.name}:{PAPER_TEXT_LEVEL}" if p.has_levels else p.name for p in list_perturbations(Modality.TEXT)]
    paper_joint = [f"{v}:{PAPER_SEVERITY}+{t}" for v in PAPER_JOINT_VISUAL for t in TRANSLATIONS]
    return {"paper": paper_visual + paper_text + paper_joint, "paper-visual": paper_visual, "paper-text": paper_text,
            "paper-joint": paper_joint, "visual": visual, "text": text, "full": visual + text}
