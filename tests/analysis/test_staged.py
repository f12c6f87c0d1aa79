"""The staged study (stage 0 text, stage 1 captions, the pressure, stage-2 arms): its plan,
its gates, and a short study end to end."""

from __future__ import annotations

import json

import pytest

from vittle.analysis.lab.results import RunResult
from vittle.analysis.lab.staged_plan import MATCHED_KL, StagedConfig
from vittle.analysis.lab.staged_report import GateRow, gate_rows


def test_the_plan_runs_the_bases_first_then_the_main_arms_unit_after_unit_then_the_extras_then_the_methods():
    config = StagedConfig(bases=(0, 1), seeds=(0, 1), extra_seeds=(1,), new_bases=(2,))
    names = [job.name for job in config.jobs()]
    main = ["baseline", "vittle-f", "vittle-l", "noise"]
    methods = ["augmented", "weight-decay", "l2t", "ross", "vittle-f-augmented"]
    assert names[:6] == ["text-b0", "align-b0", "text-b1", "align-b1", "text-b2", "align-b2"]
    assert names[6:] == ([f"{a}-b0-s0" for a in main] + [f"{a}-b1-s0" for a in main]
                         + [f"{a}-b0-s1" for a in main] + [f"{a}-b1-s1" for a in main]
                         + ["vittle-f-kl0.1-b0-s1", "vittle-f-kl0.1-b1-s1"]
                         + [f"{a}-b{b}-s{s}" for s in (0, 1) for b in (0, 1) for a in methods]
                         + [f"{a}-b2-s1" for a in ["baseline", "vittle-f", *methods]])
    assert {job.unit for job in config.jobs() if job.kind == "arm"} == {0, 1, 10, 11, 21}
    assert MATCHED_KL == pytest.approx(0.003125)
    without = StagedConfig(bases=(0,), seeds=(0,), extra_seeds=(), new_bases=(), methods=False)
    assert [job.name for job in without.jobs()] == ["text-b0", "align-b0", *[f"{a}-b0-s0" for a in main]]
    arms = {job.arm.name: job.arm for job in config.jobs() if job.arm is not None}
    assert arms["weight-decay"].overrides == ("train.weight_decay=0.1",) and arms["l2t"].overrides == ("data.instruction_loss=true",)
    assert arms["ross"].overrides == ("reconstruction.weight=1",) and arms["vittle-f-augmented"].data == "augmented"
    assert arms["vittle-f-augmented"].recipe == "tiny-stage2-vittle-f" and arms["augmented"].recipe == "tiny-stage2-baseline"


def test_the_comparison_beyond_the_clean_gap_and_the_precision_target():
    from vittle.analysis.lab.staged_report import Comparison, beyond_clean, meets_target
    from vittle.analysis.lab.stats import seed_interval

    visual = Comparison("ross", "baseline", [0, 1, 10], "visual, label-keeping", [-3.0, -1.0, -2.0],
                        seed_interval([-3.0, -1.0, -2.0]), None)
    clean = Comparison("ross", "baseline", [0, 10], "clean", [-1.0, 0.5], None, None)
    beyond = beyond_clean(visual, clean)
    assert beyond.units == [0, 10] and beyond.per_unit == [-2.0, -2.5] and beyond.group == "visual beyond clean"
    assert meets_target(visual) is (visual.t_interval.half_width <= 2.5) and meets_target(clean) is None
    assert visual.t_interval.half_width == pytest.approx(4.303 * 1.0 / 3 ** 0.5, rel=1e-3)  # t(2) x sd / sqrt(n)


def test_a_lost_base_is_trained_again_only_while_a_run_of_its_base_still_needs_it(tmp_path):
    """Run folders gone, archive kept: the stage-0/1 models of a base are rebuilt when an arm of
    that base is still to run (they were once taken as done, and the study stopped, "nothing
    left can run"), and not otherwise."""
    from vittle.analysis.lab.staged import StagedLab

    archive = tmp_path / "archive"
    archive.mkdir()
    config = StagedConfig(out=tmp_path / "staged", archive=archive, bases=(0, 1), seeds=(0, 1), extra_seeds=(), new_bases=(),
                          methods=False)
    jobs = config.jobs()
    done = ["text-b0", "align-b0", "text-b1", "align-b1"] + [j.name for j in jobs if j.kind == "arm" and j.base == 0]
    done += [j.name for j in jobs if j.kind == "arm" and j.base == 1][:5]  # base 1: three arms of unit s1 still to run
    for name in done:
        (archive / f"{name}.json").write_text("{}")
    lab = StagedLab(config)
    todo = [job.name for job in jobs if not lab.job_done(job, jobs)]
    assert todo == ["text-b1", "align-b1", "vittle-f-b1-s1", "vittle-l-b1-s1", "noise-b1-s1"]
    assert [job.name for job in jobs if lab.ready(job) and job.name in todo] == ["text-b1"]

