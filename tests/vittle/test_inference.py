import json

import numpy as np
import pytest

from vittle.cli import main
from vittle.config import BottleneckConfig
from vittle.inference import Assistant
from vittle.model import attach_bottleneck, decoder_layers


@pytest.fixture
def vittle_assistant(tiny):
    model, processor = tiny
    attach_bottleneck(model, BottleneckConfig(layer=1))
    return Assistant(model, processor)


def test_answer_is_greedy_and_streaming_gives_the_same_text(vittle_assistant, image):
    question = "What colour is the shape?"
    answer = vittle_assistant.answer(image, question, max_new_tokens=8)
    assert isinstance(answer, str) and answer == vittle_assistant.answer(image, question, max_new_tokens=8)
    pieces = list(vittle_assistant.answer(image, question, max_new_tokens=8, stream=True))
    assert "".join(pieces).strip() == answer
    assert vittle_assistant.answer(None, "Say something", max_new_tokens=4) is not None


def test_bad_questions_are_clear_errors(vittle_assistant, image):
    with pytest.raises(ValueError, match="the question is empty"):
        vittle_assistant.answer(image, "   ")
    with pytest.raises(ValueError, match="placeholders; at most one, and only with an image"):
        vittle_assistant.answer(None, "<image> what is this")


def test_probe_reports_the_layer_state_and_posterior(vittle_assistant, image):
    result = vittle_assistant.probe(image, "What colour is the shape?")
    assert result.layer == 1 and result.has_bottleneck
    assert result.hidden_before.shape == result.hidden_after.shape == (64,)
    assert not np.allclose(result.hidden_before, result.hidden_after)
    assert len(result.visual_positions) == 16 and result.grid.shape == (4, 4) and result.grid.start == 0
    assert result.on_grid(result.visual_variance).tolist() == result.visual_variance.reshape(4, 4).tolist()
    assert result.visual_variance.shape == (16,) and result.text_variance.shape == (len(result.tokens) - 16,)
    assert (result.visual_variance > 0.09).all() and (result.visual_variance < 10.1).all()  # the clamp: 0.1..10
    assert result.text_kl.shape == result.text_variance.shape and (result.text_kl >= 0).all()
    assert result.text_tokens[-2:] == ["ĠASSISTANT", ":"]
    data = result.to_dict()
    json.dumps(data)
    assert len(data["text_tokens"]) == len(data["text_variance"])


def test_probe_batch_equals_one_probe_per_query(vittle_assistant, image):
    images = [image, image.rotate(90), None]
    questions = ["What colour is the shape?", "Is there a red square in the image, or not?", "Shape?"]
    batched = vittle_assistant.probe_batch(images, questions)
    assert len(batched) == 3 and vittle_assistant.probe_batch([], []) == []
    for got, image_, question in zip(batched, images, questions):
        alone = vittle_assistant.probe(image_, question)
        assert got.tokens == alone.tokens and got.visual_positions == alone.visual_positions and got.grid == alone.grid
        for name in ("hidden_before", "hidden_after", "visual_variance", "text_variance", "visual_kl", "text_kl"):
            np.testing.assert_allclose(getattr(got, name), getattr(alone, name), rtol=1e-4, atol=1e-5, err_msg=name)
    assert batched[2].grid is None and batched[2].visual_variance.shape == (0,)
    with pytest.raises(ValueError, match="1 images but 2 questions"):
        vittle_assistant.probe_batch([image], questions[:2])


