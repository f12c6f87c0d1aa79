"""What the app says about models of the staged study (their cards say protocol "staged"): the
finding line gives the posterior-mean-alone number and never the first lab's interval, and the
Robustness tab points to the staged study instead of showing the first lab's rows as theirs."""

from __future__ import annotations

import json

import pytest

from vittle.analysis.lab.card import CardData
from vittle.analysis.lab.results import LabSummary
from vittle.app.config import LAB_JSON, STAGED_JSON
from vittle.app.model_facts import finding, robustness_view
from vittle.app.presentation import model_finding


def _card(name: str, protocol: str = "staged", **diagnostics: float) -> CardData:
    clean = {"all": 90.0, "grounded": 98.0, "color": 97.0, "shape": 99.0, "yes/no": 80.0, "yes_no_precision": 0.8,
             "yes_no_recall": 0.8, "yes_no_f1": 0.8, "yes_no_yes_ratio": 50.0}
    return CardData(name=name, asset=f"tiny-{name}", label=name, description="d", seed=0, recipe="tiny-stage2-vittle-f",
                    overrides=[], commit="abc", train_device="cpu", train_minutes=10.0, base_train_minutes=40.0, steps=1205,
                    batch=32, lr=3e-4, base_steps=800, base_batch=32, base_lr=1e-3, depth=6, width=128, layer=3,
                    test_questions=10, clean=clean, diagnostics=dict(diagnostics), final_log={"ce": 0.1}, lab_seeds=1,
                    protocol=protocol, unit="b0-s0" if protocol == "staged" else "")


def _folder(tmp_path, name: str, card: CardData, settings: dict | None):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"vittle": settings} if settings else {}))
    card.save(folder / "metrics.json")
    return str(folder)


SETTINGS = {"layer": 3, "prior": "fixed", "alpha_max": 0.5}


def test_a_staged_vittle_says_its_posterior_mean_alone_and_not_the_first_labs_interval(tmp_path):
    summary = LabSummary.load(LAB_JSON)
    card = _card("vittle-f", kl_visual=0.22, kl_text=0.23, grounded_alpha1=97.2)
    line = model_finding("Vittle (F)", SETTINGS, card, summary.arms["vittle-f"])
    assert "its posterior carries information (mean KL per dim image 0.22, text 0.23 nats" in line
    assert "the posterior mean alone (alpha 1) answers 97% of the colour/shape questions (staged study, unit b0-s0" in line
    paths = {"baseline": _folder(tmp_path, "b", _card("baseline"), None),
             "vittle": _folder(tmp_path, "v", card, SETTINGS)}
    text = finding(paths, {"baseline": "Baseline", "vittle": "Vittle (F)"}, summary)
    assert "97%" in text and "minus the baseline under label-keeping shifts" not in text  # the first lab's interval is not theirs
    # a model of the first lab keeps its lab line
    old = _folder(tmp_path, "old", _card("vittle-f", protocol="fine-tune", kl_visual=3e-5, kl_text=4e-5), SETTINGS)
    assert "minus the baseline under label-keeping shifts: -0.63 points" in finding({"vittle": old}, {"vittle": "Vittle (F)"}, summary)


def test_the_robustness_tab_points_staged_models_to_the_staged_study(tmp_path):
    summary = LabSummary.load(LAB_JSON)
    paths = {"baseline": _folder(tmp_path, "b", _card("baseline"), None),
             "vittle": _folder(tmp_path, "v", _card("vittle-f", kl_visual=0.2, kl_text=0.2, grounded_alpha1=90.0), SETTINGS)}
    table, figure = robustness_view(summary, str(LAB_JSON), paths, {"baseline": "Baseline", "vittle": "Vittle (F)"}, "vittle")
    assert figure is None and "| model | seeds |" not in table  # none of the first lab's rows are shown as theirs
    assert table.count("comes from the staged study (docs/robustness-lab/staged.md), unit b0-s0") == 2
    assert "The first robustness lab (docs/robustness-lab.md) fine-tuned models that already answered the task" in table
    assert "-0.63 points [-1.86, +0.24] over 3 seeds" in table


def test_the_robustness_tab_shows_the_staged_study_s_gates_and_differences(tmp_path):
    """With the shipped staged.json, the tab shows every arm's gates and its differences from the
    baseline, the numbers of the study's record (read here as plain JSON)."""
    raw = json.loads(STAGED_JSON.read_text())
    paths = {"baseline": _folder(tmp_path, "b", _card("baseline"), None),
             "vittle": _folder(tmp_path, "v", _card("vittle-f", kl_visual=0.2, kl_text=0.2, grounded_alpha1=90.0), SETTINGS)}
    labels = {"baseline": "Baseline", "vittle": "Vittle (F)"}
    table, _ = robustness_view(LabSummary.load(LAB_JSON), str(LAB_JSON), paths, labels, "vittle", str(STAGED_JSON))
    f = raw["gates"]["vittle-f"]
    assert (f"| Vittle (F) (shown) | {len(f['units'])} | {f['clean_grounded']:.1f}% | {f['kl_visual']:.3g} / {f['kl_text']:.3g} | "
            f"{f['grounded_alpha1']:.1f}% | pass | pass |") in table
    noise = raw["gates"]["noise"]
    assert f"| Noise-only control | {len(noise['units'])} | {noise['clean_grounded']:.1f}% |" in table and "| **fails** |" in table
    assert "| Baseline (shown) |" in table and "Baseline: unit b0-s0, Vittle (F): unit b0-s0" in table
    main = next(c for c in raw["comparisons"] if (c["arm"], c["against"], c["group"]) == ("vittle-f", "baseline", "label-keeping"))
    t = main["t_interval"]
    assert f"| Vittle (F) | {t['mean']:+.2f} [{t['low']:+.2f}, {t['high']:+.2f}] |" in table
    visual = next(c for c in raw["comparisons"] if (c["arm"], c["against"], c["group"]) == ("vittle-f", "baseline", "visual, label-keeping"))
    v = visual["t_interval"]
    assert f"half-width of {(v['high'] - v['low']) / 2:.2f} points against the study's target of 2.5: within it, and excludes 0" in table
    assert "comes from the staged study" not in table and "The first robustness lab" in table
    missing, _ = robustness_view(None, None, paths, labels, "vittle", str(tmp_path / "none.json"))
    assert "comes from the staged study" in missing and "no staged.json" in missing  # an unreadable record: said, not hidden


def test_the_shipped_staged_json_is_the_archive_s_report(tmp_path):
    """assets/staged.json is what `make lab-staged-report` computes from the archived records now."""
    from vittle.analysis.lab.staged import StagedLab
    from vittle.analysis.lab.staged_plan import StagedConfig

    root = STAGED_JSON.parent.parent
    fresh = StagedLab(StagedConfig(out=tmp_path / "staged", archive=root / "docs/robustness-lab/staged/runs")).run(report_only=True)
    shipped = json.loads(STAGED_JSON.read_text())
    assert sorted(shipped["gates"]) == sorted(fresh.gates)
    for arm, row in fresh.gates.items():
        assert shipped["gates"][arm]["clean_grounded"] == pytest.approx(row.clean_grounded, abs=1e-9)
        assert shipped["gates"][arm]["gate_b"] == row.gate_b
    pairs = {(c["arm"], c["against"], c["group"]): c["per_unit"] for c in shipped["comparisons"]}
    assert len(pairs) == len(fresh.comparisons)
    for found in fresh.comparisons:
        assert pairs[(found.arm, found.against, found.group)] == pytest.approx(found.per_unit, abs=1e-9)