def _run(name: str, unit: int, clean: str, **diagnostics: float) -> RunResult:
    return RunResult(name=name, seed=unit, group="main", recipe="r", overrides=[], model_dir="m", train_seconds=60.0,
                     train_device="cpu", eval_seconds=1.0, eval_device="cpu", commit="x", final_log={"ce": 0.1},
                     clean_predictions=[], hits={"clean": clean}, diagnostics=dict(diagnostics))


def test_gates_from_clean_data_only():
    posterior = {"kl_visual": 0.02, "kl_text": 0.001, "grounded_bottleneck_off": 90.0}
    arms = {
        "baseline": [_run("baseline", u, "1" * 99 + "0") for u in (0, 1)],
        "vittle-f": [_run("vittle-f", 0, "1" * 98 + "00", grounded_alpha1=70.0, **posterior),
                     _run("vittle-f", 1, "1" * 96 + "0000", grounded_alpha1=60.0, **posterior)],
        "vittle-l": [_run("vittle-l", u, "1" * 100, grounded_alpha1=40.0, **posterior) for u in (0, 1)],
        "noise": [_run("noise", u, "1" * 100, grounded_alpha1=20.0, kl_visual=0.0, kl_text=0.0) for u in (0, 1)],
    }
    rows = gate_rows(arms)
    assert rows["baseline"] == GateRow("baseline", [0, 1], 99.0, 99.0, True, train_minutes=1.0, final_ce=0.1)
    f = rows["vittle-f"]
    assert (f.clean_grounded, f.clean_grounded_min, f.gate_a) == (97.0, 96.0, True)
    assert f.alpha1_minus_noise == pytest.approx(45.0) and f.gate_b is True
    assert rows["vittle-l"].alpha1_minus_noise == pytest.approx(20.0) and rows["vittle-l"].gate_b is False  # under 30 points
    assert rows["noise"].gate_b is None


@pytest.mark.slow
def test_a_short_staged_study_runs_every_stage_archives_and_resumes(tmp_path):
    from vittle.analysis.lab.staged import StagedLab

    out = tmp_path / "staged"
    config = dict(out=out, bases=(0,), seeds=(0,), extra_seeds=(), text_steps=3, align_steps=2, arm_steps=3, slice_images=4,
                  diagnostic_queries=4, pressure_samples=8, train_images=6, specs=("gaussian_noise:3", "char_typo:3"),
                  archive=tmp_path / "archive", png=False, only=("baseline", "vittle-f", "vittle-l", "noise"),
                  overrides=("base:model.hidden_size=32", "base:model.num_layers=3", "train.batch_size=4", "train.logging_steps=1"))
    summary = StagedLab(StagedConfig(**config, gates_only=True)).run()
    assert sorted(p.name for p in (tmp_path / "archive").iterdir()) == [
        "align-b0.json", "baseline-b0-s0.json", "noise-b0-s0.json", "text-b0.json", "vittle-f-b0-s0.json", "vittle-l-b0-s0.json"]
    text, align = summary.stages["text-b0"], summary.stages["align-b0"]
    assert {"rms_layer0", "rms_layer1", "rms_layer2", "ce_heldout"} <= set(text) and text["rms_layer0"] > 0
    assert align["layer"] == 0.0 and align["ce_vqa_alpha1"] > 0 and align["ce_captions_alpha0.5"] > 0
    # stage 1 trained the projector alone, from the stage-0 model
    recipe = json.loads((out / "runs" / "align-b0" / "train_log.json").read_text())["recipe_config"]
    assert recipe["train"]["stage"] == "align" and recipe["model"]["init"] == str(out / "runs" / "text-b0" / "model")
    arm = RunResult.load(out / "runs" / "vittle-f-b0-s0" / "result.json")
    assert arm.recipe_config["model"]["init"] == str(out / "runs" / "align-b0" / "model")
    assert arm.recipe_config["bottleneck"]["kl_weight"] == MATCHED_KL and arm.recipe_config["bottleneck"]["schedule"] == "constant"
    assert set(arm.hits) == {"clean", "gaussian_noise:3", "char_typo:3"} and "grounded_alpha1" in arm.diagnostics
    assert set(summary.gates) == {"baseline", "vittle-f", "vittle-l", "noise"} and summary.gates["vittle-f"].gate_b is not None
    assert summary.comparisons == [] and not summary.shifted  # gates only: no shifted number in the report
    assert "No shifted result" in (out / "staged.md").read_text()
    _export_follows_the_gate(StagedLab(StagedConfig(**config)), tmp_path / "assets", summary)
    # with the run folders gone the archive alone reports, and nothing trains again
    import shutil

    shutil.rmtree(out / "runs")
    again = StagedLab(StagedConfig(**config)).run(report_only=True)
    assert again.gates == summary.gates and {c.group for c in again.comparisons} >= {"label-keeping"}
    assert not (out / "runs").exists()