def test_concurrent_probes_each_read_their_own_posterior(vittle_assistant, image):
    """The posterior of a forward is recorded for its caller (vittle.bottleneck.record_states),
    not kept on the module, so threads probing one model at once do not read each other's."""
    import threading

    from vittle.model import get_bottleneck

    queries = [(image, "What colour is the shape?"), (image.rotate(90), "Is there a red square in the image, or not?"),
               (None, "Shape?"), (image.rotate(180), "What shape is in the image?")] * 4
    alone = [vittle_assistant.probe(i, q) for i, q in queries]
    assert not hasattr(get_bottleneck(vittle_assistant.model), "last")  # the module keeps no state of a forward
    got: dict[int, object] = {}
    start = threading.Barrier(len(queries))

    def probe(index: int) -> None:
        start.wait()
        got[index] = vittle_assistant.probe(*queries[index])

    threads = [threading.Thread(target=probe, args=(i,)) for i in range(len(queries))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, expected in enumerate(alone):
        for name in ("hidden_before", "visual_variance", "text_variance", "text_kl"):
            np.testing.assert_allclose(getattr(got[index], name), getattr(expected, name), rtol=1e-4, atol=1e-5, err_msg=name)


def test_probe_of_a_plain_model(tiny, image):
    model, processor = tiny
    result = Assistant(model, processor).probe(image, "What colour?")
    assert not result.has_bottleneck and result.layer == 1 and result.visual_variance is None  # where a bottleneck would sit
    np.testing.assert_array_equal(result.hidden_before, result.hidden_after)


def test_embed_matches_probe_batches_consistently_and_stops_after_layer_l(vittle_assistant, image):
    questions = ["What colour is the shape?", "Is there a red square in the image?", "Shape?"]
    images = [image, image.rotate(90), None]
    calls = []
    for index, layer in enumerate(decoder_layers(vittle_assistant.model)):
        layer.register_forward_hook(lambda *a, i=index: calls.append(i))
    batched = vittle_assistant.embed(images, questions, batch_size=3)
    assert set(calls) == {0, 1}  # layers 2 and 3 never ran
    assert batched.shape == (3, 64) and batched.dtype == np.float32
    one_by_one = vittle_assistant.embed(images, questions, batch_size=1)
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-4, atol=1e-5)
    probe = vittle_assistant.probe(images[1], questions[1])
    np.testing.assert_allclose(batched[1], probe.hidden_after, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="2 images but 3 questions"):
        vittle_assistant.embed(images[:2], questions)


