"""`Assistant.answer_logprobs` / `answer_distribution`: full-sequence scores of candidate answers
in two batched forwards, equal to scoring each candidate alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vittle.config import BottleneckConfig
from vittle.distribution import AnswerDistribution, total_variation
from vittle.inference import Assistant
from vittle.model import attach_bottleneck, bottleneck_alpha, detach_bottleneck

CANDIDATES = ["red", "blue", "a green circle", "yes", "no"]
QUESTIONS = ["What colour is the shape?", "Is there a red square in the image, or not?"]


@pytest.fixture
def assistant(tiny):
    model, processor = tiny
    attach_bottleneck(model, BottleneckConfig(layer=1))
    return Assistant(model, processor)


def test_scores_equal_one_forward_per_candidate_and_sum_to_one(assistant, image):
    images = [image, image.rotate(90)]  # two prompts of different lengths: left padding must not change a score
    scores = assistant.answer_logprobs(images, QUESTIONS, CANDIDATES)
    assert scores.shape == (2, len(CANDIDATES))
    eos = assistant.processor.tokenizer.eos_token
    for row, (img, question) in enumerate(zip(images, QUESTIONS)):
        for col, candidate in enumerate(CANDIDATES):
            alone, _ = assistant.loglikelihood(img, question, f" {candidate}{eos}")
            assert scores[row, col] == pytest.approx(alone, abs=1e-4), (question, candidate)
    found = assistant.answer_distribution(images, QUESTIONS, CANDIDATES + ["red", "  blue "])  # repeats dropped
    for dist, row in zip(found, scores):
        assert dist.candidates == CANDIDATES
        assert dist.probs.sum() == pytest.approx(1.0, abs=1e-9) and (dist.probs >= 0).all()
        assert np.allclose(dist.log_probs, row) and 0 < dist.coverage <= 1
        assert dist.best == CANDIDATES[int(np.argmax(row))] and dist.top(2)[0][0] == dist.best
        assert dist.prob("not a candidate") == 0.0


def test_the_greedy_answer_is_the_most_likely_candidate():
    """On the embedded easy-vqa model, over its 13 answers and the answer it gave, the most
    likely candidate is the greedy answer on every query."""
    import easy_vqa

    from vittle.data import load_image
    from vittle.toy.easyvqa import COLORS, SHAPES

    model = Assistant.load(Path(__file__).resolve().parents[2] / "assets" / "models" / "tiny-vittle-f", device="cpu")
    paths = easy_vqa.get_test_image_paths()
    images = [load_image(paths[i]) for i in range(8)]
    questions = ["What color is the shape?", "What shape is this?", "Is there a red shape?", "Is there not a circle?"] * 2
    generated = model.answer_batch(images, questions, max_new_tokens=4)
    found = model.answer_distribution(images, questions, ["yes", "no", *SHAPES, *COLORS, *generated])
    assert [dist.best for dist in found] == generated
    assert all(dist.probs.sum() == pytest.approx(1.0) and dist.coverage > 0.9 for dist in found)


def test_alpha_zero_scores_exactly_as_the_model_without_bottleneck(tiny, image):
    model, processor = tiny
    attach_bottleneck(model, BottleneckConfig(layer=1))
    assistant = Assistant(model, processor)
    with bottleneck_alpha(model, 0.0):
        off = assistant.answer_logprobs([image, None], ["What colour?", "Say a word"], CANDIDATES)
    with bottleneck_alpha(model, 1.0):
        on = assistant.answer_logprobs([image, None], ["What colour?", "Say a word"], CANDIDATES)
    detach_bottleneck(model)
    plain = assistant.answer_logprobs([image, None], ["What colour?", "Say a word"], CANDIDATES)
    assert np.array_equal(off, plain)
    assert not np.allclose(on, plain)


def test_top_k_adds_the_continuations_of_the_likeliest_first_tokens(assistant, image):
    found = assistant.answer_distribution([image, image.rotate(90)], QUESTIONS, ["red"], top_k=3, max_new_tokens=3)
    candidates = found[0].candidates
    assert found[1].candidates == candidates and candidates[0] == "red" and 2 <= len(candidates) <= 1 + 2 * 3
    for dist in found:
        assert dist.probs.sum() == pytest.approx(1.0) and dist.coverage <= 1 + 1e-9
    with pytest.raises(ValueError, match="no candidate answers"):
        assistant.answer_distribution([image], QUESTIONS[:1], [])
    assert assistant.answer_distribution([], [], ["red"]) == []


def test_total_variation_and_round_trip():
    p = AnswerDistribution(["red", "blue"], [np.log(0.75), np.log(0.25)])
    q = AnswerDistribution(["red", "blue"], [np.log(0.25), np.log(0.25)])  # renormalised: 0.5 / 0.5
    assert total_variation(p, p) == 0.0 and total_variation(p, q) == pytest.approx(0.25)
    assert AnswerDistribution.from_dict(p.to_dict()) == p and p.to_dict()["probs"] == pytest.approx([0.75, 0.25])
    assert q.coverage == pytest.approx(0.5)
    with pytest.raises(ValueError, match="different candidates"):
        total_variation(p, AnswerDistribution(["blue", "red"], [0.0, 0.0]))


def test_candidates_end_with_the_chat_format_s_end_of_turn(tiny_family):
    """A candidate is scored through the token that closes an answer in training: the chat
    format's end of turn (Gemma's "<end_of_turn>", ChatML's "<|im_end|>"), which for an
    instruct checkpoint such as gemma-3-it is not the tokenizer's end token ("<eos>")."""
    from vittle.families import family_of
    from vittle.scoring import answer_end, answer_ids

    _, processor = tiny_family(seed=0)
    chat, tokenizer = family_of(processor).chat, processor.tokenizer
    end = answer_end(chat, tokenizer)
    assert end == (getattr(chat, "end", "") or tokenizer.eos_token)
    ids = answer_ids(tokenizer, "red", chat.answer_head, end)
    assert ids[-1] == tokenizer.convert_tokens_to_ids(end)
    assert tokenizer.decode(ids[:-1], skip_special_tokens=True).strip() == "red"