def _export_follows_the_gate(lab, assets, summary) -> None:
    """The app's models come from the declared unit only if its Vittle (F) passes gate (b)."""
    from vittle.analysis.lab import staged_export
    from vittle.analysis.lab.card import read_card
    from vittle.inference import Assistant

    written, decision = staged_export.export_staged(lab, assets, base=0, seed=0, card_images=2, device="cpu")
    assert written == [] and not assets.exists()  # 3 steps: the posterior mean alone answers no better than the zero state
    assert "fails gate (b)" in decision and "the models stay" in decision
    missing, decision = staged_export.export_staged(lab, assets, base=0, seed=1, card_images=2, device="cpu")
    assert missing == [] and "not finished" in decision
    original = staged_export.GATE_B_MARGIN, staged_export.GATE_B_KL
    staged_export.GATE_B_MARGIN, staged_export.GATE_B_KL = -1000.0, 0.0  # the copying path, on these tiny models
    try:
        written, decision = staged_export.export_staged(lab, assets, base=0, seed=0, card_images=2, device="cpu")
    finally:
        staged_export.GATE_B_MARGIN, staged_export.GATE_B_KL = original
    assert [p.name for p in written] == ["tiny-baseline", "tiny-vittle-f", "tiny-vittle-l"] and decision.startswith("exported unit (b0, s0)")
    assert sorted(p.name for p in assets.iterdir()) == ["tiny-baseline", "tiny-vittle-f", "tiny-vittle-l"]  # no staging folder left
    card = read_card(assets / "tiny-vittle-f")
    assert (card.protocol, card.unit, card.name) == ("staged", "b0-s0", "vittle-f")
    assert card.stages["text"]["steps"] == 3 and card.stages["align"]["steps"] == 2 and card.steps == 3
    assert card.diagnostics["grounded_alpha1"] == summary.gates["vittle-f"].grounded_alpha1
    readme = (assets / "tiny-vittle-f" / "README.md").read_text()
    assert "unit b0-s0" in readme and "`tiny-stage0-text`" in readme and "posterior mean alone" in readme
    assert "library_name: vittle" in readme and "{" not in readme.split("---", 2)[2]  # every placeholder filled
    from PIL import Image

    assistant = Assistant.load(assets / "tiny-vittle-f", device="cpu")
    answers = assistant.answer_batch([Image.new("RGB", (64, 64))], ["What color is the shape?"], max_new_tokens=2)
    assert assistant.has_bottleneck and len(answers) == 1 and isinstance(answers[0], str)


def test_a_short_study_of_the_methods_pairs_them_and_a_retrained_base_must_match_its_record(tmp_path):
    """The methods' arms train from the same stage-1 model and are reported against the baseline
    with their clean difference and the loss beyond it; with the run folders gone, a base trained
    again for an arm still to run reproduces its archived record (else the study stops)."""
    from vittle.analysis.lab.staged import StagedLab
    from vittle.analysis.lab.staged_plan import StageRecord

    out, archive = tmp_path / "staged", tmp_path / "archive"
    config = dict(out=out, bases=(0,), seeds=(0,), extra_seeds=(), new_bases=(), text_steps=3, align_steps=2, arm_steps=3,
                  slice_images=4, diagnostic_queries=4, pressure_samples=8, train_images=6, specs=("gaussian_noise:3", "char_typo:3"),
                  archive=archive, png=False, overrides=("base:model.hidden_size=32", "base:model.num_layers=3", "train.batch_size=4",
                                                         "train.logging_steps=1"))
    first = ("baseline", "l2t", "ross", "weight-decay")
    summary = StagedLab(StagedConfig(**config, only=first)).run()
    ross = RunResult.load(out / "runs" / "ross-b0-s0" / "result.json")
    assert ross.recipe_config["reconstruction"]["weight"] == 1.0 and "reconstruction" in ross.final_log
    assert RunResult.load(out / "runs" / "l2t-b0-s0" / "result.json").recipe_config["data"]["instruction_loss"] is True
    groups = {(c.arm, c.group) for c in summary.comparisons}
    for arm in ("l2t", "ross", "weight-decay"):
        assert {(arm, "clean"), (arm, "visual, label-keeping"), (arm, "visual beyond clean")} <= groups
    import shutil

    shutil.rmtree(out / "runs")  # the models are gone; the archive keeps the records
    StagedLab(StagedConfig(**config, only=(*first, "augmented"))).run()
    retrained = StageRecord.load(out / "runs" / "align-b0" / "result.json")
    assert retrained.reproduces["max_relative_difference"] <= 1e-3
    assert sorted(p.name for p in archive.iterdir()) == sorted(
        f"{name}.json" for name in ["text-b0", "align-b0", *(f"{a}-b0-s0" for a in (*first, "augmented"))])
    record = json.loads((archive / "align-b0.json").read_text())
    assert "reproduces" not in record or not record["reproduces"]  # the archived record is the first training's
