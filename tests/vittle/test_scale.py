"""Rescaling the residual stream: the logits stay, the scale at the bottleneck layer moves."""

import pytest
import torch

from vittle.data import ImageEncoder, encode_query
from vittle.model import attach_bottleneck, get_bottleneck
from vittle.scale import rescale_residual_stream, residual_rms, set_residual_rms


def _batch(processor, image):
    item = encode_query(processor, ImageEncoder(processor), image, "What colour is the shape?", "")
    return {"input_ids": item["input_ids"][None], "attention_mask": torch.ones_like(item["input_ids"])[None],
            "pixel_values": item["pixel_values"][None]}


def test_rescaling_keeps_the_logits_and_scales_every_layer(tiny, image):
    model, processor = tiny
    batch = _batch(processor, image)
    # A fresh model's stream (RMS ~0.02) is so small that the norms' epsilon (1e-6) shows; trained
    # models are far above it. Bring it to order 1 first, then check that rescaling is exact.
    rescale_residual_stream(model, 1.0 / residual_rms(model, [batch], 0))
    with torch.no_grad():
        before = model(**batch, output_hidden_states=True)
    rms = [residual_rms(model, [batch], layer) for layer in range(4)]
    rescale_residual_stream(model, 7.0)
    with torch.no_grad():
        after = model(**batch, output_hidden_states=True)
    torch.testing.assert_close(after.logits, before.logits, rtol=1e-4, atol=1e-4)
    for layer in range(4):
        assert residual_rms(model, [batch], layer) == pytest.approx(7.0 * rms[layer], rel=1e-5)
    torch.testing.assert_close(after.hidden_states[1], 7.0 * before.hidden_states[1], rtol=1e-4, atol=1e-5)


def test_set_residual_rms_reaches_the_target_at_the_bottleneck_layer_and_alpha_is_restored(tiny, image):
    model, processor = tiny
    attach_bottleneck(model)
    batch = _batch(processor, image)
    before, after = set_residual_rms(model, [batch], 1.0)
    assert before == pytest.approx(0.023, rel=0.2) and after == pytest.approx(1.0, rel=0.01)  # epsilon: see above
    before, after = set_residual_rms(model, [batch], 3.0)
    assert before == pytest.approx(1.0, rel=0.01) and after == pytest.approx(3.0, rel=1e-5)
    assert get_bottleneck(model).inference_alpha is None and not model.training


def test_refusals_are_clear(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="factor=0 must be a positive finite number"):
        rescale_residual_stream(model, 0)
    with pytest.raises(ValueError, match="must be a positive finite number"):
        rescale_residual_stream(model, float("nan"))
    model.lm_head.weight = model.get_input_embeddings().weight
    with pytest.raises(ValueError, match="ties its input and output embeddings"):
        rescale_residual_stream(model, 2.0)
