"""`vittle analyze`: the HTML + JSON report on two tiny saved models (one with a bottleneck)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from vittle.analysis.report import SECTIONS
from vittle.analysis.report.cli import main
from vittle.config import BottleneckConfig
from vittle.model import attach_bottleneck, get_bottleneck
from vittle.toy.tiny import build_efficientnet_llava

SPECS = ["clean", "contrast:2", "char_typo:1"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{"baseline": folder, "vittle": folder}; the Vittle model's visual posterior is collapsed
    (its output layer zeroed: mu = 0, log-variance = 0, the prior exactly)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("models")
    folders = {}
    for name in ("baseline", "vittle"):
        model, processor = build_efficientnet_llava(seed=0, hidden_size=64, num_layers=2)
        if name == "vittle":
            attach_bottleneck(model, BottleneckConfig())
            with torch.no_grad():
                get_bottleneck(model).visual.fc2.weight.zero_()
                get_bottleneck(model).visual.fc2.bias.zero_()
        folders[name] = root / name
        model.save_pretrained(folders[name])
        processor.save_pretrained(folders[name])
    return folders


def _argv(models, out, *extra):
    return [*(arg for name, path in models.items() for arg in ("--model", f"{name}={path}")), "--data", "easyvqa", "--limit-images", "2",
            "--specs", "contrast:2,char_typo:1", "--projection", "pca", "--out", str(out), "--device", "cpu",
            "--cache-dir", str(out.parent / "cache"), "--club-steps", "50", "--no-progress", *extra]


@pytest.fixture(scope="module")
def report(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "out"
    assert main(_argv(models, out)) == 0
    return json.loads((out / "report.json").read_text()), (out / "report.html").read_text()


def _finite(value) -> bool:
    return isinstance(value, float | int) and math.isfinite(value)


def test_json_has_every_number(report):
    data, _ = report
    n = data["n_questions"]
    assert n >= 5 and data["specs"] == SPECS and data["map_specs"] == SPECS[1:]
    assert list(data["models"]) == ["baseline", "vittle"]
    assert [data["models"][m]["has_bottleneck"] for m in ("baseline", "vittle")] == [False, True]
    for model in ("baseline", "vittle"):
        assert set(data["accuracy"][model]) == set(SPECS)
        assert all(0.0 <= a <= 100.0 for a in data["accuracy"][model].values())
        for spec in SPECS[1:]:
            shift = data["shift"][model][spec]
            assert 0.0 <= shift["cosine_mean"] <= 2.0 and 0.0 <= shift["jsd"] <= math.log(2) + 1e-9 and shift["n"] == n
            assert len(data["cosine_distances"][model][spec]) == n
            assert np.isclose(np.mean(data["cosine_distances"][model][spec]), shift["cosine_mean"])
            entry = data["emid"]["values"][model][spec]
            assert all(_finite(entry[k]) for k in ("mi_clean", "mi_perturbed", "emid"))
            assert math.isclose(entry["emid"], entry["mi_clean"] - entry["mi_perturbed"], rel_tol=1e-9, abs_tol=1e-9)
            assert len(data["answers"][model][spec]) == n
            assert math.isclose(entry["mi_bound_perturbed"], math.log(len(set(data["answers"][model][spec]))))
            assert math.isclose(entry["mi_bound_clean"], math.log(len(set(data["answers"][model]["clean"]))))
            assert entry["within_bound"] == (entry["mi_clean"] <= entry["mi_bound_clean"] + 1e-6
                                             and entry["mi_perturbed"] <= entry["mi_bound_perturbed"] + 1e-6)
            assert (f"{model} ({spec})" in data["emid"]["unreliable"]) is not entry["within_bound"]
        for role in SPECS:
            assert np.asarray(data["projection"]["coordinates"][model][role]).shape == (n, 2)
        assert all(_finite(v) for k, v in data["summary"][model].items())
    assert data["emid"]["embedders"] == {"query": "efficientnet-lite0+minilm", "answer": "minilm", "club_steps": 50}
    for model, estimator in data["emid"]["estimators"].items():  # one-word answers: the categorical estimator
        distinct = {a.strip().lower() for spec in SPECS for a in data["answers"][model][spec]}
        assert estimator == ("categorical" if len(distinct) <= 50 and 5 * len(distinct) <= n else "club")
    assert set(data["severity"]) == {"contrast", "char_typo"}
    assert data["severity"]["contrast"]["vittle"] == {"2": data["accuracy"]["vittle"]["contrast:2"]}


def test_diagnostics_for_the_vittle_model_only(report):
    data, _ = report
    assert list(data["diagnostics"]) == ["vittle"] and list(data["examples"]) == ["vittle"]
    visual = data["diagnostics"]["vittle"]["visual"]
    assert visual["active_share"] == 0.0 and visual["kl"] < 1e-6
    assert any(note.startswith("vittle: the visual-token posterior has collapsed") for note in data["diagnosis_notes"])
    example = data["examples"]["vittle"]
    assert len(example["visual_variance"]) == example["grid"]["rows"] * example["grid"]["cols"] == 49
    assert example["grid"]["start"] == 0 and example["grid"]["box"] == [0.0, 0.0, 1.0, 1.0]
    assert len(example["text_tokens"]) == len(example["text_variance"]) > 0


def test_html_is_one_offline_page(report):
    data, page = report
    for title in SECTIONS.values():
        assert f">{title}</h2>" in page
    assert page.count("plotly.js v") == 1  # one inline copy of the library
    assert re.search(r"<script[^>]*\bsrc=", page) is None and "<link" not in page  # nothing fetched
    # severity curves, 2 maps, histograms, metric table, variance heatmap
    assert page.count("Plotly.newPlot(") == 6
    assert "the visual-token posterior has collapsed" in page
    assert ("EMID is unreliable for" in page) is bool(data["emid"]["unreliable"])
    assert 'class="vittle-tokens"' in page and "data:image/png;base64," in page


def test_report_json_reads_back_and_renders_the_same_page(report):
    from vittle.analysis.report import Report, render_html

    data, page = report
    typed = Report.from_json(data)
    assert typed.to_json() == data  # every stored number round-trips
    assert typed.accuracy == data["accuracy"] and typed.answers == data["answers"]
    assert typed.evaluation["vittle"].predictions("clean") == data["answers"]["vittle"]["clean"]
    again = render_html(typed)  # from the stored coordinates: no fitted map needed
    strip = re.compile(r'"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"')  # plotly's random div ids
    assert strip.sub("", again) == strip.sub("", page)
    with pytest.raises(ValueError, match="format 1"):
        Report.from_json({**data, "format_version": 1})


def test_no_emid_and_one_model(models, tmp_path):
    out = tmp_path / "out"
    assert main(_argv({"vittle": models["vittle"]}, out, "--no-emid", "--map-specs", "char_typo:1")) == 0
    data = json.loads((out / "report.json").read_text())
    assert data["emid"] is None and data["summary"]["vittle"]["emid_mean"] is None
    assert data["map_specs"] == ["char_typo:1"]
    assert "EMID was skipped" in (out / "report.html").read_text()


@pytest.mark.parametrize(("change", "message", "status"), [
    ({"--models": ["baseline=/nonexistent/model"]}, "checkpoint folder not found: /nonexistent/model", 1),  # the older spelling; a missing file
    ({"--limit-images": ["0"]}, "limit_images=0 must be at least 1 (null: every image)", 2),
    ({"--specs": ["frost:9"]}, "invalid level '9' for 'frost'", 2),
    ({"--map-specs": ["frost:3"]}, "map_specs must name perturbed specs of specs", 2),
    ({"--club-steps": ["0"]}, "club_steps=0 must be at least 1", 2),
])
def test_bad_arguments_exit_with_a_clear_message(models, tmp_path, capsys, change, message, status):
    """2: a setting is wrong (usage); 1: the command started and failed (a missing model)."""
    argv = _argv({} if "--models" in change else models, tmp_path / "out")  # --models: in place of every --model
    for option, values in change.items():
        at = argv.index(option) if option in argv else len(argv)
        end = at + 1
        while end < len(argv) and not argv[end].startswith("--"):
            end += 1
        argv[at:end] = [option, *values]
    try:
        code = main(argv)
    except SystemExit as exit:  # the settings' own checks stop the command before it starts
        code = exit.code
    assert code == status
    err = capsys.readouterr().err
    assert err.startswith("vittle analyze: error: ") and message in err
    assert not (tmp_path / "out").exists()


def test_severity_table_and_json_conversion():
    from pathlib import Path

    from vittle.analysis.report import severity_table, to_jsonable

    accuracy = {"m": {"clean": 90.0, "frost:3": 80.0, "frost:1": 85.0, "zoom_blur:3+greek": 50.0, "greek": 60.0}}
    assert severity_table(accuracy) == {"frost": {"m": {3: 80.0, 1: 85.0}}}
    converted = to_jsonable({"a": np.float32(1.5), 1: [float("nan"), np.arange(2)], "p": Path("x"), "t": (np.inf,)})
    assert converted == {"a": 1.5, "1": [None, [0, 1]], "p": "x", "t": [None]}
    json.dumps(converted, allow_nan=False)
