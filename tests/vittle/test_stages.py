"""Stages 0 and 1 of the small-scale protocol: the text corpus, the captions, text samples in
the loader, and what the pretrain stage trains."""

from __future__ import annotations

import json

import pytest

from vittle.corpus import text_samples, wordnet_glosses, write_wordnet_corpus
from vittle.data import IGNORE_INDEX, ConversationDataset, DataError
from vittle.toy.captions import caption, image_attributes

# Synthetic lines in WordNet's data-file format (made up here; no WordNet text is copied).
_FAKE = {
    "noun": ["  1 licence header line that the reader skips",
             "00000001 03 n 02 round_thing 0 disc 0 000 | a made-up flat shape; \"a round thing on the table\"",
             "00000002 03 n 01 zorb 0 000 | an invented word for the test"],
    "verb": ["00000003 29 v 01 twirl 0 000 | turn around quickly"],
    "adj": ["00000004 00 a 01 teal(a) 0 000 | of a made-up colour"],
    "adv": ["00000005 02 r 01 quickly 0 000 | with speed"],
}


@pytest.fixture
def wordnet(tmp_path):
    for part, lines in _FAKE.items():
        (tmp_path / f"data.{part}").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_glosses_are_read_with_their_words_and_the_header_skipped(wordnet):
    glosses = dict(wordnet_glosses(wordnet))
    assert glosses["n-00000001"] == 'round thing, disc: a made-up flat shape; "a round thing on the table"'
    assert glosses["a-00000004"] == "teal: of a made-up colour"  # the adjective marker is dropped
    assert len(glosses) == 5


def test_missing_wordnet_says_what_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install wordnet-base"):
        list(wordnet_glosses(tmp_path))


def test_samples_pack_glosses_up_to_the_limit_in_a_fixed_order(wordnet):
    glosses = list(wordnet_glosses(wordnet))
    samples = text_samples(glosses, max_chars=60, seed=1)
    assert samples == text_samples(glosses, max_chars=60, seed=1)
    joined = " ".join(s["text"] for s in samples)
    assert all(gloss in joined for _, gloss in glosses)
    single = {gloss for _, gloss in glosses}
    assert all(len(s["text"]) <= 60 or s["text"] in single for s in samples)  # only a lone long gloss goes over
    assert len(samples) < len(glosses)  # short glosses were packed together
    assert len(text_samples(glosses, max_chars=10_000)) == 1


def test_text_samples_supervise_every_token_but_bos(wordnet, tmp_path):
    from vittle.toy.tiny import build_efficientnet_processor

    path = write_wordnet_corpus(tmp_path / "text.json", folder=wordnet, max_chars=80)
    processor = build_efficientnet_processor(grid_size=4)
    dataset = ConversationDataset(path, processor, max_length=32)
    item = dataset[0]
    assert item["labels"][0] == IGNORE_INDEX and (item["labels"][1:] == item["input_ids"][1:]).all()
    assert item["input_ids"][-1] == processor.tokenizer.eos_token_id or len(item["input_ids"]) == 32
    assert "pixel_values" not in item
    (tmp_path / "bad.json").write_text(json.dumps([{"id": "x", "text": "  "}]))
    with pytest.raises(DataError, match="non-empty 'text'"):
        ConversationDataset(tmp_path / "bad.json", processor)


def test_captions_come_from_the_answers_negations_included():
    rows = [
        {"image_id": 1, "question": "what color is the shape?", "answer": "blue", "kind": "color", "negated": False},
        {"image_id": 1, "question": "does the image not contain a circle?", "answer": "no", "kind": "yes/no", "negated": True},
        {"image_id": 2, "question": "what is the red shape?", "answer": "triangle", "kind": "shape", "negated": False},
        {"image_id": 3, "question": "is there a green shape?", "answer": "no", "kind": "yes/no", "negated": False},
        {"image_id": 3, "question": "is there not a teal shape?", "answer": "no", "kind": "yes/no", "negated": True},
    ]
    found = image_attributes(rows)
    assert found == {1: {"color": "blue", "shape": "circle"}, 2: {"shape": "triangle", "color": "red"}, 3: {"color": "teal"}}
    assert [caption(found[k]) for k in (1, 2, 3)] == ["a blue circle", "a red triangle", "a teal shape"]
    assert caption({"shape": "circle"}) == "a circle"


def test_every_easyvqa_train_image_gets_a_caption(tmp_path):
    from vittle.toy.captions import write_captions

    samples = json.loads(write_captions(tmp_path / "captions.json", limit=20).read_text())
    assert len(samples) == 20 and all(s["conversations"][1]["value"].startswith("a ") for s in samples)
    questions = {s["conversations"][0]["value"] for s in json.loads((tmp_path / "train.json").read_text())}
    assert not questions & {s["conversations"][0]["value"] for s in samples}  # captions ask no VQA question
    assert all((tmp_path / s["image"]).is_file() for s in samples)


def test_the_pretrain_stage_trains_the_language_model_alone():
    from vittle.toy.tiny import build_tiny_llava
    from vittle.trainer import configure_stage

    model, _ = build_tiny_llava()
    names = configure_stage(model, "pretrain")
    assert names and all(".language_model." in n or n.startswith("lm_head") for n in names)
    assert not any("multi_modal_projector" in n or "vision_tower" in n for n in names)
    assert any("embed_tokens" in n for n in names)
