"""The comparison methods as training options, on the tiny model of every family: L2T's labels
(exactly the instruction's content tokens gain them), ROSS's head (its target is the image
features at the image positions, it trains and is dropped before the final save), and
training-time augmentation with the project's shifts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from vittle import families
from vittle.analysis.perturb.training import parse_shifts, training_shifts
from vittle.data import IGNORE_INDEX, ConversationCollator, ConversationDataset, instruction_spans
from vittle.family_inputs import feature_token_id
from vittle.inference import Assistant
from vittle.reconstruction import HEAD_ATTR, attach_reconstruction, detach_reconstruction, reconstruction_loss
from vittle.settings import load_recipe
from vittle.trainer import train

QUESTIONS = ("What colour is the shape?", "And its form, in one word?")


@pytest.fixture(scope="module")
def two_turn_data(tmp_path_factory):
    """Two images with a two-turn conversation each (the image placeholder first)."""
    folder = tmp_path_factory.mktemp("two-turn")
    samples = []
    for index in range(2):
        gen = torch.Generator().manual_seed(index)
        Image.fromarray((torch.rand(24, 32, 3, generator=gen) * 255).to(torch.uint8).numpy(), "RGB").save(folder / f"{index}.png")
        samples.append({"id": str(index), "image": f"{index}.png", "conversations": [
            {"from": "human", "value": f"<image>\n{QUESTIONS[0]}"}, {"from": "gpt", "value": "red"},
            {"from": "human", "value": QUESTIONS[1]}, {"from": "gpt", "value": "circle"}]})
    path = folder / "train.json"
    path.write_text(json.dumps(samples))
    return path


def _runs(labels: torch.Tensor) -> list[list[int]]:
    """The positions of each run of consecutive supervised tokens."""
    runs: list[list[int]] = []
    for position in (labels != IGNORE_INDEX).nonzero().flatten().tolist():
        if runs and runs[-1][-1] == position - 1:
            runs[-1].append(position)
        else:
            runs.append([position])
    return runs


def test_instruction_spans_leave_out_the_image_and_the_template():
    text = "SYS: answer the USER. USER: <vision><im><im></vision>What colour? ASSISTANT: red</s>USER: Form? ASSISTANT: circle</s>"
    answers = [(text.index(" red"), text.index(" red") + 8), (text.index(" circle"), len(text))]
    spans = instruction_spans(text, ["<image>\nWhat colour?", "Form?"], answers)
    assert [text[a:b] for a, b in spans] == ["What colour?", "Form?"]
    tricky = text.replace("What colour?", "the USER")  # also in the system prompt
    answers = [(tricky.index(" red"), tricky.index(" red") + 8), (tricky.index(" circle"), len(tricky))]
    spans = instruction_spans(tricky, ["<image>\nthe USER", "Form?"], answers)
    assert spans[0] == (tricky.index("</vision>") + 9, tricky.index(" ASSISTANT"))  # its own, not the system prompt's
    with pytest.raises(ValueError, match="instruction 1 .'Shape.'. was not found"):
        instruction_spans(text, ["<image>\nWhat colour?", "Shape?"], answers)


def test_l2t_labels_exactly_the_instruction_content_tokens_in_every_family(family_builder, two_turn_data):
    _, processor = family_builder(seed=0)
    tokenizer = processor.tokenizer
    plain = ConversationDataset(two_turn_data, processor)[0]
    l2t = ConversationDataset(two_turn_data, processor, instruction_loss=True)[0]
    assert torch.equal(plain["input_ids"], l2t["input_ids"])
    answers = plain["labels"] != IGNORE_INDEX
    assert torch.equal(l2t["labels"][answers], plain["labels"][answers])  # the answers keep their labels
    gained = (l2t["labels"] != IGNORE_INDEX) & ~answers
    ids = l2t["input_ids"]
    image_ids = torch.tensor(families.visual_token_ids(processor) if hasattr(processor, "config") else
                             [feature_token_id(families.family_of(processor), processor)])
    assert not torch.isin(ids[gained], image_ids).any()  # no image token gains a label
    labels = torch.where(gained, l2t["labels"], IGNORE_INDEX)
    runs = _runs(labels)
    texts = [tokenizer.decode(ids[run]).strip() for run in runs]
    assert texts == list(QUESTIONS), texts  # each instruction's content, nothing of the template
    assert torch.equal(l2t["labels"][gained], ids[gained])


def test_ross_head_reconstructs_the_image_features_at_the_image_positions_in_every_family(family_builder, two_turn_data):
    model, processor = family_builder(seed=0)
    model.train()
    dataset = ConversationDataset(two_turn_data, processor)
    batch = ConversationCollator(processor.tokenizer.pad_token_id)([dataset[0], dataset[1]])
    head = attach_reconstruction(model, hidden=32)
    captured = {}
    decoder = families._base(model).get_decoder()
    hook = decoder.register_forward_pre_hook(lambda m, a, k: captured.update(embeds=k["inputs_embeds"].detach().clone()), with_kwargs=True)
    model(**batch)
    hook.remove()
    outputs, target = head.take()
    mask = families.visual_mask(model, input_ids=batch["input_ids"])
    assert outputs.shape == target.shape == (int(mask.sum()), families.text_config(model).hidden_size) and mask.sum() > 0
    assert torch.equal(target, captured["embeds"][mask])  # the image features the decoder received
    assert not target.requires_grad and outputs.requires_grad
    assert head.take() is None  # once per forward
    model.zero_grad()
    model(**batch)
    loss = reconstruction_loss(model)
    assert torch.isfinite(loss) and 0.5 < loss.item() < 5.0  # a fresh head: about the error of predicting zeros
    loss.backward()
    assert head.up.weight.grad.abs().sum() > 0
    assert families.decoder_layers(model)[-1].mlp.down_proj.weight.grad.abs().sum() > 0  # it reaches the LLM
    detach_reconstruction(model)
    assert not any(name.startswith(HEAD_ATTR) for name, _ in model.named_parameters())
    model(**batch)  # no hook is left behind
    assert reconstruction_loss(model) is None


def test_ross_trains_logs_resumes_and_leaves_the_head_out_of_the_final_model(shapes_data, tmp_path):
    out = tmp_path / "out"
    common = [f"data.path={shapes_data}", f"train.output_dir={out}", "train.stage=baseline", "reconstruction.weight=1.0",
              "train.logging_steps=1", "train.save_steps=2", "train.batch_size=8"]
    result = train(load_recipe("tiny-shapes", [*common, "train.max_steps=4"]))
    logs = [entry for entry in result["log_history"] if "loss" in entry]
    assert len(logs) == 4 and all(0 < entry["reconstruction"] < 5 for entry in logs)
    assert logs[-1]["reconstruction"] < logs[0]["reconstruction"]  # the head learns
    with safe_open(str(out / "checkpoint-4" / "model.safetensors"), "pt") as handle:
        assert any(key.startswith(HEAD_ATTR + ".") for key in handle.keys())  # a resumable checkpoint keeps it
    with safe_open(str(out / "model.safetensors"), "pt") as handle:
        assert not any(key.startswith(HEAD_ATTR) for key in handle.keys())  # the exported model does not
    assistant = Assistant.load(out, device="cpu")
    assert not hasattr(assistant.model, HEAD_ATTR)
    resumed = train(load_recipe("tiny-shapes", [*common, "train.max_steps=6", "train.resume=true"]))
    steps = [entry["step"] for entry in resumed["log_history"] if "loss" in entry and entry["step"] > 4]
    assert steps == [5, 6]


def test_recipe_checks_for_the_methods(shapes_data):
    with pytest.raises(ValueError, match="reconstruction.weight is set, but train.stage='align'"):
        load_recipe("tiny-shapes", [f"data.path={shapes_data}", "train.stage=align", "reconstruction.weight=1"])
    with pytest.raises(ValueError, match="reconstruction.weight with lora.r"):
        load_recipe("tiny-shapes", [f"data.path={shapes_data}", "lora.r=4", "reconstruction.weight=1"])
    with pytest.raises(ValueError, match=r"data.augment_prob=1.5 is out of range"):
        load_recipe("tiny-shapes", [f"data.path={shapes_data}", "data.augment=gaussian_noise", "data.augment_prob=1.5"])
    with pytest.raises(ValueError, match="data.augmenter"):
        load_recipe("tiny-shapes", [f"data.path={shapes_data}", "data.augment=gaussian_noise", "data.augmenter=nope"])


def test_training_shifts_are_seeded_fresh_per_read_and_visual_only():
    image = Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8), "RGB")
    assert parse_shifts("gaussian_noise, defocus_blur:2") == [("gaussian_noise", None), ("defocus_blur", 2)]
    never, always = training_shifts("gaussian_noise", 0.0, 0), training_shifts("gaussian_noise:5", 1.0, 0)
    assert np.array_equal(np.asarray(never(image, 0)), np.asarray(image))
    first, second = always(image, 0), always(image, 0)
    assert not np.array_equal(np.asarray(first), np.asarray(image))
    assert not np.array_equal(np.asarray(first), np.asarray(second))  # another draw on the next read (epoch)
    again = training_shifts("gaussian_noise:5", 1.0, 0)
    assert np.array_equal(np.asarray(again(image, 0)), np.asarray(first))  # same seed, same run
    half = training_shifts("gaussian_noise", 0.5, 0)
    changed = sum(not np.array_equal(np.asarray(half(image, i)), np.asarray(image)) for i in range(200))
    assert 70 <= changed <= 130
    with pytest.raises(ValueError, match="'char_typo:2' is a text shift"):
        parse_shifts("char_typo:2")
    with pytest.raises(ValueError, match="'gaussian_nose'"):
        parse_shifts("gaussian_nose")
    with pytest.raises(ValueError, match="data.augment is empty"):
        parse_shifts(" , ")


def test_augmented_training_reads_shifted_images(shapes_data, tmp_path, tiny):
    _, processor = tiny
    plain = ConversationDataset(shapes_data, processor, cache_images=True)
    shifted = ConversationDataset(shapes_data, processor, cache_images=True, augment=training_shifts("gaussian_noise:5", 1.0, 0))
    assert torch.equal(plain[0]["input_ids"], shifted[0]["input_ids"])
    first, second = shifted[0]["pixel_values"], shifted[0]["pixel_values"]
    assert not torch.allclose(first, plain[0]["pixel_values"]) and not torch.allclose(first, second)  # never the cached clean one
    recipe = load_recipe("tiny-shapes", [f"data.path={shapes_data}", f"train.output_dir={tmp_path / 'out'}", "train.max_steps=2",
                                         "data.augment=gaussian_noise,defocus_blur", "data.augment_prob=0.5", "train.batch_size=4",
                                         "train.logging_steps=1"])
    result = train(recipe)
    assert len([e for e in result["log_history"] if "loss" in e]) == 2
