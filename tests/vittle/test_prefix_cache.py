"""The prompt-prefix cache of `Assistant.embed`: more questions about images already embedded
run only their own tokens, and give the embeddings of the full computation."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from vittle.config import BottleneckConfig
from vittle.inference import Assistant, PrefixCache
from vittle.model import attach_bottleneck, bottleneck_alpha
from vittle.toy.shapes import COLOURS, draw_shape


@pytest.fixture
def pair():
    """Two assistants over the same tiny Vittle model: one plain, one with the prefix cache."""
    from vittle.toy.tiny import build_tiny_llava

    model, processor = build_tiny_llava(seed=3)
    attach_bottleneck(model, BottleneckConfig(layer=1))
    plain, cached = Assistant(model, processor), Assistant(model, processor)
    cached.enable_prefix_cache(64 * 1024 * 1024)
    return plain, cached


def _images(count: int) -> list[Image.Image]:
    rng = random.Random(0)
    return [draw_shape(rng.choice(["circle", "square", "triangle"]), COLOURS[rng.choice(list(COLOURS))], 32, rng) for _ in range(count)]


def test_new_questions_on_cached_images_equal_the_full_computation(pair):
    plain, cached = pair
    images = _images(6)
    first = ["What colour is the shape?"] * 6
    assert np.allclose(cached.embed(images, first, batch_size=4), plain.embed(images, first, batch_size=4), atol=1e-5)
    assert len(cached.prefix_cache) == 6 and cached.prefix_cache.misses == 6 and cached.prefix_cache.hits == 0
    # other questions of different lengths, typos, in batches that mix lengths
    second = ["Wht colour is teh shape?", "Is there a circle?", "What shape is it, exactly and precisely?", "colour", "Is it red?", "?"]
    expected = plain.embed(images, second, batch_size=4)
    got = cached.embed(images, second, batch_size=4)
    assert cached.prefix_cache.hits == 6  # every query took the cached path
    assert got.shape == expected.shape and np.allclose(got, expected, atol=1e-5)
    with bottleneck_alpha(plain.model, 0.0):  # the bottleneck acts after layer l: the prefix does not depend on it
        assert np.allclose(cached.embed(images, second), plain.embed(images, second), atol=1e-5)


def test_uncached_images_and_own_placeholders_take_the_full_path(pair):
    plain, cached = pair
    images = _images(4)
    cached.embed(images[:2], ["What colour?"] * 2)
    mixed = cached.embed(images, ["Which shape?"] * 4)  # two of four cached: the whole batch runs in full
    assert np.allclose(mixed, plain.embed(images, ["Which shape?"] * 4), atol=1e-5)
    own = ["Look: <image>\nwhat colour?"] * 4  # the image inside the question: its prefix differs
    assert np.allclose(cached.embed(images, own), plain.embed(images, own), atol=1e-5)
    assert np.allclose(cached.embed([None, None], ["Hi", "Hello there"]), plain.embed([None, None], ["Hi", "Hello there"]), atol=1e-5)


def test_the_cache_stays_within_its_bound(pair):
    plain, cached = pair
    images = _images(8)
    cached.embed(images[:1], ["What colour?"])
    one = cached.prefix_cache.bytes
    cached.enable_prefix_cache(3 * one + 1)  # room for three images
    cached.embed(images, ["What colour?"] * 8)
    assert len(cached.prefix_cache) == 3 and cached.prefix_cache.bytes <= 3 * one + 1
    assert cached.prefix_cache.get(PrefixCache.key(images[-1])) is not None  # the most recent stay
    assert cached.prefix_cache.get(PrefixCache.key(images[0])) is None
    cached.clear_prefix_cache()
    assert len(cached.prefix_cache) == 0 and cached.prefix_cache.bytes == 0
    with pytest.raises(ValueError, match="max_bytes=0 must be positive"):
        PrefixCache(0)
