import json

import pytest
import torch
from PIL import Image

from vittle.data import (
    IGNORE_INDEX,
    ConversationCollator,
    ConversationDataset,
    DataError,
    ImageEncoder,
    expand_to_square,
    read_conversations,
)
from vittle.template import SYSTEM_PROMPT, build_prompt, format_conversation


def _write(tmp_path, samples, image_size=(20, 10)):
    Image.new("RGB", image_size, (200, 10, 10)).save(tmp_path / "img.png")
    path = tmp_path / "data.json"
    path.write_text(json.dumps(samples))
    return path


def _conv(*pairs):
    turns = []
    for question, answer in pairs:
        turns += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    return turns


def test_vicuna_v1_template():
    text, spans = format_conversation([("<image>\nWhat is it?", "A cat."), ("Colour?", "Black.")])
    assert text == f"{SYSTEM_PROMPT} USER: <image>\nWhat is it? ASSISTANT: A cat.</s>USER: Colour? ASSISTANT: Black.</s>"
    assert [text[a:b] for a, b in spans] == [" A cat.</s>", " Black.</s>"]
    assert build_prompt("Why?", has_image=True) == f"{SYSTEM_PROMPT} USER: <image>\nWhy? ASSISTANT:"
    assert build_prompt("Why?", has_image=False) == f"{SYSTEM_PROMPT} USER: Why? ASSISTANT:"
    assert build_prompt("Why?", has_image=False, system="") == "USER: Why? ASSISTANT:"
    text, spans = format_conversation([("Q?", "A")], system="Be brief.")
    assert text == "Be brief. USER: Q? ASSISTANT: A</s>" and text[spans[0][0]:spans[0][1]] == " A</s>"


def test_left_padding_for_generation():
    import torch

    from vittle.data import ConversationCollator

    items = [{"input_ids": torch.tensor([5, 6, 7])}, {"input_ids": torch.tensor([8])}]
    batch = ConversationCollator(0, "left")(items)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    with pytest.raises(ValueError, match="padding_side='middle'"):
        ConversationCollator(0, "middle")(items)


def test_labels_cover_exactly_the_answers_in_multi_turn_samples(tmp_path, tiny):
    _, processor = tiny
    path = _write(tmp_path, [{"id": "a", "image": "img.png", "conversations": _conv(("<image>\nWhat colour?", "red"), ("And the shape?", "a wide square"))}])
    item = ConversationDataset(path, processor)[0]
    ids, labels = item["input_ids"], item["labels"]
    supervised = processor.tokenizer.decode(ids[labels != IGNORE_INDEX])
    assert supervised == " red</s> a wide square</s>"
    assert torch.equal(labels[labels != IGNORE_INDEX], ids[labels != IGNORE_INDEX])
    assert int((ids == processor.image_token_id).sum()) == 16
    assert item["pixel_values"].shape == (3, 32, 32)


def test_text_only_samples_have_no_pixels_and_mixed_batches_collate(tmp_path, tiny):
    _, processor = tiny
    path = _write(tmp_path, [
        {"id": "t", "conversations": _conv(("Say hi", "hi"))},
        {"id": "i", "image": "img.png", "conversations": _conv(("What colour is it?", "red"))},  # placeholder added
    ])
    data = ConversationDataset(path, processor)
    assert "pixel_values" not in data[0]
    assert int((data[1]["input_ids"] == processor.image_token_id).sum()) == 16
    batch = ConversationCollator(processor.tokenizer.pad_token_id)([data[0], data[1]])
    assert batch["pixel_values"].shape == (1, 3, 32, 32)
    length = batch["input_ids"].shape[1]
    n0 = len(data[0]["input_ids"])
    assert batch["attention_mask"][0].tolist() == [1] * n0 + [0] * (length - n0)
    assert (batch["labels"][0, n0:] == IGNORE_INDEX).all()
    assert (batch["input_ids"][0, n0:] == processor.tokenizer.pad_token_id).all()


def test_pad_to_square_uses_the_mean_colour(tiny):
    _, processor = tiny
    background = ImageEncoder(processor).background
    assert background == (123, 117, 104)  # CLIP's mean (0.4815, 0.4578, 0.4082) * 255
    square = expand_to_square(Image.new("RGB", (20, 10), (255, 0, 0)), background)
    assert square.size == (20, 20)
    assert square.getpixel((0, 0)) == background and square.getpixel((10, 10)) == (255, 0, 0)
    assert square.getpixel((10, 5)) == (255, 0, 0) and square.getpixel((10, 4)) == background
    assert square.getpixel((10, 14)) == (255, 0, 0) and square.getpixel((10, 15)) == background


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ({"id": "m1", "image": "missing.png", "conversations": _conv(("<image>\nq", "a"))}, "sample 'm1': image not found at .*missing.png"),
        ({"id": "m2", "conversations": [{"from": "human", "value": "q"}]}, "sample 'm2' needs a 'conversations' list"),
        ({"id": "m3", "conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]}, "sample 'm3': turns 0 and 1 must be a human then a gpt turn"),
        ({"id": "m4", "conversations": _conv(("<image>\nq", "a"))}, "sample 'm4' has an <image> placeholder but no 'image'"),
        ({"id": "m5", "conversations": [{"from": "human", "value": 3}, {"from": "gpt", "value": "a"}]}, "sample 'm5': turns 0 and 1"),
        ({"id": "m6", "conversations": [*_conv(("q", "a")), {"from": "human", "value": "and?"}]},
         r"sample 'm6': the last turn \(2\) has no answer after it"),
        ({"id": "m7", "conversations": _conv(("q", "a"), ("q2", "  "))}, r"sample 'm7': turn 3 \(gpt\) is empty"),
    ],
)
def test_malformed_samples_name_the_id_and_path(tmp_path, sample, message):
    path = _write(tmp_path, [sample])
    with pytest.raises(DataError, match=message):
        read_conversations(path)


