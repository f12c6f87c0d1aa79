"""The robustness lab end to end on a few steps: convert, train, evaluate a slice, report."""

from __future__ import annotations

import json

import pytest

from analysis.lab import (
    MAIN_RUNS,
    VARIANT_RUNS,
    Lab,
    LabConfig,
    main,
    markdown,
    model_card,
)


def test_planned_order_is_seed_major():
    config = LabConfig(seeds=(0, 1), variant_seeds=(0,), sweep_seeds=(), groups=("main", "variant", "sweep"))
    planned = [(run.name, seed) for run, seed in config.planned()]
    assert planned == [("baseline", 0), ("vittle-f", 0), ("vittle-l", 0), ("baseline", 1), ("vittle-f", 1), ("vittle-l", 1),
                       ("vittle-f-rms", 0), ("vittle-l-rms", 0)]
    assert LabConfig.quick().planned() and all(seed == 0 for _, seed in LabConfig.quick().planned())


@pytest.mark.slow
def test_a_tiny_lab_trains_evaluates_and_reports(tmp_path):
    config = LabConfig(out=tmp_path / "lab", seeds=(0,), variant_seeds=(0,), groups=("main", "variant"),
                       runs=(MAIN_RUNS[0], MAIN_RUNS[1], VARIANT_RUNS[0]), specs="contrast:1,contrast:5,char_typo:3",
                       clean_images=4, perturb_images=2, diagnostic_queries=8, train_images=6,
                       overrides=("train.max_steps=3", "train.batch_size=4", "train.logging_steps=1"),
                       assets=tmp_path / "assets", png=False)
    summary = Lab(config).run()
    assert set(summary["models"]) == {"baseline", "vittle-f", "vittle-f-rms"}
    base, vittle = summary["models"]["baseline"], summary["models"]["vittle-f"]
    assert set(vittle["specs"]) == {"clean", "contrast:1", "contrast:5", "char_typo:3"}
    assert 0.0 <= vittle["clean"][0] <= 100.0 and vittle["clean"][1] == 0.0  # one seed: std 0
    assert "accuracy_bottleneck_off" in vittle["diagnostics"] and "accuracy_bottleneck_off" not in base["diagnostics"]
    assert "visual_kl" in vittle["diagnostics"] and "visual_kl" not in base["diagnostics"]
    assert base["diagnostics"]["visual_hidden_rms"][0] > 0
    metrics = json.loads((tmp_path / "lab" / "runs" / "vittle-f-s0" / "metrics.json").read_text())
    assert metrics["recipe_config"]["bottleneck"]["prior"] == "fixed" and metrics["recipe_config"]["train"]["max_steps"] == 3
    rms = json.loads((tmp_path / "lab" / "runs" / "vittle-f-rms-s0" / "metrics.json").read_text())
    assert rms["recipe_config"]["bottleneck"]["scale"] == "rms"
    text = (tmp_path / "lab" / "lab.md").read_text()
    assert text == markdown(summary) and "| vittle-f-rms |" in text and "| contrast:5 |" in text
    figures = sorted(p.name for p in (tmp_path / "lab" / "figures").iterdir())
    assert "severity-main.html" in figures and "severity-main-grounded.html" in figures and "text-main.html" in figures
    assets = sorted(p.name for p in (tmp_path / "assets").iterdir())
    assert assets == ["tiny-baseline", "tiny-vittle-f"]
    card = (tmp_path / "assets" / "tiny-vittle-f" / "README.md").read_text()
    assert "KL" in card and "clean accuracy" in card and "EfficientNet-Lite0" in card
    from vittle.inference import Assistant

    loaded = Assistant.load(tmp_path / "assets" / "tiny-vittle-f", device="cpu")
    assert loaded.has_bottleneck and loaded.system == ""
    # a second call trains nothing: every run is read back
    before = metrics["train_seconds"]
    again = Lab(config).run()
    assert json.loads((tmp_path / "lab" / "runs" / "vittle-f-s0" / "metrics.json").read_text())["train_seconds"] == before
    assert again["models"]["vittle-f"]["clean"] == vittle["clean"]


def test_model_card_reports_the_numbers():
    metrics = {"name": "vittle-f", "description": "Vittle (F)", "recipe": "tiny-easyvqa-vittle-f", "overrides": [], "seed": 0,
               "commit": "abc", "device": "cpu", "train_seconds": 360.0,
               "recipe_config": {"train": {"max_steps": 2000, "batch_size": 32}, "model": {"num_layers": 4, "hidden_size": 128}},
               "clean": {"n": 10, "accuracy": 90.0, "by_kind": {"color": 80.0}, "yes_no": {"accuracy": 85.0, "precision": 1.0,
                                                                                           "recall": 2.0, "f1": 3.0, "yes_ratio": 4.0}},
               "final_log": {"ce": 0.2, "kl_v": 1e-4, "kl_t": 2e-4},
               "diagnostics": {"threshold": 0.01, "visual": {"kl": 1e-4, "active_share": 0.0, "hidden_rms": 4.5},
                               "accuracy_bottleneck_off": 89.5}}
    card = model_card(metrics)
    assert "90.00%" in card and "6.0 min" in card and "0.0% active dims" in card and "89.50%" in card


def test_bad_arguments_are_clear_errors(capsys):
    assert main(["--groups", "main,extra", "--out", "/tmp/never"]) == 2
    assert "--groups: unknown ['extra']" in capsys.readouterr().err
    assert main(["--seeds", "a,b"]) == 2
