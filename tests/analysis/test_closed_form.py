"""Closed-form benchmarks: the multiple-choice prompt, letter extraction, MME's parsing and
scores by hand, and `vittle eval mc` / `vittle eval mme` end to end with an embedded model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vittle.analysis.evaluate.cli import main as eval_main
from vittle.analysis.evaluate.closed_form import (
    MC_INSTRUCTION,
    extract_letter,
    gold_letter,
    mc_prompt,
    mc_scores,
    mme_scores,
    parse_mme,
)
from vittle.analysis.evaluate.llava_files import read_jsonl

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "models"
OPTIONS = ["circle", "rectangle", "triangle"]


def test_the_prompt_letters_the_options_and_ends_with_the_instruction():
    assert mc_prompt("What shape?", OPTIONS, context="A drawing.") == (
        "Context: A drawing.\nWhat shape?\nA. circle\nB. rectangle\nC. triangle\n" + MC_INSTRUCTION)
    with pytest.raises(ValueError, match="2 to 26 options, got 1"):
        mc_prompt("?", ["only"])


def test_letters_are_read_from_free_answers():
    cases = {"B": "B", "B.": "B", "(C)": "C", "C) a triangle": "C", "A. circle": "A", "The answer is B.": "B",
             "I think the answer is (C)": "C", "triangle": "C", "Rectangle.": "B",
             "A cat": None, "D": None, "": None, "square": None, "circle or triangle": None}
    assert {answer: extract_letter(answer, OPTIONS) for answer in cases} == cases
    assert gold_letter("b", OPTIONS) == "B" and gold_letter(2, OPTIONS) == "C" and gold_letter("Circle", OPTIONS) == "A"
    with pytest.raises(ValueError, match="neither a letter among ABC nor exactly one option's text"):
        gold_letter("square", OPTIONS)


def test_mc_scores_by_hand():
    result = mc_scores(["A", None, "C", "B"], ["A", "B", "C", "C"], ["x", "x", "y", None])
    assert result["all"] == {"n": 4, "accuracy": 50.0, "no_letter": 1}
    assert result["x"] == {"n": 2, "accuracy": 50.0} and result["y"] == {"n": 1, "accuracy": 100.0}


def test_mme_parsing_and_scores_by_hand():
    assert [parse_mme(a) for a in ("Yes", "no.", "Yes, it is", "Nope", "It is", "No, there isn't")] == ["yes", "no", "yes", "no", "other", "no"]
    rows = [  # existence: image a both right, image b one right; OCR: image c both wrong
        {"category": "existence", "image": "a", "answer": "Yes", "prediction": "Yes"},
        {"category": "existence", "image": "a", "answer": "No", "prediction": "No"},
        {"category": "existence", "image": "b", "answer": "Yes", "prediction": "Yes"},
        {"category": "existence", "image": "b", "answer": "No", "prediction": "yes"},
        {"category": "OCR", "image": "c", "answer": "Yes", "prediction": "maybe"},
        {"category": "OCR", "image": "c", "answer": "No", "prediction": "Yes"},
        {"category": "code_reasoning", "image": "d", "answer": "No", "prediction": "No."},
        {"category": "code_reasoning", "image": "d", "answer": "Yes", "prediction": "Yes"},
    ]
    scores = mme_scores(rows)
    assert scores["tasks"]["existence"] == pytest.approx({"n": 4, "images": 2, "accuracy": 75.0, "accuracy_plus": 50.0, "score": 125.0})
    assert scores["tasks"]["OCR"]["score"] == 0.0
    assert scores["perception"] == pytest.approx(125.0) and scores["cognition"] == pytest.approx(200.0)


def _easyvqa(n: int) -> list[dict]:
    from vittle.toy.easyvqa import load_split

    return [row for row in load_split("test") if row["kind"] == "shape"][:n]


def test_vittle_eval_mc_end_to_end(tmp_path, capsys):
    rows = _easyvqa(6)
    questions = [{"question_id": i, "image": Path(r["image_path"]).name, "question": r["question"], "options": OPTIONS,
                  "answer": r["answer"], "category": "shape"} for i, r in enumerate(rows)]
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in questions))
    out = tmp_path / "out"
    code = eval_main(["mc", "--model", f"base={ASSETS / 'tiny-baseline'}", "--questions", str(path), "--images",
                      str(Path(rows[0]["image_path"]).parent), "--specs", "clean,defocus_blur:2", "--out", str(out), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "results.json").read_text())
    for spec in ("clean", "defocus_blur:2"):
        answers = read_jsonl(out / "base" / spec / "answers.jsonl")
        assert [a["question_id"] for a in answers] == list(range(6))
        assert answers[0]["prompt"].endswith(MC_INSTRUCTION) and "\nA. circle\nB. rectangle\nC. triangle\n" in answers[0]["prompt"]
        letters = [extract_letter(a["text"], OPTIONS) for a in answers]
        right = sum(letter == gold_letter(q["answer"], OPTIONS) for letter, q in zip(letters, questions))
        assert report["results"]["base"][spec]["all"]["accuracy"] == pytest.approx(100 * right / 6)
    assert "## Multiple choice: accuracy (%)" in (out / "results.md").read_text()


def test_vittle_eval_mme_end_to_end_and_bad_files(tmp_path, capsys):
    rows = _easyvqa(3)
    questions = []
    for i, r in enumerate(rows):
        other = next(s for s in OPTIONS if s != r["answer"])
        for j, (shape, answer) in enumerate(((r["answer"], "Yes"), (other, "No"))):
            questions.append({"question_id": f"{i}-{j}", "image": Path(r["image_path"]).name, "text": f"Is there a {shape}?",
                              "answer": answer, "category": "existence"})
    path = tmp_path / "mme.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in questions))
    out = tmp_path / "out"
    code = eval_main(["mme", "--model", f"base={ASSETS / 'tiny-baseline'}", "--questions", str(path), "--images",
                      str(Path(rows[0]["image_path"]).parent), "--out", str(out), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    answers = read_jsonl(out / "base" / "clean" / "answers.jsonl")
    assert answers[0]["prompt"] == "Is there a " + rows[0]["answer"] + "?\nAnswer the question using a single word or phrase."
    expected = mme_scores([{"category": "existence", "image": q["image"], "answer": q["answer"], "prediction": a["text"]}
                           for q, a in zip(questions, answers)])
    got = json.loads((out / "results.json").read_text())["results"]["base"]["clean"]
    assert got["tasks"]["existence"] == pytest.approx(expected["tasks"]["existence"])
    assert got["perception"] == pytest.approx(expected["perception"]) and got["cognition"] == 0.0
    path.write_text(json.dumps({"question_id": 1, "text": "Is there?", "answer": "Maybe", "category": "existence"}) + "\n")
    assert eval_main(["mme", "--model", "x", "--questions", str(path)]) == 1  # a bad file: the command failed
    assert "question 1: the answer must be Yes or No, got 'Maybe'" in capsys.readouterr().err
