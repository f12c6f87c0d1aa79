"""The EfficientNet-Lite0 tower as a transformers vision model inside a real LLaVA."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from vittle.toy import efficientnet
from vittle.toy.efficientnet import (
    EfficientNetLiteVisionConfig,
    FeatureCache,
    pretrained_state_dict,
    use_feature_cache,
)


@pytest.fixture(scope="module")
def effnet_llava():
    from vittle.toy.tiny import build_efficientnet_llava

    return build_efficientnet_llava(seed=0, hidden_size=64, num_layers=2)


def _query(processor, image, question="what color is the shape?"):
    return processor(images=[image], text=[f"USER: <image>\n{question} ASSISTANT:"], return_tensors="pt")


def test_tower_holds_the_package_weights_and_is_frozen(effnet_llava):
    model, _ = effnet_llava
    tower = model.model.vision_tower
    own = tower.backbone.state_dict()
    reference = pretrained_state_dict()
    assert reference and all(torch.equal(own[key], value) for key, value in reference.items())
    assert not any(p.requires_grad for p in tower.parameters())
    model.train()
    assert not tower.backbone.training  # batch-norm statistics stay the pretrained ones
    model.eval()


def test_processor_counts_49_tokens_and_tower_returns_the_grid(effnet_llava, image):
    model, processor = effnet_llava
    inputs = _query(processor, image)
    assert inputs["pixel_values"].shape == (1, 3, 224, 224)
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 49
    out = model.model.vision_tower(inputs["pixel_values"])
    assert out.hidden_states[-1].shape == (1, 49, 1280)
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape[:2] == inputs["input_ids"].shape and torch.isfinite(logits).all()


def test_wrong_pixel_size_is_a_clear_error(effnet_llava):
    model, _ = effnet_llava
    with pytest.raises(ValueError, match="224x224 pixels, got \\(64, 64\\)"):
        model.model.vision_tower(torch.zeros(1, 3, 64, 64))


def test_feature_cache_returns_identical_features(effnet_llava, image):
    model, processor = effnet_llava
    tower = model.model.vision_tower
    pixels = _query(processor, image)["pixel_values"]
    cache = tower.feature_cache
    cache.clear()
    first = tower(pixels).last_hidden_state
    assert (cache.misses, cache.hits) == (1, 0)
    second = tower(pixels).last_hidden_state
    assert cache.hits == 1
    assert torch.equal(first, second)
    tower.config.feature_cache_mb = 0  # off: computed afresh, same numbers
    try:
        third = tower(pixels).last_hidden_state
    finally:
        tower.config.feature_cache_mb = 1024
    assert torch.allclose(first, third, atol=1e-6)
    assert cache.hits == 1


def test_feature_cache_on_disk_is_shared_and_survives_damage(effnet_llava, image, tmp_path):
    model, processor = effnet_llava
    tower = model.model.vision_tower
    pixels = _query(processor, image)["pixel_values"]
    own = tower.feature_cache
    own.clear()
    reference = tower(pixels).last_hidden_state  # memory only: nothing written
    assert not list(tmp_path.rglob("*.npy")) and own.misses == 1
    cache = FeatureCache(tmp_path / "features")  # the caller's: given to every tower of the model
    assert use_feature_cache(model, cache) == 1 and tower.feature_cache is cache
    try:
        first = tower(pixels).last_hidden_state
        files = list((tmp_path / "features").rglob("*.npy"))
        assert len(files) == 1 and files[0].stat().st_size > 320 * 49 * 4 and not list(tmp_path.rglob("*.tmp.npy"))
        tower.feature_cache = cache = FeatureCache(tmp_path / "features")  # a new process: memory empty, the file is read
        second = tower(pixels).last_hidden_state
        assert (cache.disk_hits, cache.misses) == (1, 0) and torch.equal(first, second) and torch.equal(first, reference)
        third = tower(pixels).last_hidden_state  # now from memory
        assert cache.hits == 1 and torch.equal(first, third)
        files[0].write_bytes(files[0].read_bytes()[:100])  # truncated: computed again, same numbers
        cache.clear()
        fourth = tower(pixels).last_hidden_state
        assert cache.misses == 1 and torch.equal(first, fourth)
        assert files[0].stat().st_size > 320 * 49 * 4  # and rewritten whole
        assert own.misses == 1 and own.hits == 0  # the tower's former cache saw none of it
        import copy
        import pickle

        assert copy.deepcopy(cache) is cache and pickle.loads(pickle.dumps(cache)).folder == cache.folder
    finally:
        tower.feature_cache = own


def test_checkpoint_leaves_the_tower_out_and_reloads_exactly(effnet_llava, image, tmp_path):
    from safetensors import safe_open
    from transformers import LlavaForConditionalGeneration

    from vittle.checkpoint import load_pretrained

    model, processor = effnet_llava
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as handle:
        keys = list(handle.keys())
    assert keys and not any("backbone" in key for key in keys)
    inputs = _query(processor, image)
    with torch.no_grad():
        expected = model(**inputs).logits
        for loaded in (load_pretrained(tmp_path), LlavaForConditionalGeneration.from_pretrained(tmp_path).eval()):
            torch.testing.assert_close(loaded(**inputs).logits, expected, rtol=1e-5, atol=1e-6)


def test_config_rejects_other_variants_and_sizes():
    with pytest.raises(ValueError, match="only 'efficientnet-lite0'"):
        EfficientNetLiteVisionConfig(variant="efficientnet-lite4")
    with pytest.raises(ValueError, match="expect 224 px"):
        EfficientNetLiteVisionConfig(image_size=320)
    assert efficientnet.MODEL_TYPE == EfficientNetLiteVisionConfig.model_type


def test_assistant_answers_with_the_efficientnet_model(effnet_llava, tmp_path):
    from vittle.inference import Assistant

    model, processor = effnet_llava
    assistant = Assistant(model, processor)
    picture = Image.new("RGB", (64, 64), (200, 30, 30))
    answer = assistant.answer(picture, "what color is the shape?", max_new_tokens=3)
    assert isinstance(answer, str)
    assert assistant.embed([picture], ["what color is the shape?"]).shape == (1, 64)


def test_recipe_fields_pool_the_grid_and_tie_embeddings(image):
    from vittle.settings import load_recipe
    from vittle.trainer import prepare_model

    recipe = load_recipe("tiny-easyvqa-base", ["model.hidden_size=32", "model.num_layers=1", "model.visual_grid=2",
                                                   "model.tie_embeddings=true"])
    model, processor = prepare_model(recipe)
    inputs = _query(processor, image)
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 4
    assert model.model.vision_tower(inputs["pixel_values"]).last_hidden_state.shape == (1, 4, 1280)
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight
    with pytest.raises(ValueError, match="model.visual_grid=9"):
        load_recipe("tiny-easyvqa-base", ["model.visual_grid=9"])
    with pytest.raises(ValueError, match="grid_size=5"):
        EfficientNetLiteVisionConfig(grid_size=5)


def test_an_image_repeated_in_a_batch_is_encoded_once(effnet_llava, image, monkeypatch):
    model, processor = effnet_llava
    tower = model.model.vision_tower
    pixels = _query(processor, image)["pixel_values"]
    other = _query(processor, Image.new("RGB", (64, 64), (0, 90, 200)))["pixel_values"]
    batch = torch.cat([pixels, other, pixels, pixels, other])
    tower.feature_cache.clear()
    seen = []
    body = tower._body
    monkeypatch.setattr(tower, "_body", lambda x: seen.append(x.shape[0]) or body(x))
    with torch.no_grad():
        out = tower(batch).last_hidden_state
    assert seen == [2]
    assert torch.equal(out[0], out[2]) and torch.equal(out[1], out[4])
    assert torch.allclose(out[0], tower(pixels).last_hidden_state[0], atol=1e-5)


def test_feature_cache_keeps_grid_sizes_apart(effnet_llava, image):
    """The cache holds the pooled head output, so a tower pooling to 4 x 4 never reads what a
    7 x 7 tower with the same weights stored for the same pixels."""
    model, processor = effnet_llava
    tower = model.model.vision_tower
    pixels = _query(processor, image)["pixel_values"]
    cache = tower.feature_cache
    cache.clear()
    full = tower(pixels).last_hidden_state
    assert full.shape[1] == 49
    tower.config.grid_size = 4
    try:
        pooled = tower(pixels).last_hidden_state
        assert cache.misses == 2 and cache.hits == 0
        expected = torch.nn.functional.adaptive_avg_pool2d(full.transpose(1, 2).reshape(1, -1, 7, 7), 4).flatten(2).transpose(1, 2)
        assert pooled.shape == (1, 16, full.shape[-1]) and torch.allclose(pooled, expected, atol=1e-5)
        assert torch.equal(tower(pixels).last_hidden_state, pooled) and cache.hits == 1
    finally:
        tower.config.grid_size = 7
    assert torch.equal(tower(pixels).last_hidden_state, full) and cache.hits == 2
