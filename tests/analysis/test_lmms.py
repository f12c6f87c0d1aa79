"""The lmms-eval model class, called as lmms-eval calls it (requests whose `args` are its
tuples, a task_dict of documents). lmms-eval itself is not installed here (it pulls dozens
of packages); its interface is the `args` layout and the methods below."""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from vittle.analysis.evaluate.lmms import Vittle

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "models"


@dataclass
class Request:
    args: tuple


@pytest.fixture(scope="module")
def model():
    from vittle.toy.easyvqa import load_split

    rows = [r for r in load_split("test") if r["kind"] in ("color", "shape")][:6]
    from PIL import Image

    docs = [{"image": Image.open(r["image_path"]).convert("RGB"), "question": r["question"], "answer": r["answer"]} for r in rows]
    vittle = Vittle(pretrained=str(ASSETS / "tiny-vittle-f"), device="cpu", batch_size=4)
    vittle.task_dict = {"shapes": {"test": docs}}
    return vittle


def _visual(doc):
    return [doc["image"]]


def test_the_entry_point_names_the_class():
    found = [ep for ep in entry_points().select(group="lmms_eval.models") if ep.name == "vittle"]
    assert found and found[0].value == "vittle.analysis.evaluate.lmms:manifest"
    assert Vittle.is_simple


def test_generate_until_answers_like_the_assistant_and_honours_stop_strings(model):
    docs = model.task_dict["shapes"]["test"]
    requests = [Request((f"<image>\n{d['question']}", {"max_new_tokens": 8, "until": ["\n"]}, _visual, i, "shapes", "test"))
                for i, d in enumerate(docs)]
    answers = model.generate_until(requests)
    expected = model.assistant.answer_batch([d["image"] for d in docs], [d["question"] for d in docs], max_new_tokens=8)
    assert answers == expected and model.assistant.has_bottleneck
    assert sum(a == d["answer"] for a, d in zip(answers, docs)) >= 5  # the embedded model reads colour and shape
    first = answers[0]
    cut = model.generate_until([Request((docs[0]["question"], {"max_new_tokens": 8, "until": [first[1:]]}, _visual, 0, "shapes", "test"))])
    assert cut == [first[:1]]  # the answer is cut at the stop string


def test_loglikelihood_prefers_the_greedy_answer(model):
    docs = model.task_dict["shapes"]["test"]
    doc = docs[0]
    greedy = model.generate_until([Request((doc["question"], {"max_new_tokens": 4}, _visual, 0, "shapes", "test"))])[0]
    candidates = ["red", "blue", "green", "circle", "triangle", "rectangle"]
    assert greedy in candidates
    # continuations carry their leading space, as lmms-eval's tasks write them (" red": one token here)
    scored = model.loglikelihood([Request((doc["question"], f" {c}", _visual, 0, "shapes", "test")) for c in candidates])
    assert all(lp <= 0 for lp, _ in scored)
    assert sum(math.exp(lp) for lp, _ in scored) <= 1 + 1e-5  # distinct one-token continuations
    best = max(range(len(candidates)), key=lambda i: scored[i][0])
    assert candidates[best] == greedy and scored[best][1] is True
    assert [greedy_flag for _, greedy_flag in scored].count(True) == 1


def test_unsupported_requests_are_refused_clearly(model):
    with pytest.raises(NotImplementedError, match="single-round tasks only"):
        model.generate_until_multi_round([])
    docs = model.task_dict["shapes"]["test"]
    two = lambda doc: [doc["image"], doc["image"]]  # noqa: E731
    with pytest.raises(ValueError, match="carries 2 images"):
        model.generate_until([Request((docs[0]["question"], {}, two, 0, "shapes", "test"))])
    with pytest.raises(ValueError, match="batch_size=0 must be at least 1"):
        Vittle(pretrained="x", batch_size=0, assistant=model.assistant)


def test_an_empty_continuation_is_refused_with_its_request(model):
    docs = model.task_dict["shapes"]["test"]
    with pytest.raises(ValueError, match="request 0 of shapes: the continuation '' has no tokens"):
        model.loglikelihood([Request((docs[0]["question"], "", _visual, 0, "shapes", "test"))])