def test_load_and_command_line(vittle_assistant, image, tmp_path, capsys):
    vittle_assistant.model.save_pretrained(tmp_path)
    vittle_assistant.processor.save_pretrained(tmp_path)
    image.save(tmp_path / "q.png")
    loaded = Assistant.load(tmp_path, device="cpu")
    assert loaded.has_bottleneck and loaded.layer == 1
    expected = vittle_assistant.answer(image, "What colour?", max_new_tokens=6)
    assert loaded.answer(tmp_path / "q.png", "What colour?", max_new_tokens=6) == expected
    assert main(["answer", "--model", str(tmp_path), "--image", str(tmp_path / "q.png"), "--question", "What colour?",
                 "--max-new-tokens", "6", "--no-stream"]) == 0
    assert capsys.readouterr().out.strip() == expected
    assert main(["probe", "--model", str(tmp_path), "--image", str(tmp_path / "q.png"), "--question", "What colour?", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["layer"] == 1 and len(data["visual_variance"]) == 16 and (data["grid"]["rows"], data["grid"]["cols"], data["grid"]["start"]) == (4, 4, 0)
    assert main(["answer", "--model", str(tmp_path / "missing"), "--question", "q"]) == 1
    assert "checkpoint folder not found" in capsys.readouterr().err


def test_answer_batch_equals_one_by_one_answers(vittle_assistant, image):
    from PIL import Image

    other = Image.new("RGB", (20, 50), (10, 200, 30))
    images = [image, other, None, image]
    questions = ["What colour is the shape?", "Is there a circle?", "Say something", "What is it? Tell me in a long sentence"]
    batched = vittle_assistant.answer_batch(images, questions, max_new_tokens=6, batch_size=3)
    assert batched == [vittle_assistant.answer(i, q, max_new_tokens=6) for i, q in zip(images, questions)]
    with pytest.raises(ValueError, match="2 images but 1 questions"):
        vittle_assistant.answer_batch([image, image], ["q"])


def test_questions_sharing_an_image_run_its_prefix_once_with_the_same_answers(vittle_assistant, image, monkeypatch):
    from PIL import Image

    other = Image.new("RGB", (20, 50), (10, 200, 30))
    images = [image, other, image, other, image]
    questions = ["What colour is the shape?", "Is there a circle?", "Shape?", "What is it? Tell me in a long sentence", "Is it red?"]
    model = vittle_assistant.model
    calls = []
    original = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: calls.append(k["input_ids"].shape) or original(*a, **k))
    shared = vittle_assistant.answer_batch(images, questions, max_new_tokens=6, batch_size=5)
    assert calls[0][0] == 2 and calls[1][0] == 5  # two images' prefixes once, then the five questions' suffixes
    monkeypatch.undo()
    assert shared == [vittle_assistant.answer(i, q, max_new_tokens=6) for i, q in zip(images, questions)]


def test_a_model_config_system_prompt_changes_the_prompt(vittle_assistant, image):
    from vittle.template import SYSTEM_PROMPT, SYSTEM_PROMPT_KEY

    assert vittle_assistant.system == SYSTEM_PROMPT
    model = vittle_assistant.model
    setattr(model.config, SYSTEM_PROMPT_KEY, "")
    try:
        plain = Assistant(model, vittle_assistant.processor)
        ids = plain.model_inputs([image], ["Hi?"])["input_ids"][0].tolist()
        text = plain.processor.tokenizer.decode(ids, skip_special_tokens=False)
        assert "A chat between" not in text and "USER:" in text
    finally:
        delattr(model.config, SYSTEM_PROMPT_KEY)


def test_context_length_and_prompt_length(tiny):
    from vittle.inference import Assistant

    model, processor = tiny
    assistant = Assistant(model, processor)
    assert assistant.context_length == model.config.text_config.max_position_embeddings
    text_only = assistant.prompt_length(None, "What color is the shape?")
    assert text_only == assistant.model_inputs([None], ["What color is the shape?"])["input_ids"].shape[1] > 5
    from PIL import Image

    image = Image.new("RGB", (16, 16))
    grid = assistant.probe(image, "What color is the shape?").grid
    assert assistant.prompt_length(image, "What color is the shape?") > text_only + grid.count - 5


def test_device_map_loading_answers_the_same_and_bad_loading_options_are_refused(vittle_assistant, image, tmp_path):
    import importlib.util

    vittle_assistant.model.save_pretrained(tmp_path)
    vittle_assistant.processor.save_pretrained(tmp_path)
    mapped = Assistant.load(tmp_path, device="cpu", device_map="cpu")  # placed by accelerate, not moved afterwards
    assert mapped.has_bottleneck and str(mapped.device) == "cpu"
    assert mapped.answer(image, "What colour?", max_new_tokens=6) == vittle_assistant.answer(image, "What colour?", max_new_tokens=6)
    with pytest.raises(ValueError, match="quantize='2bit'; choose 8bit, 4bit or leave it out"):
        Assistant.load(tmp_path, quantize="2bit")
    if importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(ImportError, match="8bit weights need bitsandbytes and a CUDA GPU"):
            Assistant.load(tmp_path, quantize="8bit")


def test_the_bottleneck_takes_a_floating_weights_dtype_when_the_layers_linear_weights_are_integers(tiny):
    import torch

    model, _ = tiny
    layer = decoder_layers(model)[1]
    first = next(layer.parameters())  # the attention's first projection, as 8-bit loading stores it
    first.requires_grad_(False)
    first.data = first.data.to(torch.int8)
    attach_bottleneck(model, BottleneckConfig(layer=1))
    assert all(p.dtype == torch.float32 for p in model.vittle_bottleneck.parameters())
