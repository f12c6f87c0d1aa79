
import pytest
import torch
from safetensors.torch import load_file, save_file

from vittle.bottleneck import record_states
from vittle.checkpoint import CheckpointError, load_pretrained
from vittle.config import BottleneckConfig
from vittle.data import ImageEncoder, encode_query
from vittle.model import (
    attach_bottleneck,
    bottleneck_alpha,
    decoder_layers,
    detach_bottleneck,
    get_bottleneck,
    run_to_layer,
)


def _inputs(processor, image, question="What colour is the shape?"):
    item = encode_query(processor, ImageEncoder(processor), image, question)
    return {"input_ids": item["input_ids"][None], "pixel_values": item["pixel_values"][None]}


def _logits_around(change, model, inputs):
    """Logits of the plain model, then after `change(model)`."""
    with torch.no_grad():
        plain = model(**inputs).logits
        change(model)
        return plain, model(**inputs).logits


def test_alpha_zero_reproduces_the_plain_model(tiny, image):
    model, processor = tiny
    inputs = _inputs(processor, image)
    plain, hooked = _logits_around(lambda m: attach_bottleneck(m, BottleneckConfig(alpha_max=0.0)), model, inputs)
    assert (hooked - plain).abs().max().item() < 1e-6
    model.train()  # training mode with train_alpha = 0 is the plain model too
    torch.testing.assert_close(model(**inputs).logits, plain, rtol=0, atol=1e-6)


def test_bottleneck_changes_logits_and_sees_image_tokens(tiny, image):
    model, processor = tiny
    inputs = _inputs(processor, image)
    plain, hooked = _logits_around(attach_bottleneck, model, inputs)
    assert (hooked - plain).abs().max().item() > 1e-3
    with torch.no_grad():
        state = model(**inputs).vittle  # the forward's typed record rides with its output
    assert state.alpha == get_bottleneck(model).config.alpha_max and not hasattr(get_bottleneck(model), "last")
    assert torch.equal(state.visual_mask, inputs["input_ids"] == model.config.image_token_id)
    assert int(state.visual_mask.sum()) == 16  # (32 / 8) ** 2 CLIP patches
    assert state.mu.shape == (1, inputs["input_ids"].shape[1], 64)
    with bottleneck_alpha(model, 0.0), torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, plain, rtol=0, atol=1e-6)


def test_inputs_embeds_path_finds_image_tokens_too(tiny, image):
    model, processor = tiny
    attach_bottleneck(model)
    inputs = _inputs(processor, image)
    embeds = model.get_input_embeddings()(inputs["input_ids"])
    with torch.no_grad():
        via_ids = model(**inputs).logits
        via_embeds = model(inputs_embeds=embeds, pixel_values=inputs["pixel_values"]).logits
    torch.testing.assert_close(via_embeds, via_ids)


def test_cached_and_uncached_generation_agree_and_new_tokens_are_text(tiny, image):
    model, processor = tiny
    attach_bottleneck(model)
    inputs = _inputs(processor, image)
    settings = dict(max_new_tokens=12, min_new_tokens=12, do_sample=False, pad_token_id=processor.tokenizer.pad_token_id,
                    suppress_tokens=[model.config.image_token_id])
    with record_states() as states:  # generate's steps: their records go to the caller who asks
        cached = model.generate(**inputs, **settings, use_cache=True)
    last_state = states[-1]
    assert states[0].hidden.shape[1] == inputs["input_ids"].shape[1] and len(states) == 12
    assert last_state.hidden.shape[1] == 1 and not last_state.visual_mask.any()  # a cached step: one text token
    uncached = model.generate(**inputs, **settings, use_cache=False)
    assert torch.equal(cached, uncached)
    assert cached.shape[1] == inputs["input_ids"].shape[1] + 12


def test_attach_errors(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="layer=9 is beyond the model's depth: it has 4 decoder layers"):
        attach_bottleneck(model, BottleneckConfig(layer=9))
    with pytest.raises(ValueError, match="layer=3 is the last of the model's 4 decoder layers"):
        attach_bottleneck(model, BottleneckConfig(layer=3))
    assert get_bottleneck(model) is None  # nothing half-attached
    attach_bottleneck(model)
    assert model.config.vittle["layer"] == 1  # the resolved default (two layers after it) is stored
    with pytest.raises(ValueError, match="already has a Vittle bottleneck"):
        attach_bottleneck(model)
    with pytest.raises(TypeError, match="does not support Linear; supported families: LLaVA-1.5"):
        attach_bottleneck(torch.nn.Linear(2, 2))


def test_detach_restores_the_plain_model(tiny, image):
    model, processor = tiny
    plain, after = _logits_around(lambda m: detach_bottleneck(attach_bottleneck(m)), model, _inputs(processor, image))
    assert get_bottleneck(model) is None and not hasattr(model.config, "vittle")
    assert torch.equal(after, plain)


