"""POPE in LLaVA's files: answer parsing, label alignment, metrics, resumable answer files and
`vittle eval pope` end to end with an embedded model on a small POPE-format fixture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vittle.analysis.evaluate.benchmark import answer_questions, perturb_prompt
from vittle.analysis.evaluate.llava_files import AnswerFile, FormatError, Question, answer_id, read_jsonl, read_questions
from vittle.analysis.evaluate.pope import align_labels, parse_yes_no, pope_metrics, read_labels
from vittle.analysis.evaluate.pope_cli import limit_questions
from vittle.analysis.evaluate.pope_cli import main as pope_main

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "models"
SUFFIX = "\nAnswer the question using a single word or phrase."
SHAPES = ("circle", "rectangle", "triangle")


def write_pope(folder: Path, images: int = 4) -> tuple[Path, Path, Path]:
    """A POPE-format fixture on easy-vqa test images: per image, "Is there a <shape> in the
    image?" for each of the three shapes (yes for the image's shape), the questions spread over
    the three categories, and one label file per category in the question file's order."""
    from vittle.toy.easyvqa import load_split

    shape_of: dict[int, str] = {}
    image_dir = None
    for row in load_split("test"):
        if row["kind"] == "shape" and row["image_id"] not in shape_of:
            shape_of[row["image_id"]] = row["answer"]
            image_dir = Path(row["image_path"]).parent
        if len(shape_of) == images:
            break
    questions, labels = [], {c: [] for c in ("random", "popular", "adversarial")}
    number = 0
    for image_id, shape in shape_of.items():
        for k, asked in enumerate(SHAPES):
            category = ("random", "popular", "adversarial")[(image_id + k) % 3]
            number += 1
            text = f"Is there a {asked} in the image?"
            questions.append({"question_id": 1000 + number, "image": f"{image_id}.png", "text": text + SUFFIX, "category": category})
            labels[category].append({"question_id": len(labels[category]) + 1, "image": f"{image_id}.png", "text": text,
                                     "label": "yes" if asked == shape else "no"})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    label_dir = folder / "labels"
    label_dir.mkdir(exist_ok=True)
    for category, rows in labels.items():
        (label_dir / f"coco_pope_{category}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "questions.jsonl", image_dir, label_dir


def test_answers_are_parsed_by_llavas_rule():
    cases = {"Yes": "yes", "Yes, there is a dog in the image.": "yes", "No.": "no", "no": "no",
             "There is not a cat.": "no", "Yes. No other animals.": "yes",  # only the first sentence counts
             "I see no, dog": "no", "no, none": "no",  # commas are dropped before splitting
             "NO": "yes", "Nope": "yes", "": "yes"}  # the rule looks for "no", "No" and "not" only
    assert {text: parse_yes_no(text) for text in cases} == cases


def test_pope_metrics_by_hand():
    m = pope_metrics(["yes", "yes", "no", "no", "yes"], ["yes", "no", "no", "yes", "yes"])
    # tp 2 (0, 4), fp 1 (1), tn 1 (2), fn 1 (3)
    assert (m["tp"], m["fp"], m["tn"], m["fn"], m["n"]) == (2, 1, 1, 1, 5)
    assert m["accuracy"] == pytest.approx(60.0)
    assert m["precision"] == pytest.approx(200 / 3) and m["recall"] == pytest.approx(200 / 3)
    assert m["f1"] == pytest.approx(200 / 3) and m["yes_ratio"] == pytest.approx(60.0)
    none_said = pope_metrics(["no", "no"], ["yes", "no"])
    assert none_said["precision"] == 0.0 and none_said["f1"] == 0.0 and none_said["accuracy"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="2 predictions but 1 labels"):
        pope_metrics(["yes", "no"], ["yes"])


def test_labels_pair_by_order_within_a_category_and_a_misaligned_pair_is_an_error(tmp_path):
    questions_file, _, label_dir = write_pope(tmp_path, images=3)
    questions = read_questions(questions_file)
    labels = align_labels(questions, read_labels(label_dir))
    assert len(labels) == 9 and sorted(set(labels.values())) == ["no", "yes"]
    assert sum(v == "yes" for v in labels.values()) == 3  # one shape per image
    reordered = sorted(questions, key=lambda q: (q.category, -int(q.question_id)))  # each category's order reversed
    with pytest.raises(FormatError, match="not in the same order"):
        align_labels(reordered, read_labels(label_dir))
    with pytest.raises(FormatError, match="no label file for the category 'unknown'"):
        align_labels([Question(1, "0.png", "Is there?", "unknown")], read_labels(label_dir))
    with pytest.raises(FormatError, match="has no category"):
        align_labels([Question(1, "0.png", "Is there?")], read_labels(label_dir))
    (label_dir / "coco_pope_random.json").write_text(json.dumps({"question_id": 1, "image": "0.png", "label": "maybe"}) + "\n")
    with pytest.raises(FormatError, match="'label' must be yes or no, got 'maybe'"):
        read_labels(label_dir)


def test_question_files_are_checked(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question_id": 1, "text": "Is there a cat?"}\n{"question_id": 1, "text": "Again?"}\n')
    with pytest.raises(FormatError, match="question_id 1 appears twice"):
        read_questions(path)
    path.write_text('{"question_id": 1, "text": "Is there a cat?"}\nnot json\n')
    with pytest.raises(FormatError, match="q.jsonl, line 2: not JSON"):
        read_questions(path)
    path.write_text('{"question_id": 1, "text": "  "}\n')
    with pytest.raises(FormatError, match="question 1 has an empty text"):
        read_questions(path)
    path.write_text('{"id": 1, "text": "Is there a cat?"}\n')
    with pytest.raises(FormatError, match="question 1 has no question_id"):
        read_questions(path)


def test_answer_file_drops_a_partial_last_line_and_refuses_a_broken_middle(tmp_path):
    answers = AnswerFile(tmp_path / "answers.jsonl", model_id="m", tag="clean")
    questions = [Question(i, None, f"q{i}") for i in range(3)]
    answers.append(questions[:2], ["q0", "q1"], ["yes", "no"])
    rows = answers.rows()
    assert [r["question_id"] for r in rows] == [0, 1]
    assert set(rows[0]) == {"question_id", "prompt", "text", "answer_id", "model_id", "metadata"}
    assert rows[0]["answer_id"] == answer_id("m", 0, "clean") != answer_id("m", 0, "frost:3")  # stable across reruns
    whole = answers.path.read_bytes()
    answers.path.write_bytes(whole + b'{"question_id": 2, "prom')  # a crash in the middle of a write
    assert answers.done() == {0, 1} and answers.path.read_bytes() == whole  # the partial line is gone
    answers.append(questions[2:], ["q2"], ["yes"])
    assert [r["question_id"] for r in answers.rows()] == [0, 1, 2]
    answers.path.write_bytes(answers.path.read_bytes().rstrip(b"\n"))  # the last newline lost
    assert answers.done() == {0, 1, 2} and answers.path.read_bytes().endswith(b"\n")
    lines = answers.path.read_bytes().split(b"\n")
    answers.path.write_bytes(b"\n".join([lines[0], b"garbage", *lines[1:]]))
    with pytest.raises(FormatError, match="line 2 is not JSON and is not the last line"):
        answers.rows()


def test_a_text_shift_edits_the_question_but_not_the_answer_format_instruction():
    text = "Is there a circle in the image?" + SUFFIX
    shifted = perturb_prompt(text, "char_typo:5", seed=3)
    question, _, rest = shifted.partition("\n")
    assert rest == SUFFIX.lstrip("\n") and question != "Is there a circle in the image?"
    assert perturb_prompt(text, "gaussian_noise:3", seed=3) == text
    assert perturb_prompt(text, "char_typo:5", seed=3) == shifted  # seeded


class _Crashing:
    """An assistant that fails after `ok` batches, as a run killed part-way would stop."""

    def __init__(self, assistant, ok: int):
        self.assistant, self.ok = assistant, ok

    def answer_batch(self, *args, **kwargs):
        if self.ok == 0:
            raise KeyboardInterrupt("killed")
        self.ok -= 1
        return self.assistant.answer_batch(*args, **kwargs)


@pytest.fixture(scope="module")
def baseline():
    from vittle.inference import Assistant

    return Assistant.load(str(ASSETS / "tiny-baseline"), device="cpu")


def test_a_run_killed_part_way_resumes_to_the_uninterrupted_answers(tmp_path, baseline):
    questions_file, image_dir, _ = write_pope(tmp_path, images=4)
    questions = read_questions(questions_file)
    whole = AnswerFile(tmp_path / "whole.jsonl", "base", "gaussian_noise:3")
    assert answer_questions(baseline, questions, image_dir, whole, spec="gaussian_noise:3", batch_size=4, progress=False) == 12
    resumed = AnswerFile(tmp_path / "resumed.jsonl", "base", "gaussian_noise:3")
    with pytest.raises(KeyboardInterrupt):
        answer_questions(_Crashing(baseline, ok=2), questions, image_dir, resumed, spec="gaussian_noise:3", batch_size=4, progress=False)
    assert len(resumed.rows()) == 8  # two batches were written before the crash
    assert answer_questions(baseline, questions, image_dir, resumed, spec="gaussian_noise:3", batch_size=4, progress=False) == 4
    assert resumed.rows() == whole.rows()
    assert answer_questions(baseline, questions, image_dir, resumed, spec="gaussian_noise:3", progress=False) == 0


def test_vittle_eval_pope_end_to_end(tmp_path, capsys):
    questions_file, image_dir, label_dir = write_pope(tmp_path / "pope", images=6)
    out = tmp_path / "out"
    code = pope_main(["--model", f"base={ASSETS / 'tiny-baseline'}", "--questions", str(questions_file), "--images", str(image_dir),
                      "--labels", str(label_dir), "--specs", "clean,gaussian_noise:3", "--limit", "5", "--out", str(out),
                      "--device", "cpu", "--max-new-tokens", "4"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "results.json").read_text())
    assert report["specs"] == ["clean", "gaussian_noise:3"]
    questions = limit_questions(read_questions(questions_file), 5)
    assert len(questions) == 15
    labels = align_labels(questions, read_labels(label_dir))
    for spec in ("clean", "gaussian_noise:3"):
        rows = read_jsonl(out / "base" / spec / "answers.jsonl")
        assert [r["question_id"] for r in rows] == [q.question_id for q in questions]
        assert all(r["model_id"] == "base" and r["metadata"] == {"spec": spec} for r in rows)
        result = report["results"]["base"][spec]
        # recomputed here from the answer file, category by category
        for category in ("random", "popular", "adversarial", "all"):
            picked = [q for q in questions if category in ("all", q.category)]
            said = {r["question_id"]: parse_yes_no(r["text"]) for r in rows}
            correct = sum(said[q.question_id] == labels[q.question_id] for q in picked)
            assert result[category]["n"] == len(picked)
            assert result[category]["accuracy"] == pytest.approx(100 * correct / len(picked))
        assert result["missing"] == 0
    table = (out / "results.md").read_text()
    assert "| model | clean | V |" in table and "| base |" in table and "| gaussian_noise:3 |" in table
    # the scorer reads an answer file on its own (ours here; LLaVA's have the same layout)
    capsys.readouterr()
    assert pope_main(["--score-only", str(out / "base" / "clean" / "answers.jsonl"), "--questions", str(questions_file),
                      "--labels", str(label_dir), "--limit", "5"]) == 0
    assert json.loads(capsys.readouterr().out) == report["results"]["base"]["clean"]


def test_vittle_eval_pope_reports_bad_input_without_a_traceback(tmp_path, capsys):
    questions_file, image_dir, label_dir = write_pope(tmp_path, images=2)
    with pytest.raises(SystemExit) as exit:
        pope_main(["--questions", str(questions_file), "--labels", str(label_dir)])
    assert exit.value.code == 2 and "models: none given; name a checkpoint, or score_only" in capsys.readouterr().err
    assert pope_main(["--model", "x", "--questions", str(tmp_path / "none.jsonl"), "--labels", str(label_dir)]) == 1  # a missing file
    assert "none.jsonl: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        pope_main(["--model", "x", "--questions", str(questions_file), "--labels", str(label_dir), "--limit", "0"])
    assert exit.value.code == 2 and "vittle eval pope: error: limit=0 must be at least 1" in capsys.readouterr().err


def test_a_data_parallel_run_over_two_processes_equals_one_process(tmp_path):
    """Two ranks (RANK/WORLD_SIZE as torchrun sets them), real processes at the same time:
    each answers every other question, rank 0 merges and scores; the answers and results
    equal a one-process run's."""
    import os
    import subprocess
    import sys

    questions_file, image_dir, label_dir = write_pope(tmp_path / "pope", images=4)
    common = ["--model", f"base={ASSETS / 'tiny-baseline'}", "--questions", str(questions_file), "--images", str(image_dir),
              "--labels", str(label_dir), "--specs", "clean,zoom_blur:2", "--device", "cpu", "--max-new-tokens", "4", "--batch-size", "4"]
    code = "import sys; from vittle.analysis.evaluate.pope_cli import main; sys.exit(main(sys.argv[1:]))"
    root = Path(__file__).resolve().parents[2]

    def launch(out, rank, world):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1"}
        return subprocess.Popen([sys.executable, "-c", code, *common, "--out", str(out)], cwd=root, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    ranks = [launch(tmp_path / "dp", rank, 2) for rank in (1, 0)]
    outputs = [process.communicate(timeout=300) for process in ranks]
    assert [process.returncode for process in ranks] == [0, 0], outputs
    assert "rank 1 of 2: its answers are written" in outputs[0][1]
    single = launch(tmp_path / "one", 0, 1)
    assert single.wait(timeout=300) == 0
    for spec in ("clean", "zoom_blur:2"):
        merged = read_jsonl(tmp_path / "dp" / "base" / spec / "answers.jsonl")
        assert merged == read_jsonl(tmp_path / "one" / "base" / spec / "answers.jsonl")
        parts = [read_jsonl(tmp_path / "dp" / "base" / spec / f"answers.rank{r}-of-2.jsonl") for r in (0, 1)]
        assert [len(p) for p in parts] == [6, 6] and not {r["question_id"] for r in parts[0]} & {r["question_id"] for r in parts[1]}
    dp, one = (json.loads((tmp_path / d / "results.json").read_text())["results"] for d in ("dp", "one"))
    assert dp == one


def test_shard_settings_come_from_the_launcher_and_are_checked(monkeypatch):
    from vittle.analysis.evaluate.benchmark import Shard

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    shard = Shard.from_env()
    assert (shard.rank, shard.world, shard.main) == (1, 3, False)
    assert [q.question_id for q in shard.part([Question(i, None, "q") for i in range(8)])] == [1, 4, 7]
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(ValueError, match="RANK=3 and WORLD_SIZE=3: need 0 <= RANK < WORLD_SIZE"):
        Shard.from_env()
    monkeypatch.setenv("RANK", "one")
    with pytest.raises(ValueError, match="RANK and WORLD_SIZE must be integers"):
        Shard.from_env()
