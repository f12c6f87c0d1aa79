"""The spec language and the registry the app's menus are built from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vittle.analysis.perturb import (
    REGISTRY,
    Category,
    Modality,
    all_paper_variants,
    apply,
    describe,
    list_perturbations,
    parse_spec,
)


def test_registry_lists_every_name_with_modality_and_category():
    by_modality = {m: [p.name for p in list_perturbations(m)] for m in Modality}
    assert len(by_modality[Modality.VISUAL]) == 9 and len(by_modality[Modality.TEXT]) == 9
    categories = {p.name: p.category for p in list_perturbations()}
    assert categories["zoom_blur"] is Category.BLUR and categories["contrast"] is Category.DIGITAL
    assert categories["frost"] is Category.WEATHER and categories["shot_noise"] is Category.NOISE
    assert categories["char_typo"] is Category.CHARACTER and categories["word_insert"] is Category.WORD
    assert categories["hindi"] is Category.SENTENCE and REGISTRY["hindi"].levels == ()
    assert {p.category.value for p in list_perturbations()} == {
        "blur", "digital", "weather", "noise", "character", "word", "sentence"}


def test_all_paper_variants_are_the_27():
    variants = all_paper_variants()
    assert len(variants) == len(set(variants)) == 27
    specs = [parse_spec(v) for v in variants]
    assert sum(s.visual is not None and s.text is None for s in specs) == 9
    assert sum(s.visual is None and s.text is not None for s in specs) == 9
    joint = {str(s) for s in specs if s.visual is not None and s.text is not None}
    assert joint == {f"{v}:3+{t}" for v in ("zoom_blur", "frost", "gaussian_noise")
                     for t in ("arabic", "greek", "hindi")}
    assert all_paper_variants(severity=5, level=1)[0] == "defocus_blur:5"


@pytest.mark.parametrize("text, canonical", [
    ("clean", "clean"), ("frost:3", "frost:3"), ("char_typo:2", "char_typo:2"), ("greek", "greek"),
    ("zoom_blur:3+greek", "zoom_blur:3+greek"), ("greek+zoom_blur:3", "zoom_blur:3+greek"),
    (" fog:1 + word_swap:5 ", "fog:1+word_swap:5"),
])
def test_parse_and_canonical_form(text, canonical):
    spec = parse_spec(text)
    assert str(spec) == canonical and parse_spec(str(spec)) == spec
    assert ":" not in spec.slug


@pytest.mark.parametrize("bad, hint", [
    ("glass_blur:2", "defocus_blur, zoom_blur"), ("frost:0", r"\[1, 2, 3, 4, 5\]"),
    ("frost:x", r"\[1, 2, 3, 4, 5\]"), ("frost", "needs a level"), ("greek:1", "takes no level"),
    ("fog:1+frost:2", "two visual"), ("greek+char_typo:1", "two text"), ("", "non-empty"),
])
def test_invalid_specs_name_the_valid_ones(bad, hint):
    with pytest.raises(ValueError, match=hint):
        parse_spec(bad)


def test_clean_and_missing_inputs_pass_through():
    assert apply("clean", image=None, text="hello") == (None, "hello")
    assert apply("frost:2", text="hello") == (None, "hello")  # no image to corrupt
    assert describe("zoom_blur:3+char_typo:2") == "Zoom blur (severity 3) + Keyboard typos (level 2)"


def test_import_is_light():
    """`import vittle.analysis.perturb` must not pull the heavy libraries (nlpaug imports torch)."""
    code = ("import sys, json, vittle.analysis.perturb; print(json.dumps(sorted(m for m in "
            "('imagecorruptions', 'nlpaug', 'nltk', 'httpx', 'torch', 'transformers', 'numpy', 'skimage') "
            "if m in sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                       cwd=Path(__file__).resolve().parents[2]).stdout)
    assert loaded == []


def test_a_new_visual_shift_is_one_registry_entry(monkeypatch):
    """Declared once (name, modality, category, label, whether it keeps the label), it lands in the
    visual spec sets and in the lab's label-keeping visual group, not in any text set."""
    from vittle.analysis.lab.plan import shift_groups
    from vittle.analysis.perturb import registry, spec_sets

    entry = registry.Perturbation("pixelate", registry.Modality.VISUAL, registry.Category.DIGITAL, "Pixelate")
    monkeypatch.setitem(registry.REGISTRY, "pixelate", entry)
    sets = spec_sets()
    assert "pixelate:3" in sets["paper-visual"] and "pixelate:3" in sets["paper"] and "pixelate:5" in sets["visual"]
    assert not any(s.startswith("pixelate") for s in sets["paper-text"] + sets["text"])
    assert len(sets["paper-visual"]) == 10 and len(sets["paper-text"]) == 9  # no slice hands a tenth visual shift to the text set
    assert "pixelate" in shift_groups()["visual, label-keeping"]
    assert registry.get_perturbation("pixelate") is entry
    assert "pixelate" not in shift_groups()["visual, colour-altering"] and "frost" in shift_groups()["visual, colour-altering"]