def test_gradients_reach_the_bottleneck_through_kl_and_ce_with_checkpointing(tiny, image):
    model, processor = tiny
    attach_bottleneck(model)
    model.activation_checkpointing_enable()
    model.train()
    bottleneck = get_bottleneck(model)
    bottleneck.train_alpha = 0.5
    inputs = _inputs(processor, image)
    out = model(**inputs, labels=inputs["input_ids"])
    kl_v, kl_t = bottleneck.kl_terms(state=out.vittle)
    (out.loss + kl_v + kl_t).backward()
    assert bottleneck.visual.fc1.weight.grad.abs().sum() > 0
    assert bottleneck.text.fc2.weight.grad.abs().sum() > 0
    assert decoder_layers(model)[0].mlp.up_proj.weight.grad.abs().sum() > 0


def test_run_to_layer_stops_early(tiny, image):
    model, processor = tiny
    attach_bottleneck(model, BottleneckConfig(layer=1))
    calls = []
    for index, layer in enumerate(decoder_layers(model)):
        layer.register_forward_hook(lambda *a, i=index: calls.append(i))
    with record_states() as states:
        hidden = run_to_layer(model, **_inputs(processor, image))
    assert calls == [0, 1]
    torch.testing.assert_close(hidden, states[-1].output)


@pytest.mark.parametrize("prior", ["fixed", "learnable"])
def test_save_and_load_round_trip(tiny, image, tmp_path, prior):
    model, processor = tiny
    attach_bottleneck(model, BottleneckConfig(prior=prior, layer=2))
    with torch.no_grad():
        for param in get_bottleneck(model).parameters():
            param.add_(0.01)  # not the initial values
    model.save_pretrained(tmp_path)
    loaded = load_pretrained(tmp_path)
    assert get_bottleneck(loaded).config == BottleneckConfig(prior=prior, layer=2)
    inputs = _inputs(processor, image)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, rtol=1e-6, atol=1e-6)


def test_posterior_init_follows_the_llm_unless_told(tiny):
    model, _ = tiny
    assert model.config.text_config.initializer_range == pytest.approx(0.02)
    attach_bottleneck(model)
    assert get_bottleneck(model).visual.fc1.weight.std().item() == pytest.approx(0.02, rel=0.1)
    detach_bottleneck(model)
    attach_bottleneck(model, BottleneckConfig(init_std=0.1))
    assert get_bottleneck(model).text.fc2.weight.std().item() == pytest.approx(0.1, rel=0.1)
    assert model.config.vittle["init_std"] == 0.1  # saved with the checkpoint's config


def test_noise_control_saves_no_weights_and_loads_back(tiny, image, tmp_path):
    model, processor = tiny
    attach_bottleneck(model, BottleneckConfig(kind="noise"))
    model.save_pretrained(tmp_path)
    assert not [k for k in load_file(tmp_path / "model.safetensors") if k.startswith("vittle_bottleneck")]
    loaded = load_pretrained(tmp_path)
    assert get_bottleneck(loaded).config.kind == "noise"
    inputs = _inputs(processor, image)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, rtol=1e-6, atol=1e-6)


def test_a_checkpoint_trained_after_the_last_layer_still_loads_with_a_warning(tiny, tmp_path, caplog):
    model, _ = tiny
    attach_bottleneck(model, BottleneckConfig(layer=3), allow_last_layer=True)  # as earlier versions placed it
    model.save_pretrained(tmp_path)
    with caplog.at_level("WARNING", logger="vittle.model"):
        loaded = load_pretrained(tmp_path)
    assert get_bottleneck(loaded).config.layer == 3
    assert "after the last decoder layer (3)" in caplog.text


def test_plain_checkpoint_loads_without_bottleneck(tiny, tmp_path):
    model, _ = tiny
    model.save_pretrained(tmp_path)
    assert get_bottleneck(load_pretrained(tmp_path)) is None


def test_declared_but_missing_bottleneck_weights_are_a_clear_error(tiny, tmp_path):
    model, _ = tiny
    attach_bottleneck(model)
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("vittle_bottleneck.")}, tmp_path / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="declares a Vittle bottleneck .* has no 'vittle_bottleneck.\\*' weights"):
        load_pretrained(tmp_path)


def test_truncated_and_pickle_checkpoints_are_refused(tiny, tmp_path):
    model, _ = tiny
    model.save_pretrained(tmp_path)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors|cannot load"):
        load_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match=r"holds pickle weights \(pytorch_model.bin\); only safetensors are loaded"):
        load_pretrained(tmp_path)
    (tmp_path / "pytorch_model.bin").unlink()
    (tmp_path / "optimizer.pt").write_bytes(b"trainer state")  # not weights: an interrupted save, not a pickle checkpoint
    with pytest.raises(CheckpointError, match=r"has the trainer's state \(optimizer.pt\) but no model.safetensors"):
        load_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="checkpoint folder not found"):
        load_pretrained(tmp_path / "nope")
    with pytest.raises(ValueError, match="dtype='fp16' is not allowed; choose one of auto, float32, bfloat16, float16"):
        load_pretrained(tmp_path, dtype="fp16")
