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
    (tmp_path / "latin1.yaml").write_bytes("model:\n  init: caf\xe9\n".encode("latin-1"))
    assert main(["train", "--recipe", str(tmp_path / "latin1.yaml")]) == 2
    error = capsys.readouterr().err
    assert f"{tmp_path / 'latin1.yaml'} is not UTF-8 text" in error and "Traceback" not in error


@pytest.mark.parametrize("command", ["answer", "probe"])
def test_a_query_image_is_checked_before_any_model_loads(tmp_path, capsys, command):
    """The model named does not exist: had it been loaded first, its error would come instead."""
    missing = tmp_path / "cat.png"
    assert main([command, "--model", str(tmp_path / "no-model"), "--question", "q", "--image", str(missing)]) == 1
    error = capsys.readouterr().err
    assert f"vittle {command}: error: no such image file: {missing}" in error and "sample" not in error
    (tmp_path / "notes.png").write_text("not an image")
    assert main([command, "--model", str(tmp_path / "no-model"), "--question", "q", "--image", str(tmp_path / "notes.png")]) == 1
    assert f"cannot read image {tmp_path / 'notes.png'}" in capsys.readouterr().err


def test_a_diverging_run_is_an_error_not_a_saved_model(shapes_data, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["train", "--recipe", "tiny-shapes", f"data.path={shapes_data}", f"train.output_dir={out}", "train.lr=1e30",
                 "train.max_steps=20", "train.warmup_ratio=0"]) == 1  # it ran, then failed
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


def _vittle(*args, cwd=None, **kwargs):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "vittle.cli", *args], capture_output=True, text=True, timeout=120, cwd=cwd, **kwargs)


def test_version_comes_from_the_package_metadata_and_pyproject():
    import tomllib
    from pathlib import Path

    import vittle

    version = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]["version"]
    assert vittle.__version__ == version
    result = _vittle("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"vittle {version}"


def test_the_deepspeed_launchers_local_rank_is_accepted_anywhere(capsys, monkeypatch):
    """deepspeed appends --local_rank=N (older torch launchers: --local-rank N); it sets LOCAL_RANK."""
    from vittle.global_flags import strip_globals

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    argv, flags = strip_globals(["--local_rank=3", "train", "--recipe", "x", "-q", "--no-progress", "--", "--local_rank=9"])
    assert argv == ["train", "--recipe", "x", "--", "--local_rank=9"] and flags.local_rank == 3 and flags.quiet
    assert flags.progress is False
    assert strip_globals(["train", "--local-rank", "1"])[1].local_rank == 1
    result = _vittle("--local_rank=0", "train", "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: vittle train"), result.stderr
    assert main(["--local_rank=x", "train"]) == 2 and "--local_rank expects a whole number" in capsys.readouterr().err


def test_exit_status_usage_two_failure_one(tmp_path, capsys):
    assert main(["answer", "--model", str(tmp_path / "none"), "--question", "q"]) == 1  # ran, found no model
    assert "vittle answer: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        main(["answer", "--bogus"])
    assert exit.value.code == 2
    result = _vittle("perturb", "query", "--spec", "frost:9", "--text", "hi")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr


def test_a_closed_pipe_ends_quietly():
    """`vittle perturb list | head -1`: the reader goes away after one line."""
    import subprocess
    import sys

    for _ in range(5):
        process = subprocess.Popen([sys.executable, "-m", "vittle.cli", "perturb", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        process.stdout.readline()
        process.stdout.close()  # as head does after its line
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0 and b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()


def test_shell_completion_knows_every_command_and_its_options():
    pytest.importorskip("shtab")
    result = _vittle("completion", "bash")
    assert result.returncode == 0
    for word in ("train", "eval", "demo", "lab", "analyze", "perturb", "cache", "--recipe", "--baseline", "--limit-images"):
        assert word in result.stdout, word


def test_every_long_command_takes_the_global_progress_and_quiet_flags(tmp_path):
    import os

    from vittle.global_flags import apply_globals, strip_globals

    saved = os.environ.pop("TQDM_DISABLE", None)
    try:
        apply_globals(strip_globals(["-q"])[1])
        assert os.environ["TQDM_DISABLE"] == "1"  # tqdm reads it: every bar, ours and transformers'
        apply_globals(strip_globals(["-q", "--progress"])[1])
        assert "TQDM_DISABLE" not in os.environ
    finally:
        os.environ.pop("TQDM_DISABLE", None)
        if saved is not None:
            os.environ["TQDM_DISABLE"] = saved
    for command in (["eval", "--help"], ["analyze", "--help"], ["lab", "--help"], ["train", "--help"], ["demo", "--help"]):
        result = _vittle("-q", "--no-progress", *command)
        assert result.returncode == 0, (command, result.stderr)


@pytest.mark.parametrize("command", [[], ["train"], ["eval"], ["eval", "pope"], ["eval", "mc"], ["eval", "llava-bench"], ["analyze"],
                                     ["lab"], ["perturb"], ["demo"], ["cache"], ["push"], ["answer"]])
def test_help_loads_no_torch(command):
    """Help is read before anything runs: it must come at once (benchmarks/cli_help.py times it)."""
    code = ("import sys\nfrom vittle.cli import main\ntry:\n    main(sys.argv[1:] + ['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'transformers' in sys.modules, file=sys.stderr)")
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, timeout=120)
    assert result.stdout.startswith("usage: vittle"), result.stdout[:200] + result.stderr[-500:]
    assert result.stderr.strip().splitlines()[-1] == "False False", result.stderr[-500:]


def test_analysis_and_app_commands_come_from_declared_entry_points(tmp_path, capsys, monkeypatch):
    """pyproject.toml declares each command's main and settings; a package of its own can add a
    `vittle NAME` command the same way; metadata without them gives a clear error, not argparse's."""
    import os
    import tomllib
    from pathlib import Path

    from vittle import cli

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"][cli.COMMANDS_GROUP]
    assert set(declared) == set(cli.EXTRA_OF_COMMAND) == set(cli.external_commands())
    assert {name: point.value for name, point in cli.external_commands().items()} == declared
    assert set(project["entry-points"][cli.SETTINGS_GROUP]) == set(declared) - {"perturb"}
    # a plugin: a module and a dist-info on the path, found through the same group
    (tmp_path / "hello_plugin.py").write_text("def main(argv):\n    print('hello', *argv)\n    return 0\n")
    info = tmp_path / "hello_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hello-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{cli.COMMANDS_GROUP}]\nhello = hello_plugin:main\ntrain = hello_plugin:main\n")
    result = _vittle("hello", "world", env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0 and result.stdout.strip() == "hello world", result.stderr
    shadow = _vittle("train", "--help", env={**os.environ, "PYTHONPATH": str(tmp_path)})  # a plugin never replaces a built-in
    assert shadow.returncode == 0 and shadow.stdout.startswith("usage: vittle train"), shadow.stderr
    monkeypatch.setattr(cli, "external_commands", dict)  # stale metadata: no command declared
    assert main(["lab", "--help"]) == 2
    err = capsys.readouterr().err
    assert "vittle lab: error:" in err and "does not declare this command" in err and "pip install -e ." in err
