"""`vittle eval pope` end to end for every model family: each family's tiny random model
(tests/vittle/conftest.py's BUILDERS, through the `tiny_family` parameter of tests/conftest.py)
saved with a Vittle bottleneck, loaded back with it, and run through the command on a small
POPE fixture. The model is random: the test checks that the numbers are well formed, not their
values."""

from __future__ import annotations

import json

import pytest

from vittle.analysis.evaluate.llava_files import read_jsonl, read_questions
from vittle.analysis.evaluate.pope import align_labels, read_labels
from vittle.analysis.evaluate.pope_cli import limit_questions

from .test_pope import write_pope

LIMIT = 2
"""Questions per category: 6 questions in all, on 2 images."""


@pytest.fixture(scope="module")
def pope(tmp_path_factory):
    return write_pope(tmp_path_factory.mktemp("pope"), images=2)


def test_vittle_eval_pope_runs_each_family(save_tiny_family, pope, tmp_path, capsys):
    from vittle import families
    from vittle.cli import main
    from vittle.inference import Assistant
    from vittle.model import get_bottleneck

    folder = save_tiny_family(tmp_path / "vittle")
    loaded = Assistant.load(folder, device="cpu")
    assert get_bottleneck(loaded.model) is not None  # the bottleneck came back with the folder
    family = families.family_of(loaded.model).name
    del loaded
    questions_file, image_dir, label_dir = pope
    out = tmp_path / "out"
    code = main(["eval", "pope", "--model", f"vittle={folder}", "--questions", str(questions_file), "--images", str(image_dir),
                 "--labels", str(label_dir), "--specs", "clean", "--limit", str(LIMIT), "--out", str(out), "--device", "cpu",
                 "--max-new-tokens", "3", "--batch-size", "4"])
    assert code == 0, f"{family}: {capsys.readouterr().err}"
    questions = limit_questions(read_questions(questions_file), LIMIT)
    labels = align_labels(questions, read_labels(label_dir))
    rows = read_jsonl(out / "vittle" / "clean" / "answers.jsonl")
    assert [r["question_id"] for r in rows] == [q.question_id for q in questions]
    assert all(isinstance(r["text"], str) for r in rows)
    result = json.loads((out / "results.json").read_text())["results"]["vittle"]["clean"]
    assert result["missing"] == 0
    for category in ("random", "popular", "adversarial", "all"):
        picked = [q for q in questions if category in ("all", q.category)]
        metrics = result[category]
        assert metrics["n"] == len(picked) == metrics["tp"] + metrics["fp"] + metrics["tn"] + metrics["fn"]
        assert metrics["tp"] + metrics["fn"] == sum(labels[q.question_id] == "yes" for q in picked)
        for key in ("accuracy", "precision", "recall", "f1", "yes_ratio"):  # percentages
            assert 0.0 <= metrics[key] <= 100.0, (family, category, key, metrics[key])
        assert metrics["yes_ratio"] == pytest.approx(100 * (metrics["tp"] + metrics["fp"]) / metrics["n"])
    assert result["all"]["n"] == 3 * LIMIT
    assert "| vittle |" in (out / "results.md").read_text()
