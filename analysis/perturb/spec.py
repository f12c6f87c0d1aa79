"""The spec language: `clean`, `frost:3`, `char_typo:2`, `greek`, `zoom_blur:3+greek`.

A spec is at most one visual step and at most one text step joined by `+`, in any order.
Steps with levels need `name:level`; translations take none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vittle.options import UsageError

from .registry import LEVELS, REGISTRY, Modality, Perturbation, get_perturbation, spec_sets

CLEAN = "clean"


@dataclass(frozen=True)
class Step:
    """One perturbation at one level (level is None for translations)."""

    name: str
    level: int | None = None

    @property
    def perturbation(self) -> Perturbation:
        return REGISTRY[self.name]

    @property
    def modality(self) -> Modality:
        return self.perturbation.modality

    def __str__(self) -> str:
        return self.name if self.level is None else f"{self.name}:{self.level}"


@dataclass(frozen=True)
class Spec:
    """A parsed spec; `str(spec)` is its canonical form (visual step first)."""

    visual: Step | None = None
    text: Step | None = None

    @property
    def is_clean(self) -> bool:
        return self.visual is None and self.text is None

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(s for s in (self.visual, self.text) if s is not None)

    def __str__(self) -> str:
        return "+".join(str(s) for s in self.steps) or CLEAN

    @property
    def slug(self) -> str:
        """A folder-safe name: `zoom_blur:3+greek` -> `zoom_blur_3+greek`."""
        return str(self).replace(":", "_")


def parse_step(text: str) -> Step:
    """Parse `name` or `name:level`; ValueError naming what is valid."""
    name, sep, level_text = text.strip().partition(":")
    entry = get_perturbation(name.strip())
    if not entry.has_levels:
        if sep:
            raise UsageError(f"{entry.name!r} takes no level; write it as {entry.name!r}")
        return Step(entry.name)
    if not sep:
        raise UsageError(f"{entry.name!r} needs a level: {entry.name}:N with N in {list(entry.levels)}")
    try:
        level = int(level_text)
    except ValueError:
        level = None
    if level not in entry.levels:
        raise UsageError(f"invalid level {level_text!r} for {entry.name!r}; valid levels: {list(entry.levels)}")
    return Step(entry.name, level)


def parse_spec(spec: str | Spec) -> Spec:
    """Parse a spec string (a Spec passes through)."""
    if isinstance(spec, Spec):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"a spec must be a non-empty string such as 'frost:3' or {CLEAN!r}, got {spec!r}")
    if spec.strip() == CLEAN:
        return Spec()
    visual = text = None
    for part in spec.split("+"):
        step = parse_step(part)
        if step.modality is Modality.VISUAL:
            if visual is not None:
                raise UsageError(f"{spec!r} has two visual steps; a spec holds at most one visual and one text step")
            visual = step
        else:
            if text is not None:
                raise UsageError(f"{spec!r} has two text steps; a spec holds at most one visual and one text step")
            text = step
    return Spec(visual, text)


def valid_levels_text() -> str:
    """A one-line reminder of the grammar, for error messages and --help."""
    return f"name:level with level in {list(LEVELS)} (translations take no level), joined by '+', or {CLEAN!r}"


def expand_specs(text: str | Sequence[str], clean: bool = False) -> list[str]:
    """Spec-set names (`spec_sets()`: paper, paper-visual, paper-text, paper-joint, visual,
    text, full) and specs, comma-separated or as a list -> validated specs in order, duplicates
    dropped. `clean=True` puts "clean" first (what evaluation compares against); without it
    an empty list is an error."""
    items = text.split(",") if isinstance(text, str) else list(text)
    sets = spec_sets()
    specs = [CLEAN] if clean else []
    for item in (str(part).strip() for part in items):
        if item:
            specs.extend(sets[item] if item in sets else [str(parse_spec(item))])
    if not specs:
        raise UsageError(f"no specs given; use a set ({', '.join(sets)}) or a comma-separated list such as 'frost:3,greek'")
    return list(dict.fromkeys(specs))
