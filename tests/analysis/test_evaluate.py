"""Scoring, perturbed variants, evaluation runs and posterior diagnostics."""

from __future__ import annotations

import json

import pytest
import torch

from vittle.analysis.evaluate import (
    EvalResult,
    Variants,
    evaluate,
    load_samples,
    markdown_table,
    normalize_answer,
    score,
    yes_no_metrics,
)
from vittle.analysis.evaluate.cli import main as eval_main
from vittle.analysis.perturb import expand_specs, spec_sets


def test_normalize_answer():
    assert normalize_answer(" Yes. ") == "yes"
    assert normalize_answer("Red!") == normalize_answer("red")
    assert normalize_answer("dark  blue") == "dark blue"


def test_yes_no_metrics_by_hand():
    predictions = ["yes", "yes", "no", "no", "yes", "maybe"]
    answers = ["yes", "no", "no", "yes", "yes", "yes"]
    m = yes_no_metrics(predictions, answers)
    # tp=2 (0, 4), fp=1 (1), fn=2 (3, 5); correct 0, 2, 4
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(50.0)
    assert m["precision"] == pytest.approx(200 / 3)
    assert m["recall"] == pytest.approx(50.0)
    assert m["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5) * 100)
    assert m["yes_ratio"] == pytest.approx(50.0)
    assert yes_no_metrics(["no"] * 3, ["yes", "no", "no"])["f1"] == 0.0


def test_score_by_kind_and_negation():
    samples = [
        {"answer": "yes", "kind": "yes/no", "negated": False},
        {"answer": "no", "kind": "yes/no", "negated": True},
        {"answer": "red", "kind": "color"},
        {"answer": "circle", "kind": "shape"},
    ]
    result = score(samples, ["yes", "yes", "Red.", "triangle"])
    assert result["accuracy"] == 50.0
    assert result["by_kind"] == {"color": 100.0, "shape": 0.0, "yes/no": 50.0}
    assert result["yes_no"]["plain"]["accuracy"] == 100.0 and result["yes_no"]["negated"]["accuracy"] == 0.0
    assert result["yes_no"]["yes_ratio"] == 100.0
    with pytest.raises(ValueError, match="4 samples but 3 predictions"):
        score(samples, ["a", "b", "c"])


def test_spec_sets_and_expansion():
    sets = spec_sets()
    assert len(sets["visual"]) == 45 and "frost:5" in sets["visual"]
    assert len(sets["text"]) == 9 and "greek" in sets["text"]
    assert len(sets["paper"]) == 27
    specs = expand_specs("visual,text,frost:3", clean=True)
    assert specs[0] == "clean" and len(specs) == 55  # frost:3 is already in "visual"
    assert expand_specs("paper-text") == sets["paper-text"] and expand_specs(["frost:2", "greek"]) == ["frost:2", "greek"]
    assert expand_specs("", clean=True) == ["clean"]
    with pytest.raises(ValueError, match="unknown perturbation 'snow'"):
        expand_specs("snow:2")
    with pytest.raises(ValueError, match="no specs given; use a set \\(paper, paper-visual"):
        expand_specs(" , ")


@pytest.fixture(scope="module")
def few_samples():
    return load_samples("easyvqa", limit_images=3)


def test_load_samples_keeps_whole_images(few_samples, tmp_path):
    assert {s["image_id"] for s in few_samples} == {0, 1, 2}
    assert all(s["answer"] and s["question"] and "<image>" not in s["question"] for s in few_samples)
    from vittle.toy.easyvqa import convert

    from_json = load_samples(convert(tmp_path, "test", limit=3))
    assert [(s["question"], s["answer"], s["kind"]) for s in from_json] == [(s["question"], s["answer"], s["kind"]) for s in few_samples]
    with pytest.raises(ValueError, match="limit_images=0"):
        load_samples("easyvqa", limit_images=0)


def test_variants_perturb_once_and_deterministically(few_samples):
    variants = Variants(few_samples, seed=0)
    clean_images, clean_questions = variants.get("clean")
    frost_images, frost_questions = variants.get("frost:3")
    assert frost_questions == clean_questions
    assert all(a.tobytes() != b.tobytes() for a, b in zip(clean_images, frost_images))
    again, _ = variants.get("frost:3")
    assert all(a is b for a, b in zip(frost_images, again))  # memoized, one corruption per image
    by_image = {}
    for sample, image in zip(few_samples, frost_images):
        by_image.setdefault(sample["image_id"], set()).add(id(image))
    assert all(len(ids) == 1 for ids in by_image.values())
    _, typo_questions = variants.get("char_typo:3")
    assert typo_questions != clean_questions
    assert Variants(few_samples, seed=0).get("char_typo:3")[1] == typo_questions
    paused: list[int] = []  # a server's background work waits for users' turns before each corruption
    hooked = Variants(few_samples, seed=0, pause=lambda: paused.append(1))
    assert [a.tobytes() for a in hooked.get("frost:3")[0]] == [a.tobytes() for a in frost_images]
    hooked.get("frost:3")
    hooked.get("char_typo:3")
    assert len(paused) == len({s["image_id"] for s in few_samples}) + 1  # once per image corrupted, once per question set


@pytest.fixture(scope="module")
def effnet_assistant():
    from vittle.config import BottleneckConfig
    from vittle.inference import Assistant
    from vittle.model import attach_bottleneck
    from vittle.toy.tiny import build_efficientnet_llava

    model, processor = build_efficientnet_llava(seed=0, hidden_size=64, num_layers=2)
    attach_bottleneck(model, BottleneckConfig())
    return Assistant(model.eval(), processor)


def test_evaluate_scores_every_spec(effnet_assistant, few_samples):
    result = evaluate(effnet_assistant, few_samples, ["clean", "contrast:5", "word_swap:2"], progress=False)
    assert result.specs == ["clean", "contrast:5", "word_swap:2"]
    questions = [s["question"] for s in few_samples]
    for spec, scored in result.scores.items():
        assert scored.n == len(few_samples) and 0.0 <= scored.accuracy <= 100.0
        assert len(scored.predictions) == len(few_samples)  # every prediction is kept
        hits = sum(normalize_answer(p) == normalize_answer(s["answer"]) for p, s in zip(scored.predictions, few_samples))
        assert scored.accuracy == pytest.approx(100 * hits / len(few_samples))
        assert (scored.questions == questions) == (spec != "word_swap:2")
    assert result.answers == [str(s["answer"]) for s in few_samples]
    again = EvalResult.from_json(json.loads(json.dumps(result.to_json())))
    assert again == result
    with pytest.raises(ValueError, match="format"):
        EvalResult.from_json({**result.to_json(), "format_version": 1})
    with pytest.raises(KeyError, match="not evaluated"):
        result.accuracy("frost:3")
    table = markdown_table(result, "tiny")
    assert table.count("\n| ") == 4 and "| contrast:5 |" in table
    with pytest.raises(ValueError, match="made for other samples"):
        evaluate(effnet_assistant, few_samples[:2], ["clean"], Variants(few_samples), progress=False)


def test_diagnostics_on_a_collapsed_and_an_informative_posterior(effnet_assistant, few_samples):
    from vittle.analysis.evaluate.diagnostics import posterior_diagnostics
    from vittle.model import get_bottleneck

    images, questions = Variants(few_samples).get("clean")
    bottleneck = get_bottleneck(effnet_assistant.model)
    saved = {k: v.clone() for k, v in bottleneck.state_dict().items()}
    try:
        with torch.no_grad():  # posterior == prior: mu = 0, logvar = 0 for every token
            for mlp in (bottleneck.visual, bottleneck.text):
                mlp.fc2.weight.zero_()
                mlp.fc2.bias.zero_()
        collapsed = posterior_diagnostics(effnet_assistant, images[:4], questions[:4])
        assert collapsed["visual"]["kl"] == pytest.approx(0.0, abs=1e-7)
        assert collapsed["visual"]["active_share"] == 0.0 and collapsed["text"]["active_share"] == 0.0
        assert collapsed["visual"]["posterior_variance"] == pytest.approx(1.0)
        with torch.no_grad():  # a mean of 1 in every dimension: KL 0.5 per dimension
            for mlp in (bottleneck.visual, bottleneck.text):
                mlp.fc2.bias[: mlp.fc2.bias.shape[0] // 2] = 1.0
        informative = posterior_diagnostics(effnet_assistant, images[:4], questions[:4])
        assert informative["visual"]["kl"] == pytest.approx(0.5, rel=1e-5)
        assert informative["text"]["active_share"] == 1.0
        assert informative["visual"]["tokens"] == 4 * 49
    finally:
        bottleneck.load_state_dict(saved)


def test_parse_models():
    from vittle.options import parse_models

    assert parse_models(["base=a/b", "c/tiny-vittle-f/"]) == {"base": "a/b", "tiny-vittle-f": "c/tiny-vittle-f/"}
    with pytest.raises(ValueError, match="used twice"):
        parse_models(["x=a", "x=b"])


def test_eval_command_writes_json_and_markdown(effnet_assistant, tmp_path, capsys):
    folder = tmp_path / "model"
    effnet_assistant.model.save_pretrained(folder)
    effnet_assistant.processor.save_pretrained(folder)
    out = tmp_path / "eval"
    code = eval_main(["easyvqa", "--model", f"tiny={folder}", "--specs", "brightness:2,char_delete:1",
                      "--limit-images", "2", "--out", str(out), "--batch-size", "8"])
    assert code == 0
    report = json.loads((out / "eval.json").read_text())
    assert list(report["models"]["tiny"]["results"]) == ["clean", "brightness:2", "char_delete:1"]
    assert "| brightness:2 |" in (out / "eval.md").read_text()
    assert eval_main(["easyvqa", "--model", str(tmp_path / "missing"), "--out", str(out)]) == 1  # ran; no such model
    assert "error:" in capsys.readouterr().err




def test_perturbed_images_do_not_depend_on_call_order(tmp_path):
    from vittle.toy.easyvqa import convert

    path = convert(tmp_path, "test", limit=2)
    samples = json.loads(path.read_text())
    for sample in samples:
        del sample["image_id"]  # ids fall back to the image path (a string)
    path.write_text(json.dumps(samples))
    rows = load_samples(path)
    first = Variants(rows, seed=0)
    first.get("contrast:2")
    a, _ = first.get("fog:3")
    b, _ = Variants(rows, seed=0).get("fog:3")
    assert [x.tobytes() for x in a] == [y.tobytes() for y in b]


def test_eval_max_new_tokens_is_an_option_and_is_checked(capsys):
    with pytest.raises(SystemExit) as exit:
        eval_main(["easyvqa", "--model", "x", "--max-new-tokens", "0"])
    assert exit.value.code == 2 and "vittle eval: error: max_new_tokens=0 must be at least 1" in capsys.readouterr().err


def test_query_posterior_says_collapsed_only_below_the_threshold():
    from types import SimpleNamespace

    import numpy as np

    from vittle.analysis.evaluate.diagnostics import COLLAPSED_KL, QueryPosterior

    def probe(visual_kl, text_kl, bottleneck=True):
        return SimpleNamespace(has_bottleneck=bottleneck, visual_variance=np.ones(len(visual_kl)), visual_kl=np.asarray(visual_kl),
                               text_variance=np.ones(len(text_kl)), text_kl=np.asarray(text_kl))

    collapsed = QueryPosterior.from_probe(probe([1e-5, 3e-5], [2e-5]))
    assert collapsed.collapsed and collapsed.kl_means == pytest.approx({"visual": 2e-5, "text": 2e-5})
    informative = QueryPosterior.from_probe(probe([0.5, 0.5], [1e-5]))  # a mean of 1 per dim on the image: KL 0.5
    assert not informative.collapsed and informative.visual_kl_mean == pytest.approx(0.5)
    text_only = QueryPosterior.from_probe(probe([], [2 * COLLAPSED_KL]))
    assert text_only.visual_kl_mean is None and list(text_only.kl_means) == ["text"] and not text_only.collapsed
    assert QueryPosterior.from_probe(probe([1.0], [1.0], bottleneck=False)) is None


@pytest.mark.parametrize("command", [
    ["easyvqa"],
    ["pope", "--questions", "q.jsonl", "--labels", "labels"],
    ["mc", "--questions", "q.jsonl"],
    ["mme", "--questions", "q.jsonl"],
    ["llava-bench", "--questions", "q.jsonl", "--context", "c.jsonl", "--reference", "r.jsonl", "--rules", "rule.json",
     "--judge-url", "http://127.0.0.1:9/v1", "--judge-model", "judge"],
])
@pytest.mark.parametrize("where", ["file", "under a file"])
def test_every_eval_command_refuses_an_output_path_that_is_a_file_before_loading_a_model(tmp_path, capsys, command, where):
    """The check comes first: the model named does not exist, so a later check would fail with exit 1."""
    existing = tmp_path / "eval.json"
    existing.write_text("{}")
    out = existing if where == "file" else existing / "again"
    with pytest.raises(SystemExit) as exit:
        eval_main([*command, "--model", str(tmp_path / "no-such-model"), "--out", str(out)])
    error = capsys.readouterr().err
    assert exit.value.code == 2 and f"out: {out} " in error and "name a folder" in error
    assert existing.read_text() == "{}"


def test_eval_resumes_after_kill_9_to_the_result_of_an_uninterrupted_run(tmp_path):
    """`vittle eval easyvqa` killed part-way (SIGKILL: no clean-up at all) and run again ends with
    the same results as a run that was never stopped, and answers nothing twice."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from vittle.analysis.evaluate.llava_files import read_appended

    model = Path(__file__).resolve().parents[2] / "assets" / "models" / "tiny-vittle-f"
    arguments = ["easyvqa", "--model", f"vittle={model}", "--specs", "contrast:2", "--limit-images", "25", "--batch-size", "1",
                 "--device", "cpu"]
    command = [sys.executable, "-c", "import sys; from vittle.analysis.evaluate.cli import main; sys.exit(main(sys.argv[1:]))"]
    resumed = tmp_path / "resumed"
    first = resumed / "vittle" / "clean" / "answers.jsonl"
    process = subprocess.Popen([*command, *arguments, "--out", str(resumed)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and len(read_appended(first)) < 20:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    written = len(read_appended(first))
    assert written >= 20 and not (resumed / "eval.json").exists()
    assert eval_main([*arguments, "--out", str(resumed)]) == 0
    rows = read_appended(first)
    assert len(rows) == len({row["question_id"] for row in rows}) == len(load_samples("easyvqa", limit_images=25))  # nothing twice
    straight = tmp_path / "straight"
    assert eval_main([*arguments, "--out", str(straight)]) == 0

    def results(folder):
        report = json.loads((folder / "eval.json").read_text())
        return {spec: {k: v for k, v in r.items() if k != "seconds"} for spec, r in report["models"]["vittle"]["results"].items()}

    assert results(resumed) == results(straight)
    assert (resumed / "eval.md").read_text() == (straight / "eval.md").read_text()
    (resumed / "vittle" / "clean" / "answers.jsonl").write_text(
        "\n".join(json.dumps({**row, "metadata": {**row["metadata"], "seed": 7}}) for row in rows) + "\n")
    assert eval_main([*arguments, "--out", str(resumed)]) == 1  # answers of another seed's queries are not taken as results
