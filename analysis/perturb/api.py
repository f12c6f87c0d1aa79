"""The library entry point: `apply(spec, image=None, text=None, seed=0)`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .registry import Category
from .spec import Spec, Step, parse_spec
from .translate import Language, get_translator, translate_prompt

if TYPE_CHECKING:
    from PIL import Image

    from vittle.memo import Memo

    from .translate import Translator


def apply(
    spec: str | Spec,
    image: Image.Image | None = None,
    text: str | None = None,
    seed: int = 0,
    translator: Translator | None = None,
    memo: Memo | None = None,
) -> tuple[Image.Image | None, str | None]:
    """Perturb an (image, text) query by `spec`; returns the perturbed `(image, text)`.

    A step whose input is None is skipped, so one spec serves image-only and text-only
    samples. The same seed gives the same output; the caller's global RNG state is
    untouched. Translations use `translator`, or the backend configured by the
    environment (see `TranslationSettings.from_env`). `memo` (a `vittle.memo.Memo` the
    caller owns) keeps recent image corruptions, so repeating one costs nothing.
    """
    parsed = parse_spec(spec)
    if parsed.visual is not None and image is not None:
        from .visual import corrupt  # heavy

        image = corrupt(image, parsed.visual.name, parsed.visual.level, seed, memo)
    if parsed.text is not None and text is not None:
        text = _apply_text(parsed.text, text, seed, translator)
    return image, text


def _apply_text(step: Step, text: str, seed: int, translator: Translator | None) -> str:
    if step.perturbation.category is Category.SENTENCE:
        return translate_prompt(text, Language(step.name), translator or get_translator())
    from .text import perturb_text  # heavy

    return perturb_text(text, step.name, step.level, seed)


def describe(spec: str | Spec, translator: Translator | None = None) -> str:
    """A human-readable label, e.g. "Zoom blur (severity 3) + Greek (word gloss, freedict)"."""
    parsed = parse_spec(spec)
    if parsed.is_clean:
        return "Clean"
    labels = []
    for step in parsed.steps:
        entry = step.perturbation
        if entry.category is Category.SENTENCE and translator is not None:
            labels.append(translator.label(Language(step.name)))
        elif step.level is None:
            labels.append(entry.label)
        else:
            labels.append(f"{entry.label} ({'severity' if step.modality.value == 'visual' else 'level'} {step.level})")
    return " + ".join(labels)
