import pytest

from vittle.cli import TrainArgs, build_parser, main
from vittle.options import values


def test_quickstart_trains_and_answers(tmp_path, capsys):
    assert main(["quickstart", "--out", str(tmp_path), "--steps", "4"]) == 0
    out = capsys.readouterr().out
    assert "tiny Vittle model trained for 4 steps: loss" in out
    assert "Q: What colour is the shape?" in out and "\nA: " in out
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert (tmp_path / "data" / "train.json").is_file()


def test_train_command_reports_bad_recipes_cleanly(tmp_path, capsys):
    assert main(["train", "--recipe", "tiny-shapes", "bottleneck.alpha_max=3"]) == 2
    assert "vittle train: error: bottleneck.alpha_max=3.0 is out of range" in capsys.readouterr().err
    (tmp_path / "r.yaml").write_text("model: [1, 2]\n")
    assert main(["train", "--recipe", str(tmp_path / "r.yaml")]) == 2
    assert "model: expected a mapping, got list" in capsys.readouterr().err
    assert main(["train", "--recipe", "tiny-shapes", "bottleneck.kl_weight=.nan"]) == 2
    assert "vittle train: error: bottleneck.kl_weight=nan must be a finite number" in capsys.readouterr().err


def test_a_diverging_run_is_an_error_not_a_saved_model(shapes_data, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["train", "--recipe", "tiny-shapes", f"data.path={shapes_data}", f"train.output_dir={out}", "train.lr=1e30",
                 "train.max_steps=20", "train.warmup_ratio=0"]) == 2
    err = capsys.readouterr().err
    assert "vittle train: error: training stopped at step" in err and "is not finite" in err and "Traceback" not in err
    assert not (out / "model.safetensors").exists()


def test_options_are_generated_from_the_dataclasses(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["answer", "--help"])
    text = capsys.readouterr().out
    assert "--max-new-tokens" in text and "Longest answer in tokens. (default: 64)" in text
    args = build_parser().parse_args(["answer", "--model", "m", "--question", "q", "--no-stream"])
    assert vars(args)["stream"] is False and "max_new_tokens" not in vars(args)  # the dataclass fills in the default
    args = build_parser().parse_args(["train", "--recipe", "tiny-shapes", "train.max_steps=1", "model.seed=2"])
    assert values(TrainArgs, args) == {"recipe": "tiny-shapes", "overrides": ("train.max_steps=1", "model.seed=2")}
