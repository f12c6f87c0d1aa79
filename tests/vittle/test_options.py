"""The command lines generated from config dataclasses (vittle.options), for every command."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import typing
from pathlib import Path

import pytest

from vittle.analysis.evaluate.args import BenchmarkArgs, ClosedArgs, EvalArgs, LlavaBenchArgs, PopeArgs
from vittle.analysis.lab.cli import LabCommand
from vittle.analysis.lab.plan import LabConfig
from vittle.analysis.perturb.cli import ListArgs, QueryConfig
from vittle.analysis.perturb.dataset import BuildConfig
from vittle.analysis.perturb.translate import TranslationSettings
from vittle.analysis.report.config import ReportConfig
from vittle.app.config import DemoConfig, ServiceConfig
from vittle.cli import AnswerArgs, ProbeArgs, PushArgs, QuickstartArgs, TrainArgs, main
from vittle.options import parse
from vittle.settings import field_docs

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {
    ("train",): TrainArgs, ("answer",): AnswerArgs, ("probe",): ProbeArgs, ("push",): PushArgs, ("quickstart",): QuickstartArgs,
    ("analyze",): ReportConfig, ("lab",): LabCommand, ("demo",): DemoConfig,
    ("perturb",): QueryConfig, ("perturb", "build"): BuildConfig, ("perturb", "list"): ListArgs,
    ("eval",): EvalArgs, ("eval", "pope"): PopeArgs, ("eval", "mc"): ClosedArgs, ("eval", "mme"): ClosedArgs,
    ("eval", "llava-bench"): LlavaBenchArgs,
}


def _options(cls: type, prefix: str = "") -> list[tuple[str | None, str]]:
    """(flag, None for a positional argument; docstring) of every command-line field, nested ones included."""
    hints, docs, found = typing.get_type_hints(cls), field_docs(cls), []
    for field in dataclasses.fields(cls):
        if not field.metadata.get("cli", True):
            continue
        hint = next((h for h in typing.get_args(hints[field.name]) if dataclasses.is_dataclass(h)), hints[field.name])
        if dataclasses.is_dataclass(hint):
            found += _options(hint, field.metadata.get("prefix", field.name) + "-")
            continue
        flag = "--" + (prefix + field.name).replace("_", "-")
        if field.metadata.get("positional"):
            flag = None
        elif typing.get_origin(hint) is dict:
            flag = flag.removesuffix("s")
        found.append((flag, docs.get(field.name, "")))
    return found


def _squeeze(text: str) -> str:
    return "".join(text.split())  # argparse wraps help lines, breaking after hyphens too


@pytest.mark.parametrize("words", list(COMMANDS), ids=" ".join)
def test_every_help_lists_each_field_once_with_its_docstring(words, capsys):
    with pytest.raises(SystemExit) as exit:
        main([*words, "--help"])
    assert exit.value.code == 0
    text = capsys.readouterr().out
    listed = text[text.index("\noptions:"):]  # after the usage lines
    for flag, doc in _options(COMMANDS[words]):
        assert doc, f"{COMMANDS[words].__name__}: the field of {flag} has no docstring"
        assert _squeeze(doc) in _squeeze(text), f"{flag}: {doc!r} not in the help"
        if flag is not None:
            assert listed.count(f"\n  {flag} ") + listed.count(f"\n  {flag},") + listed.count(f"\n  {flag}\n") == 1, flag


def test_bool_fields_take_a_negation_and_null_is_none():
    assert parse(AnswerArgs, ["--model", "m", "--question", "q"], prog="p").stream is True
    assert parse(AnswerArgs, ["--model", "m", "--question", "q", "--no-stream"], prog="p").stream is False
    config = parse(ReportConfig, ["--model", "m", "--out", "o", "--limit-images", "null", "--no-progress"], prog="p")
    assert config.limit_images is None and config.progress is False and config.out == Path("o")
    assert parse(ReportConfig, ["--model", "m", "--out", "o"], prog="p").limit_images == ReportConfig.limit_images


def test_model_is_repeatable_named_or_bare_and_the_plural_still_works(capsys):
    config = parse(EvalArgs, ["easyvqa", "--model", "base=a/b", "--model", "c/tiny-vittle-f/"], prog="p")
    assert config.models == {"base": "a/b", "tiny-vittle-f": "c/tiny-vittle-f/"} and config.data == "easyvqa"
    old = parse(ReportConfig, ["--models", "a=x", "b=y", "--out", "o"], prog="p")
    assert old.models == {"a": "x", "b": "y"}
    with pytest.raises(SystemExit) as exit:
        parse(EvalArgs, ["easyvqa", "--model", "x=a", "--model", "x=b"], prog="vittle eval")
    assert exit.value.code == 2 and "vittle eval: error: models: the name 'x' is used twice" in capsys.readouterr().err


def test_eval_takes_its_data_as_analyze_does_or_positionally():
    aliases = {"--data": "data"}  # as `vittle eval` parses
    assert parse(EvalArgs, ["--model", "m", "--data", "x.json"], prog="p", aliases=aliases).data == "x.json"
    assert parse(EvalArgs, ["x.json", "--model", "m"], prog="p", aliases=aliases).data == "x.json"
    assert parse(EvalArgs, ["--model", "m"], prog="p", aliases=aliases).data == "easyvqa"


def test_the_demo_has_one_upload_limit_option(capsys):
    assert parse(DemoConfig, ["--max-upload-mb", "2"], prog="vittle demo").max_upload_bytes == 2 * 1024 * 1024
    with pytest.raises(SystemExit):
        parse(DemoConfig, ["--max-upload-bytes", "5"], prog="vittle demo")
    assert "unrecognized arguments: --max-upload-bytes" in capsys.readouterr().err


def test_the_demo_reads_its_defaults_from_the_environment_and_flags_win(monkeypatch, capsys):
    for name, value in (("VITTLE_BASELINE", "org/base"), ("VITTLE_VITTLE", "org/vittle-f"), ("VITTLE_VITTLE_L", "none"),
                        ("VITTLE_DEVICE", "cuda"), ("GRADIO_SERVER_NAME", "0.0.0.0"), ("GRADIO_SERVER_PORT", "7861")):
        monkeypatch.setenv(name, value)
    config = parse(DemoConfig, [], prog="vittle demo")
    assert (config.baseline, config.vittle, config.vittle_l, config.device, config.host, config.port) == (
        "org/base", "org/vittle-f", None, "cuda", "0.0.0.0", 7861)
    assert parse(DemoConfig, ["--port", "9000", "--vittle", "here"], prog="vittle demo").port == 9000
    monkeypatch.setenv("GRADIO_SERVER_PORT", "many")
    with pytest.raises(SystemExit):
        parse(DemoConfig, [], prog="vittle demo")
    assert "the environment variable GRADIO_SERVER_PORT" in capsys.readouterr().err
    assert ServiceConfig().device == "auto"  # the environment sets defaults of the command line only


def test_a_settings_error_is_a_usage_error_naming_the_field(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["analyze", "--model", "x", "--out", str(tmp_path / "out"), "--limit-images", "0"])
    assert exit.value.code == 2
    assert capsys.readouterr().err == "vittle analyze: error: limit_images=0 must be at least 1 (null: every image)\n"
    with pytest.raises(SystemExit) as exit:
        main(["analyze", "--model", "x", "--out", str(tmp_path / "out"), "--projection", "tsne"])
    assert exit.value.code == 2 and "invalid choice: 'tsne'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["-v", "perturb", "list"], ["perturb", "list", "-v"], ["perturb", "--verbose", "list"]])
def test_verbose_works_anywhere_on_the_command_line(argv, capsys):
    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.WARNING)
        assert main(argv) == 0
        assert root.level == logging.DEBUG
    finally:
        root.setLevel(level)
    assert "frost" in capsys.readouterr().out


CONFIG_MODULES = ("vittle/config.py", "app/config.py", "analysis/report/config.py", "analysis/evaluate/args.py", "analysis/lab/plan.py")
CONFIG_CLASSES = (*{cls for cls in COMMANDS.values()}, BenchmarkArgs, LabConfig, ServiceConfig, TranslationSettings)


def test_settings_never_name_command_line_flags():
    """Settings are the API's too: their errors name fields (limit_images=0), not flags."""
    sources = [(path, (ROOT / path).read_text()) for path in CONFIG_MODULES]
    sources += [(cls.__qualname__, inspect.getsource(cls)) for cls in CONFIG_CLASSES]
    wrong = [name for name, source in sources if '"--' in source or "'--" in source]
    assert not wrong, f"flags named in {wrong}"
