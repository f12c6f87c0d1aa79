"""Every supported family end to end on CPU, each with its tiny random model and local processor
(tests/vittle/conftest.py): the adapter's answers, `vittle train` (full and LoRA) with the KL on
the image tokens the processor makes, a save/load round trip with the bottleneck, answers equal
to `generate` at alpha 0, the prefix cache (or its refusal), and `probe`."""

from __future__ import annotations

import json
import re

import pytest
import torch
from PIL import Image
from transformers import LlamaConfig

from vittle import families
from vittle.bottleneck import record_states
from vittle.config import BottleneckConfig
from vittle.data import ConversationCollator, ConversationDataset, ImageEncoder, encode_query
from vittle.family_inputs import feature_token_id
from vittle.family_table import TOKEN_TYPE_KEYS
from vittle.inference import Assistant
from vittle.model import attach_bottleneck, bottleneck_alpha, detach_bottleneck, get_bottleneck
from vittle.settings import load_recipe
from vittle.trainer import train

SIZES = [(40, 30), (20, 20), (64, 16), (32, 32)]
"""Image sizes: a dynamic-resolution family gives each a different number of image tokens."""


def _image(size: tuple[int, int], seed: int) -> Image.Image:
    gen = torch.Generator().manual_seed(seed)
    return Image.fromarray((torch.rand(size[1], size[0], 3, generator=gen) * 255).to(torch.uint8).numpy(), "RGB")


def _processor_count(processor, image: Image.Image) -> int:
    """How many image (feature) tokens the family's own processor expands one image to (its
    `image_token` is the marker it expands: Gemma 3's is the begin-of-image token)."""
    out = processor(images=[image], text=[f"{processor.image_token} x"], return_tensors="pt")
    return int((out["input_ids"] == feature_token_id(families.family_of(processor), processor)).sum())


@pytest.fixture(scope="module")
def sized_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sized")
    (folder / "images").mkdir()
    samples = []
    for index in range(8):
        size = SIZES[index % len(SIZES)]
        _image(size, index).save(folder / "images" / f"{index}.png")
        answer = ["red", "blue", "yes", "no"][index % 4]
        samples.append({"id": str(index), "image": f"images/{index}.png",
                        "conversations": [{"from": "human", "value": "<image>\nWhat colour is the shape?"},
                                          {"from": "gpt", "value": answer}]})
    path = folder / "train.json"
    path.write_text(json.dumps(samples))
    return path


def test_the_adapter_answers_for_each_family(family_pair, image):
    model, processor = family_pair
    family = families.family_of(model)
    assert families.family_of(processor) is family and families.family_of(model.config) is family
    assert families.decoder_layers(model) is model.get_decoder().layers
    assert families.default_bottleneck_layer(model) == 1  # 4 layers: two after it
    assert families.lm_head(model) is model.lm_head
    assert families.projector_output(model) in list(families.projector(model).modules())
    item = encode_query(processor, ImageEncoder(processor), image, "What colour is the shape?")
    mask = families.visual_mask(model, item["input_ids"][None])
    assert int(mask.sum()) == _processor_count(processor, image) > 0
    embeds = model.get_input_embeddings()(item["input_ids"][None])
    assert torch.equal(families.visual_mask(model, inputs_embeds=embeds), mask)


EXTRAS = {"qwen3_vl": "model.visual.deepstack_merger_list.", "llava_next": "model.image_newline", "llava_onevision": "model.image_newline"}
"""Per family, what of the vision-to-text path lies outside its projector module (trained with it)."""


def test_stage_1_and_lora_train_the_whole_vision_to_text_path(family_pair):
    """Stage 1 (align) trains the projector and the family's extras (Qwen3-VL's deepstack
    mergers, LLaVA-NeXT's row separator) and nothing else; under LoRA they are trained in full."""
    from vittle.trainer import configure_stage

    model, _ = family_pair
    family = families.family_of(model)
    names = configure_stage(model, "align")
    extra = EXTRAS.get(family.model_type)
    assert names and all(n.startswith(family.projector + ".") or (extra and n.startswith(extra)) for n in names), names
    assert (extra is not None) == any(not n.startswith(family.projector + ".") for n in names)
    every = [n for n, _ in model.named_parameters() if n.startswith(family.projector + ".") or (extra and n.startswith(extra))]
    assert sorted(names) == sorted(every)  # all of it: no part of the path left frozen
    if extra is not None:
        peft = pytest.importorskip("peft")
        from vittle.config import LoraConfig
        from vittle.lora import apply_lora, fully_trained_state

        wrapped = apply_lora(attach_bottleneck(model), LoraConfig(r=2))
        assert isinstance(wrapped, peft.PeftModel) and any(n.startswith(extra) for n in fully_trained_state(wrapped))


def test_an_unsupported_model_names_the_supported_families():
    with pytest.raises(families.UnsupportedFamilyError, match=r"model_type 'llama'.*LLaVA-1\.5.*Qwen2\.5-VL"):
        families.family_of(LlamaConfig())


