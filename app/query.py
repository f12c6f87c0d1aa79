"""A user's query as the models get it: `Query` (the clean and perturbed image and question)
and `spec_of`, the perturbation spec of the menu's choices."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vittle.analysis.perturb import CLEAN, get_perturbation, parse_spec

NONE = "none"
ROLES = ("baseline_clean", "baseline_perturbed", "vittle_clean", "vittle_perturbed")


@dataclass
class Query:
    """One user query and its perturbed twin, ready for the models."""

    image: Any  # PIL image or None
    question: str
    perturbed_image: Any
    perturbed_question: str
    spec: str
    label: str
    notes: list[str] = field(default_factory=list)


def spec_of(visual: str | None = NONE, severity: int = 3, text: str | None = NONE, level: int = 3) -> str:
    """The spec string of a menu choice, e.g. ("frost", 3, "greek", 3) -> "frost:3+greek"."""
    steps = []
    for name, strength in ((visual, severity), (text, level)):
        if name and name != NONE:
            entry = get_perturbation(name)
            steps.append(f"{name}:{int(strength)}" if entry.has_levels else name)
    spec = "+".join(steps) or CLEAN
    parse_spec(spec)  # validates the levels
    return spec


def setting_name(spec: str) -> str:
    """A spec as the page names it, with the menus' labels: "frost:3+char_typo:3" -> "Frost 3 +
    Keyboard typos 3", "zoom_blur:2+greek" -> "Zoom blur 2 + Translation to Greek", "clean" ->
    "Clean". The one formatting of a setting for titles, legends and hover text."""
    parsed = parse_spec(spec)
    if parsed.is_clean:
        return "Clean"
    return " + ".join(step.perturbation.label if step.level is None else f"{step.perturbation.label} {step.level}"
                      for step in parsed.steps)
