"""Property-based fuzzing of every parser that reads untrusted input: uploaded image bytes,
the app's question and level checks, perturbation specs and recipe overrides.

Each target either returns a valid value or raises its own clear error type (InputError,
ValueError); nothing else may escape. Derandomized, so CI runs the same cases every time;
the case counts are recorded in docs/reliability.md.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

FUZZ = settings(derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CASES = {"image bytes": 400, "mutated images": 400, "questions": 500, "levels": 300, "specs": 600, "overrides": 400}


def _encoded(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


VALID = {fmt: _encoded(fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")}


def _check_image(tmp_path, data: bytes) -> None:
    from vittle.app.inputs import InputError, load_query_image

    path = tmp_path / "upload"
    path.write_bytes(data)
    try:
        loaded = load_query_image(path)
    except InputError as err:
        assert str(err).startswith("The ") and "Traceback" not in str(err)
        return
    assert loaded is not None and loaded.image.mode == "RGB" and min(loaded.image.size) >= 1


@settings(FUZZ, max_examples=CASES["image bytes"])
@given(st.binary(min_size=0, max_size=2048))
def test_any_bytes_are_an_image_or_a_clear_refusal(tmp_path, data):
    _check_image(tmp_path, data)


@settings(FUZZ, max_examples=CASES["mutated images"])
@given(fmt=st.sampled_from(sorted(VALID)), cut=st.floats(0.0, 1.0),
       flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=8))
def test_truncated_or_corrupted_real_images_are_handled(tmp_path, fmt, cut, flips):
    data = bytearray(VALID[fmt])
    for where, value in flips:
        data[min(len(data) - 1, int(where * len(data)))] = value
    _check_image(tmp_path, bytes(data[: max(1, int(cut * len(data)))]))


@settings(FUZZ, max_examples=CASES["questions"])
@given(st.one_of(st.none(), st.text(max_size=3000)))
def test_questions_are_cleaned_or_refused(question):
    from vittle.app.inputs import MAX_QUESTION_CHARS, InputError, clean_question

    try:
        cleaned = clean_question(question)
    except InputError as err:
        assert "question" in str(err)
        return
    assert cleaned and cleaned == cleaned.strip() and len(cleaned) <= MAX_QUESTION_CHARS
    assert "<image>" not in cleaned and "\x00" not in cleaned


@settings(FUZZ, max_examples=CASES["levels"])
@given(st.one_of(st.integers(-10, 10), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5), st.none(), st.booleans()))
def test_levels_are_whole_numbers_or_refused(value):
    from vittle.app.inputs import InputError, whole_number

    try:
        level = whole_number("severity", value)
    except InputError as err:
        assert "whole number from 1 to 5" in str(err)
        return
    assert isinstance(level, int) and 1 <= level <= 5


def _spec_text():
    from vittle.analysis.perturb.registry import REGISTRY

    names = sorted(REGISTRY)
    step = st.builds(lambda n, sep, lvl: f"{n}{sep}{lvl}", st.sampled_from([*names, "frost", "nope", ""]),
                     st.sampled_from([":", "", "::", " : "]), st.one_of(st.integers(-2, 7).map(str), st.text(max_size=3)))
    return st.one_of(st.text(max_size=40), st.lists(step, min_size=1, max_size=3).map("+".join), st.just("clean"))


@settings(FUZZ, max_examples=CASES["specs"])
@given(_spec_text())
def test_specs_parse_to_a_canonical_form_or_a_value_error(text):
    from vittle.analysis.perturb.spec import parse_spec

    try:
        spec = parse_spec(text)
    except ValueError as err:
        assert str(err)
        return
    assert parse_spec(str(spec)) == spec  # the canonical form reads back as the same spec


def _override():
    keys = ["model.hidden_size", "model.num_layers", "model.residual_rms", "bottleneck.layer", "bottleneck.kl_weight",
            "bottleneck.alpha_max", "bottleneck.prior", "bottleneck.kind", "bottleneck.init_std", "train.lr", "train.max_steps",
            "train.epochs", "train.batch_size", "train.extra", "train.extra.max_grad_norm", "data.max_length", "train", "nope.x",
            "train.nope", ""]
    values = st.one_of(st.sampled_from(["1", "0", "-1", "0.5", "nan", ".nan", ".inf", "true", "null", "[1, 2]", "{a: 1}", "fixed",
                                        "1e309", "'3'", ":"]), st.text(max_size=8))
    return st.builds(lambda k, sep, v: f"{k}{sep}{v}", st.sampled_from(keys), st.sampled_from(["=", "", "=="]), values)


@settings(FUZZ, max_examples=CASES["overrides"])
@given(st.lists(_override(), max_size=3))
def test_recipe_overrides_build_a_valid_recipe_or_a_value_error(overrides):
    import math

    from vittle.config import RecipeConfig
    from vittle.settings import load_recipe

    try:
        recipe = load_recipe("tiny-shapes", overrides)
    except ValueError as err:
        assert str(err)
        return
    assert isinstance(recipe, RecipeConfig)
    assert math.isfinite(recipe.train.lr) and math.isfinite(recipe.bottleneck.kl_weight) and 0 <= recipe.bottleneck.alpha_max <= 1


@pytest.mark.parametrize("fmt", sorted(VALID))
def test_the_valid_images_behind_the_mutations_load(tmp_path, fmt):
    from vittle.app.inputs import load_query_image

    path = tmp_path / f"ok.{fmt.lower()}"
    path.write_bytes(VALID[fmt])
    assert load_query_image(path).image.size == (32, 24)