def test_broken_files_are_clear_errors(tmp_path, tiny):
    _, processor = tiny
    with pytest.raises(DataError, match="data file not found"):
        read_conversations(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="bad.json is not valid JSON"):
        read_conversations(tmp_path / "bad.json")
    path = _write(tmp_path, [{"id": "broken", "image": "img.png", "conversations": _conv(("<image>\nq", "a"))}])
    (tmp_path / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="sample 'broken': cannot read image .*img.png"):
        ConversationDataset(path, processor)  # before training, not at the step that draws it
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(DataError, match="empty.json holds no samples"):
        read_conversations(tmp_path / "empty.json")


def test_images_are_checked_once_and_rechecked_when_they_change(tmp_path, tiny, monkeypatch):
    import vittle.data as data

    _, processor = tiny
    path = _write(tmp_path, [{"id": f"s{i}", "image": "img.png", "conversations": _conv(("<image>\nq", "a"))} for i in range(3)])
    opened = []
    real = data.load_image
    monkeypatch.setattr(data, "load_image", lambda p, sample_id="?": opened.append(sample_id) or real(p, sample_id))
    ConversationDataset(path, processor)
    assert opened == ["s0"]  # three samples, one distinct image, decoded once
    record = json.loads((tmp_path / "data.json.images-ok.json").read_text())
    assert list(record) == [str((tmp_path / "img.png").resolve())]
    ConversationDataset(path, processor)
    assert opened == ["s0"]  # unchanged since: not decoded again
    (tmp_path / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # replaced by a broken file
    with pytest.raises(DataError, match="sample 's0': cannot read image"):
        ConversationDataset(path, processor)
    assert ConversationDataset(path, processor, check_images=False)  # the check can be skipped


def test_truncation_that_cuts_image_tokens_or_all_answers_is_an_error(tmp_path, tiny):
    _, processor = tiny
    path = _write(tmp_path, [{"id": "long", "image": "img.png", "conversations": _conv(("<image>\nq", "a"))}])
    with pytest.raises(DataError, match="max_length=20 cuts into its image tokens"):
        ConversationDataset(path, processor, max_length=20)[0]
    path = _write(tmp_path, [{"id": "t", "conversations": _conv(("q " * 50, "a"))}])
    with pytest.raises(DataError, match="sample 't': no answer token fits in max_length=40"):
        ConversationDataset(path, processor, max_length=40)[0]


def test_synthetic_shapes_are_valid_llava_data(shapes_data, tiny):
    samples = read_conversations(shapes_data)
    assert len(samples) == 48 * 3
    answers = {s["turns"][0][1] for s in samples}
    assert {"yes", "no", "red", "circle"} <= answers


def test_encoders_given_one_memo_share_pixels_of_the_same_settings_and_others_do_not(tiny):
    import copy

    from vittle.memo import Memo

    _, processor = tiny
    image = Image.new("RGB", (20, 10), (10, 200, 10))
    memo = Memo(4)
    first, second = ImageEncoder(processor, memo), ImageEncoder(processor, memo)
    pixels = first.pixel_values(image)
    assert second.pixel_values(image.copy()) is pixels and memo.hits == 1  # same settings, same content: preprocessed once
    assert first.pixel_values(Image.new("RGB", (20, 10), (10, 200, 11))) is not pixels  # one value differs
    other = copy.deepcopy(processor)
    other.image_processor.image_mean = [0.0, 0.0, 0.0]  # another background and normalisation
    different = ImageEncoder(other, memo).pixel_values(image)
    assert different is not pixels and not torch.allclose(different, pixels)
    off = ImageEncoder(processor).pixel_values(image)  # no memo: nothing kept, nothing shared
    assert off is not pixels and torch.allclose(off, pixels, atol=1e-6)
    assert ImageEncoder(processor).pixel_values(image) is not off
    for shade in range(4):  # a memo keeps its size: the least recently used leave
        first.pixel_values(Image.new("RGB", (20, 10), (shade, 0, 0)))
    assert len(memo) == 4 and first.pixel_values(image) is not pixels


def test_assistants_keep_their_own_pixels_unless_given_one_memo(tiny):
    from vittle.inference import PIXEL_MEMO_SIZE, Assistant
    from vittle.memo import Memo

    model, processor = tiny
    image = Image.new("RGB", (20, 10), (10, 200, 10))
    alone, other = Assistant(model, processor), Assistant(model, processor)
    assert alone.images.memo is not other.images.memo and alone.images.memo.size == PIXEL_MEMO_SIZE
    assert alone.images.encode(image) is not other.images.encode(image)
    shared = Memo(8)
    first, second = Assistant(model, processor, pixel_memo=shared), Assistant(model, processor, pixel_memo=shared)
    assert first.images.encode(image) is second.images.encode(image) and shared.hits == 1
    with pytest.raises(ValueError, match="at least one entry"):
        Memo(0)


def test_a_weighed_memo_keeps_its_total_weight_and_refuses_what_cannot_fit():
    from vittle.memo import Memo

    memo = Memo(10, weigh=len)
    assert memo.put("a", "abcd") and memo.put("b", "efgh") and memo.get("a") == "abcd"  # "a" is now the most recent
    assert memo.put("c", "ijk") and memo.total == 7 and memo.get("b") is None  # "b", least recently used, left
    assert not memo.put("d", "x" * 11) and memo.get("d") is None and memo.total == 7
    assert memo.put("a", "ab") and memo.total == 5 and len(memo) == 2  # replacing a key re-weighs it
    memo.clear()
    assert (len(memo), memo.total, memo.hits, memo.misses) == (0, 0, 1, 2)  # clear keeps the counts
