"""LoRA through peft: adapters on the language model only, projector and bottleneck trained in
full, checkpoints that resume, and a merged final model that loads like any other."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from vittle.inference import Assistant
from vittle.lora import ADAPTER_FILE, TRAINED_FILE, copy_trained, fully_trained_state, merged
from vittle.model import CONFIG_KEY, get_bottleneck
from vittle.settings import load_recipe
from vittle.trainer import prepare_model, train, unquantized_base

pytest.importorskip("peft")


def _recipe(shapes_data, out, *overrides):
    return load_recipe("tiny-shapes", [f"data.path={shapes_data}", f"train.output_dir={out}", "lora.r=4", "train.lr=1e-3",
                                       "train.max_steps=6", "train.save_steps=3", "train.logging_steps=1", *overrides])


def test_adapters_sit_on_the_language_model_and_projector_and_bottleneck_train_in_full(shapes_data, tmp_path):
    model, _ = prepare_model(_recipe(shapes_data, tmp_path / "out"))
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    adapters = [name for name in trainable if "lora_" in name]
    assert adapters and all(".language_model." in name for name in adapters)
    assert not any("vision_tower" in name for name in trainable)
    assert not any("lm_head" in name or "embed_tokens" in name for name in trainable)
    full = [name for name in trainable if "lora_" not in name]
    assert any("multi_modal_projector" in name for name in full) and any("vittle_bottleneck" in name for name in full)
    # every adapted projection of every layer: 7 per Llama layer, A and B each
    layers = model.get_base_model().config.text_config.num_hidden_layers
    assert len(adapters) == layers * 7 * 2
    assert get_bottleneck(model) is get_bottleneck(model.get_base_model())  # the hook's module is the trained one


def test_a_lora_run_resumes_and_saves_a_merged_model(shapes_data, tmp_path):
    out = tmp_path / "out"
    result = train(_recipe(shapes_data, out))
    checkpoint = out / "checkpoint-3"
    assert (checkpoint / ADAPTER_FILE).is_file() and (checkpoint / TRAINED_FILE).is_file()
    trained = load_file(str(checkpoint / TRAINED_FILE))
    assert any(k.startswith("vittle_bottleneck.") for k in trained) and any("multi_modal_projector" in k for k in trained)
    losses = [e["loss"] for e in result["log_history"] if "loss" in e]
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(losses)))
    assert not (out / ADAPTER_FILE).exists() and (out / "model.safetensors").is_file()  # merged: a plain checkpoint
    config = json.loads((out / "config.json").read_text())
    assert config[CONFIG_KEY]["kind"] == "ib"
    assistant = Assistant.load(out, device="cpu")
    assert assistant.has_bottleneck
    # the merged weights differ from the start: the adapters and the projector learned something
    start, _ = prepare_model(_recipe(shapes_data, tmp_path / "unused"))
    base = start.get_base_model()
    q_name = next(n for n, _ in base.named_parameters() if n.endswith("layers.0.self_attn.q_proj.base_layer.weight"))
    merged_q = dict(assistant.model.named_parameters())[q_name.replace(".base_layer", "")]
    assert not torch.allclose(merged_q, dict(base.named_parameters())[q_name].to(merged_q.dtype), atol=1e-6)

    # resuming from checkpoint-3 reaches the same final weights as the uninterrupted run
    resumed_out = tmp_path / "resumed"
    import shutil

    resumed_out.mkdir()
    shutil.copytree(checkpoint, resumed_out / "checkpoint-3")
    train(_recipe(shapes_data, resumed_out, "train.resume=true"))
    first = load_file(str(out / "model.safetensors"))
    second = load_file(str(resumed_out / "model.safetensors"))
    assert first.keys() == second.keys()
    worst = max(float((first[k].float() - second[k].float()).abs().max()) for k in first)
    assert worst < 1e-5, worst


def test_qlora_merge_path_equals_the_in_memory_merge(shapes_data, tmp_path):
    """QLoRA's final save builds the base again and copies the trained weights onto it; on an
    unquantized run that must give exactly the in-memory merge."""
    recipe = _recipe(shapes_data, tmp_path / "out")
    model, _ = prepare_model(recipe)
    with torch.no_grad():  # trained-looking weights: adapters B non-zero, projector moved
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.01)
    trained = fully_trained_state(model)
    fresh = merged(copy_trained(model, unquantized_base(recipe)))
    direct = merged(model)
    a, b = dict(fresh.state_dict()), dict(direct.state_dict())
    assert a.keys() == b.keys()
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) < 1e-6
    assert all(torch.equal(a[k], v.to(a[k].dtype)) for k, v in trained.items())


def test_qlora_without_a_gpu_is_refused_clearly(shapes_data, tmp_path):
    from vittle.checkpoint import quantization_config

    with pytest.raises((ImportError, ValueError), match="4bit weights need"):
        quantization_config("4bit")


def test_lora_targets_that_do_not_exist_are_named(shapes_data, tmp_path):
    with pytest.raises(ValueError, match="lora.target_modules='qkv': no linear layer of the language model has these names"):
        prepare_model(_recipe(shapes_data, tmp_path / "out", "lora.target_modules=qkv"))


def test_attention_implementation_reaches_the_model(shapes_data, tmp_path):
    model, _ = prepare_model(load_recipe("tiny-shapes", [f"data.path={shapes_data}", "model.attn_implementation=eager"]))
    assert model.config.text_config._attn_implementation == "eager"


def test_every_checkpoint_holds_the_processor_with_the_trained_chat_template(shapes_data, tmp_path):
    """checkpoint-N folders load with Assistant.load, and their processor's chat template
    renders the exact prompt the model was trained with."""
    from transformers import AutoProcessor

    from vittle.template import format_conversation

    out = tmp_path / "full"
    train(load_recipe("tiny-shapes", [f"data.path={shapes_data}", f"train.output_dir={out}", "train.max_steps=2", "train.save_steps=1",
                                      "data.system_prompt=Answer briefly."]))
    for folder in (out / "checkpoint-1", out / "checkpoint-2", out):
        processor = AutoProcessor.from_pretrained(folder)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "red"}]},
                    {"role": "user", "content": "And the shape?"}]
        expected = format_conversation([("<image>\nWhat colour?", "red"), ("And the shape?", "")], system="Answer briefly.")[0]
        assert processor.apply_chat_template(messages, add_generation_prompt=True) == expected
        assert Assistant.load(folder, device="cpu").has_bottleneck
