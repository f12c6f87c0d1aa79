"""The robustness lab: the plan, the paired statistics, the typed summary, and a short lab end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vittle.analysis.evaluate import load_samples
from vittle.analysis.lab import LabConfig, LabSummary, RunResult, paired_bootstrap, spec_group
from vittle.analysis.lab.card import CardData, model_card
from vittle.analysis.lab.cli import main
from vittle.analysis.lab.stats import difference_matrix


def test_plan_is_seed_major_with_a_base_first_and_the_baseline_for_every_comparison():
    config = LabConfig(seeds=(0, 1), sweep_seeds=(1, 2))
    planned = [("base" if arm is None else arm.name, seed) for arm, seed in config.planned()]
    main = ["baseline", "vittle-f", "vittle-l", "noise"]
    extra = ["vittle-f-kl0.1x", "vittle-f-kl10x", "vittle-f-alpha1", "vittle-f-unscaled", "augmented"]
    assert planned == ([("base", 0)] + [(a, 0) for a in main] + [("base", 1)] + [(a, 1) for a in main + extra]
                       + [("base", 2)] + [(a, 2) for a in ["baseline", *extra]])
    only = LabConfig(seeds=(0,), groups=("main",), only=("noise",)).planned()
    assert [(None if a is None else a.name, s) for a, s in only] == [(None, 0), ("baseline", 0), ("noise", 0)]
    quick = LabConfig.quick()
    assert quick.overrides_for("base") == ["train.max_steps=300", "train.logging_steps=20"]
    assert quick.overrides_for("arm") == ["train.max_steps=60", "train.logging_steps=20"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"groups": ("main", "extra")}, r"groups: unknown \['extra'\]; choose from main, sweep, control"),
    ({"only": ("vittle-x",)}, r"unknown arm names \['vittle-x'\]"),
    ({"overrides": ("arms:train.lr=1",)}, "override 'arms:train.lr=1': use key=value, base:key=value or arm:key=value"),
    ({"slice_images": 0}, "slice_images=0 must be at least 1"),
])
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LabConfig(**kwargs)


def test_shift_groups_separate_label_keeping_from_colour_altering():
    assert spec_group("gaussian_noise:3") == "visual, label-keeping"
    assert spec_group("frost:5") == "visual, colour-altering" and spec_group("brightness:1") == "visual, colour-altering"
    assert spec_group("word_delete:3") == "text, label-keeping" and spec_group("greek") == "text, translation"
    assert spec_group("clean") is None and spec_group("frost:3+greek") is None


def test_paired_bootstrap_recovers_a_known_difference_and_its_spread():
    rng = np.random.default_rng(0)
    seeds, questions = 5, 800
    arm = [[rng.random(questions) < 0.80] for _ in range(seeds)]
    base = [[rng.random(questions) < 0.78] for _ in range(seeds)]
    interval = paired_bootstrap(difference_matrix(arm, base))
    assert interval.low < interval.mean < interval.high
    assert interval.low < 2.0 < interval.high + 1.0 and interval.half_width < 3.0
    assert len(interval.per_seed) == seeds
    # identical arms: exactly zero, and an interval of width zero
    same = paired_bootstrap(difference_matrix(base, base))
    assert same.mean == 0.0 and same.low == 0.0 and same.high == 0.0 and not same.excludes_zero()
    # a constant shift of one question in every seed: mean = 100 / questions, the interval holds it
    shifted = [[b[0].copy()] for b in base]
    for s in shifted:
        s[0][np.flatnonzero(~s[0])[0]] = True
    one = paired_bootstrap(difference_matrix(shifted, base))
    assert one.mean == pytest.approx(100 / questions) and one.low >= 0.0
    with pytest.raises(ValueError, match="same, non-empty spec list"):
        difference_matrix([[base[0][0]]], [[]])
    with pytest.raises(ValueError, match="NaN or inf"):
        paired_bootstrap(np.array([[np.nan]]))


def test_model_card_is_filled_from_the_numbers():
    card = CardData(
        name="vittle-f", asset="tiny-vittle-f", label="Vittle (F)", description="Vittle with the fixed N(0, I) prior", seed=0,
        recipe="tiny-easyvqa-vittle-f", overrides=[], commit="abc1234", train_device="CPU (2 threads)", train_minutes=3.25,
        base_train_minutes=12.5, steps=500, batch=32, lr=1e-4, base_steps=2000, base_batch=32, base_lr=1e-3, depth=6, width=128,
        layer=3, test_questions=9673,
        clean={"all": 90.5, "grounded": 98.25, "color": 97.5, "shape": 99.0, "yes/no": 83.0, "yes_no_precision": 80.0,
               "yes_no_recall": 70.0, "yes_no_f1": 74.7, "yes_no_yes_ratio": 44.0},
        diagnostics={"hidden_rms_visual": 2.5, "hidden_rms_text": 3.0, "kl_visual": 0.12, "kl_text": 0.3, "visual_state_change": 0.21,
                     "text_state_change": 0.3, "answer_tv": 0.04, "answer_flips": 0.02, "grounded_bottleneck_off": 97.0},
        final_log={"ce": 0.1, "kl_v": 0.1, "kl_t": 0.2}, lab_seeds=5, label_keeping=[0.8, -0.1, 1.7])
    text = model_card(card)
    assert "# tiny-vittle-f: Vittle (F)" in text and "98.25% (colour 97.50%, shape 99.00%)" in text
    assert "after layer 3 of 6 (0-based), so 2 layers read its output" in text
    assert "+0.80 points [-0.10, +1.70]" in text and "2.0% of first tokens flip" in text
    assert "6 layers x 128" in text and "2000 steps x batch 32 at learning rate 0.001" in text
    assert CardData.from_json(json.loads(json.dumps(card.to_json()))) == card


def _tiny_lab(tmp_path, **kwargs):
    values = dict(
        out=tmp_path / "lab", seeds=(0,), sweep_seeds=(), groups=("main",), slice_images=3, diagnostic_queries=4,
        specs=("gaussian_noise:5", "frost:5", "char_typo:3"),  # a few shifts keep the test short
        train_images=6, only=("vittle-f", "noise"), png=False, assets=tmp_path / "assets", card_images=4,
        overrides=("model.hidden_size=32", "model.num_layers=3", "train.batch_size=4", "train.logging_steps=1",
                   "base:train.max_steps=4", "arm:train.max_steps=3"))
    values.update(kwargs)
    return LabConfig(**values)


@pytest.mark.slow
def test_a_short_lab_trains_compares_reports_and_exports(tmp_path):
    from vittle.analysis.lab.runner import Lab

    lab = Lab(_tiny_lab(tmp_path, workers=2))  # two processes share the plan, as `make lab` runs it
    summary = lab.run()
    features = list((tmp_path / "lab" / "features").rglob("*.npy"))
    assert len(features) >= 3  # the tower's features, kept on disk for the workers and a resumed lab
    assert isinstance(summary, LabSummary)
    assert list(summary.arms) == ["baseline", "vittle-f", "noise"]
    assert summary.slice["questions"] == len(lab.slice) and summary.slice["grounded"] == len(lab.grounded) > 0
    base = summary.bases[0]
    assert base.seed == 0 and base.depth == 3 and base.layer == 0 and base.hidden_rms["visual"] > 0
    vittle, noise = summary.arms["vittle-f"], summary.arms["noise"]
    assert set(vittle.shifted) == {"clean", "gaussian_noise:5", "frost:5", "char_typo:3"}
    assert set(vittle.versus_baseline) >= {"clean", "visual, label-keeping", "visual, colour-altering", "text, label-keeping",
                                           "label-keeping"}
    interval = vittle.versus_baseline["label-keeping"]
    assert interval.low <= interval.mean <= interval.high and len(interval.per_seed) == 1
    # what the posterior adds to its noise: Vittle minus the noise control of the same base
    against_noise = vittle.versus_noise["label-keeping"]
    assert against_noise.low <= against_noise.mean <= against_noise.high and noise.versus_noise == {}
    assert summary.arms["baseline"].versus_noise == {}
    assert vittle.diagnostics["kl_visual"].n == 1 and "answer_tv" in vittle.diagnostics and "image_attention" in vittle.diagnostics
    assert noise.diagnostics["kl_visual"].mean == 0.0 and noise.diagnostics["visual_state_change"].mean == pytest.approx(0.5)
    assert "answer_tv" not in summary.arms["baseline"].diagnostics
    # each arm started from the seed's base, with the same steps
    result = RunResult.load(tmp_path / "lab" / "runs" / "vittle-f-s0" / "result.json")
    assert result.recipe_config["model"]["init"] == str(tmp_path / "lab" / "runs" / "base-s0" / "model")
    assert result.recipe_config["train"]["max_steps"] == 3 and len(result.hits["clean"]) == len(lab.grounded)
    assert len(result.clean_predictions) == len(lab.slice)
    # typed JSON round trip, markdown from it
    again = LabSummary.load(tmp_path / "lab" / "lab.json")
    assert again == summary
    text = (tmp_path / "lab" / "lab.md").read_text()
    assert "| Vittle (F) | 1 |" in text and "| gaussian_noise:5 |" in text and "Paired differences" in text
    section = text.split("## Paired differences from the noise-only control")[1].split("\n## ")[0]
    assert "| Vittle (F) | 1 |" in section and "| Noise only |" not in section
    # exported models: cards from measured numbers, loadable
    assert sorted(p.name for p in (tmp_path / "assets").iterdir()) == ["tiny-baseline", "tiny-vittle-f"]
    card = CardData.load(tmp_path / "assets" / "tiny-vittle-f" / "metrics.json")
    assert card.test_questions == len(load_samples("easyvqa", 4)) and card.layer == 0 and card.depth == 3
    from vittle.inference import Assistant

    assert Assistant.load(tmp_path / "assets" / "tiny-vittle-f", device="cpu").has_bottleneck
    # a second call trains nothing: every run is read back
    stamp = (tmp_path / "lab" / "runs" / "vittle-f-s0" / "result.json").stat().st_mtime_ns
    lab2 = Lab(_tiny_lab(tmp_path, assets=None))
    assert lab2.run().arms["vittle-f"].clean == vittle.clean
    assert (tmp_path / "lab" / "runs" / "vittle-f-s0" / "result.json").stat().st_mtime_ns == stamp


def test_claims_keep_two_processes_off_the_same_run(tmp_path):
    import os
    import subprocess
    import sys

    from vittle.analysis.lab.workers import alive_claim, claim

    folder = tmp_path / "run"
    held = claim(folder)
    assert held is not None and alive_claim(folder) and (folder / ".claim").read_text() == str(os.getpid())
    assert claim(folder) is None  # held (by this process, through another handle)
    held.release()
    assert not alive_claim(folder) and not (folder / ".claim").exists()
    again = claim(folder)
    assert again is not None
    again.release()
    # a worker that died mid-run leaves its claim file; its lock died with it
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (folder / ".claim").write_text(dead)
    assert not alive_claim(folder)
    with claim(folder) as taken:  # its run is taken over
        assert taken.held and (folder / ".claim").read_text() == str(os.getpid())
    assert not taken.held and not alive_claim(folder)
    # a live claim in another process, which is killed: the run is free at once
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from vittle.analysis.lab.workers import claim; c = claim(Path(sys.argv[1])); print(c is not None, flush=True); "
                               "time.sleep(60)", str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        assert alive_claim(folder) and claim(folder) is None
    finally:
        holder.kill()
        holder.wait()
    assert not alive_claim(folder) and claim(folder) is not None


def _claim_rounds(folder, rounds, barrier, wins):
    from vittle.analysis.lab.workers import claim

    for k in range(rounds):
        barrier.wait()
        held = claim(folder)
        if held is not None:
            with wins.get_lock():
                wins[k] += 1
        barrier.wait()  # both have tried
        if held is not None:
            held.release()
        barrier.wait()


def test_two_processes_claiming_together_never_both_win(tmp_path):
    """Released together on one folder (the lab's two workers at its start), exactly one
    process takes the run in every round. A claim file created empty and filled later let
    both win in about two rounds of three."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    rounds = 200
    barrier, wins = context.Barrier(2), context.Array("i", rounds)
    workers = [context.Process(target=_claim_rounds, args=(tmp_path / "run", rounds, barrier, wins)) for _ in range(2)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
    assert [p.exitcode for p in workers] == [0, 0]
    assert list(wins) == [1] * rounds


def _fake_runs(lab, log, barrier):
    import os
    import time

    from vittle.files import write_text_atomic

    def run_one(arm, seed):
        folder = lab.folder(arm, seed)
        with open(log, "a") as handle:
            handle.write(f"start {folder.name} {os.getpid()}\n")
        time.sleep(0.05)
        write_text_atomic(folder / "train_log.json", "{}")
        time.sleep(0.05)
        write_text_atomic(folder / "result.json", "{}")
        with open(log, "a") as handle:
            handle.write(f"end {folder.name} {os.getpid()}\n")

    lab.run_one = run_one
    barrier.wait()  # released together, as spawned workers reach the plan at about the same time
    lab.work(lab.config.planned())


def test_two_workers_sharing_a_plan_run_each_run_once_and_arms_after_their_base(tmp_path):
    """Two lab workers on one plan (a base and the arms that start from it), many times over:
    every run runs once, and no arm starts before its base has trained."""
    import multiprocessing

    from vittle.analysis.lab.runner import Lab

    context = multiprocessing.get_context("fork")
    for trial in range(6):
        lab = Lab(_tiny_lab(tmp_path / str(trial), seeds=(0, 1), only=("vittle-f", "noise")))
        lab.poll_seconds = 0.02  # how long a worker waits for a base before it looks again
        log = tmp_path / f"log-{trial}.txt"
        barrier = context.Barrier(2)
        workers = [context.Process(target=_fake_runs, args=(lab, log, barrier)) for _ in range(2)]
        for process in workers:
            process.start()
        for process in workers:
            process.join(120)
        assert [p.exitcode for p in workers] == [0, 0]
        events = [line.split() for line in log.read_text().splitlines()]
        starts = [name for kind, name, _ in events if kind == "start"]
        planned = sorted(lab.folder(arm, seed).name for arm, seed in lab.config.planned())
        assert sorted(starts) == planned  # each once
        for kind, name, _ in events:
            if kind == "start" and not name.startswith("base"):
                base_end = ["end", f"base-{name.rsplit('-', 1)[1]}"]
                assert base_end in [e[:2] for e in events[: events.index([kind, name, _])]]


def test_bad_arguments_are_clear_errors(capsys):
    for argv, message in ((["--groups", "main,extra", "--out", "/tmp/never"], "vittle lab: error: groups: unknown ['extra']"),
                          (["--seeds", "a,b"], "vittle lab: error: argument --seeds: seeds: expected int, got 'a'")):
        with pytest.raises(SystemExit) as exit:
            main(argv)
        assert exit.value.code == 2 and message in capsys.readouterr().err


def test_quick_is_a_preset_that_given_settings_override():
    from vittle.analysis.lab.cli import LabCommand, make_config
    from vittle.options import parse

    config, report_only = parse(LabCommand, ["--quick", "--runs", "noise", "--slice-images", "8", "arm:train.max_steps=5"],
                                prog="vittle lab", make=make_config, aliases={"--runs": "only"})
    assert config.seeds == (0,) and config.slice_images == 8 and config.only == ("noise",) and not report_only
    assert config.overrides == (*LabConfig.quick().overrides, "arm:train.max_steps=5")
    config, report_only = parse(LabCommand, ["--report-only", "--no-png", "--seeds", "1,2"], prog="vittle lab", make=make_config)
    assert report_only and not config.png and config.seeds == (1, 2) and config.slice_images == LabConfig().slice_images


@pytest.mark.slow
def test_the_archive_keeps_every_result_and_a_lost_base_is_trained_again_only_when_an_arm_needs_it(tmp_path):
    import shutil

    from vittle.analysis.lab.runner import Lab

    archive = tmp_path / "archive"
    config = _tiny_lab(tmp_path, only=("noise",), assets=None, archive=archive)
    first = Lab(config).run()
    assert sorted(p.name for p in archive.iterdir()) == ["base-s0.json", "baseline-s0.json", "noise-s0.json"]
    kept = RunResult.load(archive / "noise-s0.json")
    assert kept == RunResult.load(tmp_path / "lab" / "runs" / "noise-s0" / "result.json")
    assert len((archive / "noise-s0.json").read_text().splitlines()) == 1  # compact: one line per run
    # the lab's folder is lost: the report comes back from the archive alone, interval for interval
    shutil.rmtree(tmp_path / "lab")
    again = Lab(config).run(report_only=True)
    assert again.arms["noise"].versus_baseline == first.arms["noise"].versus_baseline
    assert again.arms["noise"].clean == first.arms["noise"].clean and again.bases == first.bases
    # a new arm needs the base's model, which was not archived: the base trains again, the archived arms do not
    stamp = (archive / "noise-s0.json").stat().st_mtime_ns
    lab = Lab(_tiny_lab(tmp_path, only=("noise", "vittle-f"), assets=None, archive=archive))
    assert not lab.done(None, 0, lab.config.planned()) and lab.done(None, 0)
    summary = lab.run()
    assert (tmp_path / "lab" / "runs" / "base-s0" / "model" / "config.json").exists()
    assert not (tmp_path / "lab" / "runs" / "noise-s0").exists() and (archive / "noise-s0.json").stat().st_mtime_ns == stamp
    assert (archive / "vittle-f-s0.json").exists() and set(summary.arms) == {"baseline", "vittle-f", "noise"}
    assert summary.arms["noise"].clean == first.arms["noise"].clean  # read back, not retrained


def test_seed_interval_is_the_t_interval_over_seeds():
    from vittle.analysis.lab.stats import seed_interval

    interval = seed_interval([1.0, 2.0, 3.0])
    assert interval.mean == pytest.approx(2.0) and interval.per_seed == [1.0, 2.0, 3.0]
    assert interval.half_width == pytest.approx(4.302653 * 1.0 / np.sqrt(3), rel=1e-5)  # t(0.975, 2) x sd / sqrt(n)
    with pytest.raises(ValueError, match="at least two"):
        seed_interval([1.0])
    with pytest.raises(ValueError, match="NaN or inf"):
        seed_interval([1.0, float("nan")])


def test_the_lab_archive_folder_is_under_version_control():
    """`make lab` archives every run in docs/robustness-lab/runs so that its records survive
    the loss of runs/: a .gitignore rule that catches that folder (a bare `runs/` does)
    would silently keep them out of git."""
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    for path in ("docs/robustness-lab/runs/base-s9.json", "docs/robustness-lab/runs/vittle-f-s9.json"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=root).returncode == 0
        assert not ignored, f"{path} is ignored by .gitignore"
    assert subprocess.run(["git", "check-ignore", "-q", "runs/lab/lab.json"], cwd=root).returncode == 0  # the work folder stays out