def test_dynamic_resolution_gives_the_processor_s_token_counts(family_builder):
    _, processor = family_builder(seed=0)
    encoder = ImageEncoder(processor)
    counts = [encoder.num_tokens(encoder.encode(_image(size, 0))) for size in SIZES]
    family = families.family_of(processor)
    if not family.pad_to_square:  # the processor sees the image as it is; LLaVA-1.5 pads it to a square first
        assert counts == [_processor_count(processor, _image(size, 0)) for size in SIZES]
    assert len(set(counts)) > 1 if family.layout.variable_count else len(set(counts)) == 1


def _saved(builder, folder):
    model, processor = builder(seed=0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_vittle_train_saves_a_model_that_loads_with_its_bottleneck(family_builder, lora, sized_data, tmp_path):
    if lora:
        pytest.importorskip("peft")
    start = _saved(family_builder, tmp_path / "start")
    out = tmp_path / "out"
    overrides = [f"model.init={start}", f"data.path={sized_data}", f"train.output_dir={out}", "data.synthetic=",
                 "train.max_steps=3", "train.batch_size=4", "train.save_steps=100", "train.logging_steps=1", "train.lr=1e-3"]
    result = train(load_recipe("tiny-shapes", [*overrides, *(["lora.r=4"] if lora else [])]))
    losses = [entry for entry in result["log_history"] if "loss" in entry]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor([e["loss"], e["kl_v"], e["kl_t"]])).all() for e in losses)
    assert [e["alpha"] for e in losses] == sorted(e["alpha"] for e in losses) and losses[-1]["alpha"] > 0  # the schedule ran
    trained = result["model"]
    assistant = Assistant.load(out, device="cpu")
    assert families.family_of(assistant.model) is families.family_of(trained)
    saved = get_bottleneck(trained).state_dict()
    for key, value in get_bottleneck(assistant.model).state_dict().items():
        assert torch.equal(value, saved[key]), key
    # the KL runs on the image tokens the processor makes, a different count per image size
    dataset = ConversationDataset(sized_data, assistant.processor)
    batch = ConversationCollator(assistant.processor.tokenizer.pad_token_id)([dataset[i] for i in range(4)])
    batch.pop("labels")
    with record_states() as states:
        assistant.model(**batch)
    expected = [_processor_count(assistant.processor, _image(SIZES[i], i)) for i in range(4)]
    if families.family_of(trained).pad_to_square:
        expected = [expected[0]] * 4  # LLaVA-1.5 pads to a square: one count for every image
    assert states[-1].visual_mask.sum(dim=1).tolist() == expected


