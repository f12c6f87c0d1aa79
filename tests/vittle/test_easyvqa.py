"""easy-vqa -> LLaVA conversation JSON."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from vittle.data import ConversationDataset, read_conversations
from vittle.toy.easyvqa import balance_yes_no, classify, convert, load_split, prepare


def test_classify_questions():
    assert classify("is there not a red shape in the image?", "yes") == {"kind": "yes/no", "negated": True, "attribute": "color"}
    assert classify("is no circle present?", "no") == {"kind": "yes/no", "negated": True, "attribute": "shape"}
    assert classify("does the image contain a triangle?", "no") == {"kind": "yes/no", "negated": False, "attribute": "shape"}
    assert classify("what color is the shape?", "teal")["kind"] == "color"
    assert classify("what is the blue shape?", "circle")["kind"] == "shape"


def test_the_package_splits_have_the_documented_sizes():
    train, test = load_split("train"), load_split("test")
    assert (len(train), len(test)) == (38575, 9673)
    assert len({r["image_id"] for r in test}) == 1000
    assert Counter(r["kind"] for r in test)["yes/no"] == 7136
    with pytest.raises(ValueError, match="split='val'"):
        load_split("val")


def test_convert_writes_loader_ready_json_with_metadata(tmp_path):
    path = convert(tmp_path, "test", limit=5)
    samples = read_conversations(path)
    raw = json.loads(path.read_text())
    assert len(samples) == len(raw) == sum(1 for r in load_split("test") if r["image_id"] in {0, 1, 2, 3, 4})
    assert len(list((tmp_path / "images" / "test").glob("*.png"))) == 5
    first = samples[0]
    assert first["turns"][0][0].startswith("<image>\n") and first["image_path"].is_file()
    assert {"kind", "negated", "attribute", "image_id"} <= set(first)
    assert len({s["id"] for s in samples}) == len(samples)
    with pytest.raises(ValueError, match="limit=0"):
        convert(tmp_path, "test", limit=0)


def test_balancing_equalizes_yes_and_no_per_question_type(tmp_path):
    rows = load_split("train")
    balanced = balance_yes_no(rows, seed=0)
    groups = Counter((r["attribute"], r["negated"], r["answer"]) for r in balanced if r["kind"] == "yes/no")
    for attribute in ("color", "shape"):
        for negated in (False, True):
            assert groups[(attribute, negated, "yes")] == groups[(attribute, negated, "no")] > 0
    # open questions are kept exactly once; the plain-colour "no" majority is not duplicated
    assert Counter(r["kind"] for r in balanced)["color"] == Counter(r["kind"] for r in rows)["color"]
    assert groups[("color", False, "no")] == sum(1 for r in rows if (r["attribute"], r["negated"], r["answer"]) == ("color", False, "no"))
    path = convert(tmp_path, "train", balance=True, limit=20)
    ids = [s["id"] for s in json.loads(path.read_text())]
    assert path.name == "train-balanced.json" and len(ids) == len(set(ids))


def test_prepare_converts_once_and_the_dataset_reads_it(tmp_path):
    from vittle.toy.tiny import build_efficientnet_processor

    target = tmp_path / "sub" / "eval.json"
    assert prepare(target, "easyvqa-test") == target and target.exists()
    mtime = target.stat().st_mtime_ns
    prepare(target, "easyvqa-test")
    assert target.stat().st_mtime_ns == mtime
    dataset = ConversationDataset(target, build_efficientnet_processor(), system="")
    item = dataset[0]
    assert item["pixel_values"].shape == (3, 224, 224)
    assert int((item["labels"] != -100).sum()) == 2  # the one-word answer and </s>