def test_answers_equal_generate_at_alpha_zero(family_pair):
    model, processor = family_pair
    images = [_image(size, n) for n, size in enumerate(SIZES[:2])]
    question = "What colour is the shape?"
    encoder = ImageEncoder(processor)
    plain = []
    for image in images:
        item = encode_query(processor, encoder, image, question)
        inputs = ConversationCollator(processor.tokenizer.pad_token_id)([item])
        output = model.generate(**inputs, max_new_tokens=6, do_sample=False, suppress_tokens=families.visual_token_ids(model),
                                pad_token_id=processor.tokenizer.pad_token_id)
        plain.append(processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    attach_bottleneck(model, BottleneckConfig(alpha_max=0.5))
    assistant = Assistant(model, processor)
    with bottleneck_alpha(model, 0.0):
        answers = [assistant.answer(image, question, max_new_tokens=6) for image in images]
        # several questions per image: LLaVA shares each image's prefix, Qwen decodes through generate
        batched = assistant.answer_batch([images[0], images[1], images[0]], [question, question, question], max_new_tokens=6)
    assert answers == plain
    assert batched == [plain[0], plain[1], plain[0]]
    item = ConversationCollator(processor.tokenizer.pad_token_id)([encode_query(processor, encoder, images[0], question)])
    with bottleneck_alpha(model, 0.0):
        with_bottleneck = model(**item).logits
    detach_bottleneck(model)
    assert torch.equal(with_bottleneck, model(**item).logits)  # exact no-op


def test_the_prefix_cache_equals_the_full_path_or_is_refused(family_pair):
    model, processor = family_pair
    assistant = Assistant(attach_bottleneck(model), processor)
    images = [_image((32, 32), 0), _image((32, 32), 1)]
    questions = ["What colour is the shape?", "Is there a circle?"]
    family = families.family_of(model)
    if not family.positions_1d:
        with pytest.raises(NotImplementedError, match=f"prefix cache is not supported yet for {re.escape(family.name)}"):
            assistant.enable_prefix_cache()
        return
    if family.prefix_cache:  # e.g. Idefics3: its image tokens are no one run
        with pytest.raises(NotImplementedError, match=f"prefix cache is not supported for {re.escape(family.name)}"):
            assistant.enable_prefix_cache()
        return
    full = assistant.embed(images, questions[::-1])
    mixed = [_image(SIZES[0], 2), _image(SIZES[2], 3)]  # a family whose count follows the image's size: two counts
    full_mixed = assistant.embed(mixed, questions)
    assistant.enable_prefix_cache()
    assistant.embed(images, questions)
    cached = assistant.embed(images, questions[::-1])
    assert assistant.prefix_cache.hits >= 2
    torch.testing.assert_close(torch.from_numpy(cached), torch.from_numpy(full), rtol=1e-4, atol=1e-5)
    assistant.embed(mixed[:1], questions[:1])
    assistant.embed(mixed[1:], questions[1:])
    torch.testing.assert_close(torch.from_numpy(assistant.embed(mixed, questions)), torch.from_numpy(full_mixed), rtol=1e-4, atol=1e-5)


def test_probe_gives_a_posterior_per_image_token(family_pair):
    model, processor = family_pair
    assistant = Assistant(attach_bottleneck(model), processor)
    for size in SIZES[:3]:
        image = _image(size, 0)
        result = assistant.probe(image, "What colour is the shape?")
        count = ImageEncoder(processor).num_tokens(ImageEncoder(processor).encode(image))
        assert len(result.visual_positions) == count == len(result.visual_variance) == len(result.visual_kl)
        grid = result.grid
        assert grid.start + grid.count <= count and result.on_grid(result.visual_kl).shape == grid.shape
        assert (grid.count, grid.start, grid.part) == _raster(processor, image, count)
        if grid.part == "":  # every image token is on the grid: the whole image, or LLaVA-1.5's padded square
            assert grid.count == count
        assert len(result.text_variance) == len(result.tokens) - count


def _raster(processor, image, count):
    """(tokens, first token, part) of the raster an image's tokens hold, from the family's
    processor settings: what the model puts where (docs/models.md)."""
    model_type = families.family_of(processor).model_type
    if model_type in ("llava_next", "llava_onevision"):  # the base image's, first
        tokens = getattr(processor, "num_image_tokens", None) or (processor.image_processor.crop_size["height"] // processor.patch_size) ** 2
        return tokens, 0, "base image"
    if model_type == "idefics3":  # the global image's, last
        return processor.image_seq_len, count - processor.image_seq_len, "global image" if count > processor.image_seq_len else ""
    if model_type == "internvl":  # the thumbnail's, last
        return processor.image_seq_length, count - processor.image_seq_length, "thumbnail" if count > processor.image_seq_length else ""
    return count, 0, ""


def test_vittle_s_inputs_are_the_processor_s(family_pair):
    """What vittle feeds the model (ids, pixels, the family's per-token inputs) gives
    the logits of the family's own processor output; the answer through vittle equals
    `generate` on the processor's output."""
    model, processor = family_pair
    image, question = _image((32, 32), 3), "What colour is the shape?"  # square: LLaVA's padding changes nothing
    item = encode_query(processor, ImageEncoder(processor), image, question)
    ours = ConversationCollator(processor.tokenizer.pad_token_id)([item])
    prompt = families.family_of(model).chat.build_prompt(question, has_image=True)
    prompt = families.family_of(model).chat.expand_image(prompt, processor.image_token, 1)
    theirs = processor(images=[image], text=[prompt], return_tensors="pt")
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    torch.testing.assert_close(model(**ours).logits, model(**theirs).logits, rtol=0, atol=1e-6)
    for key in set(ours) & set(TOKEN_TYPE_KEYS):  # the per-token inputs matter: without Qwen's `mm_token_type_ids`
        flat = {k: v for k, v in ours.items() if k != key}  # Qwen2.5-VL falls back to 1-D positions, Qwen3-VL refuses;
        try:  # without Gemma 3's `token_type_ids` its image tokens attend causally
            assert not torch.allclose(model(**flat).logits, model(**ours).logits)
        except ValueError as err:
            assert key in str(err)
    output = model.generate(**theirs, max_new_tokens=5, do_sample=False, suppress_tokens=families.visual_token_ids(model),
                            pad_token_id=processor.tokenizer.pad_token_id)
    expected = processor.tokenizer.decode(output[0, theirs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    assert Assistant(model, processor).answer(image, question, max_new_tokens=5) == expected


def test_paths_with_hand_built_positions_are_refused_for_3d_positions(family_pair):
    model, processor = family_pair
    assistant = Assistant(model, processor)
    family = families.family_of(model)
    if family.positions_1d:
        assert assistant.answer_logprobs([_image((32, 32), 0)], ["What colour?"], ["red", "blue"]).shape == (1, 2)
        return
    with pytest.raises(NotImplementedError, match=f"answer distributions is not supported yet for {re.escape(family.name)}"):
        assistant.answer_distribution([_image((32, 32), 0)], ["What colour?"], ["red", "blue"])
    with pytest.raises(NotImplementedError, match="scoring candidate answers is not supported yet"):
        assistant.answer_logprobs([_image((32, 32), 0)], ["What colour?"], ["red", "blue"])
