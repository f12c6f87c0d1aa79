"""The `vittle` command: train, answer, probe, push, quickstart, the analysis tools and the demo.

Options of each subcommand are generated from a dataclass (vittle.options), so the command
line, the recipes and the Python API cannot drift apart. The global flags (-v, -q,
--progress/--no-progress, --local_rank) may stand anywhere on the command line, before or after
the subcommand. Exit status: 0 done, 1 the command failed, 2 a usage or settings error, 130
interrupted; a reader that closes the output early (`vittle perturb list | head -1`) ends it
quietly. `vittle completion bash|zsh|tcsh` prints a shell completion script.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shtab

from vittle import __version__
from vittle.global_flags import GLOBAL_HELP, apply_globals, strip_globals
from vittle.options import FAILURE, USAGE_ERROR, UsageError, add_options, configure_logging, failed, values
from vittle.plugins import entry_points as _entry_points
from vittle.settings import load_recipe

logger = logging.getLogger("vittle")


@dataclass
class TrainArgs:
    recipe: str
    """YAML file, or the name of a built-in recipe (e.g. tiny-shapes)."""
    overrides: tuple[str, ...] = field(default=(), metadata={"positional": True, "metavar": "section.key=value"})
    """Recipe overrides such as train.max_steps=100 bottleneck.prior=learnable."""


@dataclass
class QueryArgs:
    model: str
    """Checkpoint folder (or Hugging Face hub id) with model and processor."""
    question: str
    """The question to ask."""
    image: str = ""
    """Image file; leave out for a text-only question."""
    device: str = "auto"
    """"auto" (CUDA if present), "cpu", "cuda", "cuda:1", ..."""
    dtype: str = "auto"
    """"auto" (bfloat16 on CUDA, float32 on CPU), "float32", "bfloat16" or "float16"."""


@dataclass
class AnswerArgs(QueryArgs):
    max_new_tokens: int = 64
    """Longest answer in tokens."""
    stream: bool = True
    """Print the answer as it is generated."""


@dataclass
class ProbeArgs(QueryArgs):
    json: bool = False
    """Print every number as JSON instead of a summary."""


@dataclass
class PushArgs:
    model: str
    """The saved model folder (a `vittle train` output: model, processor, recipe)."""
    repo_id: str
    """Where on the Hub: ORG/NAME or USER/NAME (created if it does not exist)."""
    private: bool = False
    """Create the repository as private."""
    base_model: str = ""
    """The model it was fine-tuned from, for the card's metadata (default: the recipe's model.init if it is a hub id)."""
    datasets: str = ""
    """Comma-separated dataset ids for the card's metadata, e.g. liuhaotian/LLaVA-Instruct-150K."""
    license: str = "mit"
    """The card's license (that of the weights you start from may bind you: LLaVA-1.5 is Llama 2's)."""
    endpoint: str = ""
    """The Hub's URL (default: HF_ENDPOINT, else huggingface.co)."""
    token: str = ""
    """Access token (default: HF_TOKEN or the login saved by `hf auth login`)."""


@dataclass
class QuickstartArgs:
    out: str = "runs/quickstart"
    """Where the data, the model and its checkpoints go."""
    steps: int = 200
    """Training steps of the tiny recipe."""


def _train(args: TrainArgs) -> int:
    from vittle.trainer import train  # heavy

    try:
        recipe = load_recipe(args.recipe, list(args.overrides))
    except (ValueError, FileNotFoundError) as err:  # the recipe is the command's settings
        raise UsageError(str(err)) from err
    result = train(recipe)
    losses = [entry["loss"] for entry in result["log_history"] if "loss" in entry]
    if losses:
        print(f"trained {recipe.train.stage} model: loss {losses[0]:.4f} -> {losses[-1]:.4f}; saved to {result['output_dir']}")
    return 0


def _query_image(args: QueryArgs) -> Any:
    """The query's image, read before any model loads (a missing or broken file fails at once); None without one."""
    from vittle.data import load_image  # heavy

    return load_image(args.image) if args.image else None


def _answer(args: AnswerArgs) -> int:
    from vittle.inference import Assistant  # heavy

    image = _query_image(args)
    assistant = Assistant.load(args.model, device=args.device, dtype=args.dtype)
    if args.stream:
        for piece in assistant.answer(image, args.question, max_new_tokens=args.max_new_tokens, stream=True):
            print(piece, end="", flush=True)
        print()
    else:
        print(assistant.answer(image, args.question, max_new_tokens=args.max_new_tokens))
    return 0


def _probe(args: ProbeArgs) -> int:
    from vittle.inference import Assistant  # heavy

    image = _query_image(args)
    result = Assistant.load(args.model, device=args.device, dtype=args.dtype).probe(image, args.question)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(f"layer {result.layer}: {len(result.tokens)} tokens ({len(result.visual_positions)} image tokens, grid {result.grid})")
    print(f"last-token state norm: before {float((result.hidden_before ** 2).sum() ** 0.5):.4f}, "
          f"after {float((result.hidden_after ** 2).sum() ** 0.5):.4f}")
    if result.has_bottleneck:
        for name, variance, kl in (("image", result.visual_variance, result.visual_kl), ("text", result.text_variance, result.text_kl)):
            if variance is not None and kl is not None and len(variance):
                print(f"{name} tokens: mean posterior variance {variance.mean():.4f}, mean KL to prior {kl.mean():.6f}")
    else:
        print("plain model: no bottleneck, no posterior")
    return 0


def _push(args: PushArgs) -> int:
    from vittle.hub import push  # heavy

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    url = push(args.model, args.repo_id, private=args.private, token=args.token or None, endpoint=args.endpoint or None,
               base_model=args.base_model or None, datasets=datasets, license=args.license)
    print(f"uploaded {args.model} to {args.repo_id}: {url}")
    return 0


def _quickstart(args: QuickstartArgs) -> int:
    from vittle.inference import Assistant  # heavy
    from vittle.trainer import train  # heavy

    out = Path(args.out)
    recipe = load_recipe("tiny-shapes", [f"data.path={out / 'data' / 'train.json'}", f"train.output_dir={out / 'model'}",
                                          f"train.max_steps={args.steps}"])
    result = train(recipe)
    losses = [entry["loss"] for entry in result["log_history"] if "loss" in entry]
    print(f"tiny Vittle model trained for {args.steps} steps: loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    sample = json.loads(Path(recipe.data.path).read_text())[0]  # the colour question of the first image
    image_path = out / "query.png"
    shutil.copyfile(Path(recipe.data.path).parent / sample["image"], image_path)
    question, expected = sample["conversations"][0]["value"].removeprefix("<image>\n"), sample["conversations"][1]["value"]
    answer = Assistant.load(out / "model", device="cpu").answer(image_path, question)
    print(f"Q: {question} (image: {image_path}, a training image; trained answer: {expected})\nA: {answer}")
    return 0


COMMANDS_GROUP, SETTINGS_GROUP = "vittle.commands", "vittle.command_settings"
"""Entry points (pyproject.toml) of the analysis and app commands, name -> `main(argv)` (a package may add its own),
and of their settings dataclasses, for completion without the heavy imports."""
EXTRA_OF_COMMAND = {"perturb": "analysis", "eval": "eval", "lab": "analysis", "analyze": "analysis", "demo": "app", "cache": "analysis"}
"""The pip extra each command's dependencies come with (pyproject.toml)."""


def external_commands() -> dict[str, Any]:
    """The declared analysis and app commands, name -> entry point (none from a source tree never installed);
    one named like a built-in command is left out with a warning (it would shadow it and break the parser)."""
    points = _entry_points(COMMANDS_GROUP)
    for name in sorted(set(points) & set(BUILT_IN)):
        logger.warning("ignoring the %s entry point %r (%s): vittle has a built-in command of that name", COMMANDS_GROUP, name,
                       points.pop(name).value)
    return points


def _dispatch(command: str, argv: list[str]) -> int:
    try:
        return external_commands()[command].load()(argv)
    except ModuleNotFoundError as err:  # at import or later, when the command first needs the package
        if err.name and err.name.split(".")[0] == "vittle":
            raise
        extra = EXTRA_OF_COMMAND.get(command)  # a plugin's command has none
        print(f"vittle {command}: error: needs {err.name!r}, " + (f"which comes with the {extra!r} extra: pip install 'vittle[{extra}]'"
              if extra else "which is not installed"), file=sys.stderr)
        return FAILURE


def _completion(shell: str) -> int:
    """Print the completion script of `shell`."""
    print(shtab.complete(build_parser(full=True), shell=shell))
    return 0


def _external_parser(sub: Any, name: str, settings: dict[str, Any]) -> None:
    """The full parser of an analysis or app command (for completion), from its declared settings alone."""
    parser = sub.add_parser(name, help=f"see `vittle {name} --help`")
    if name not in settings:
        return
    try:
        add_options(parser, settings[name].load())
    except ImportError:  # its extra is not installed: complete the command's name only
        pass


COMMANDS = (("train", TrainArgs, _train, "train with a YAML recipe"),
            ("answer", AnswerArgs, _answer, "answer a question about an image"),
            ("probe", ProbeArgs, _probe, "layer-l state and posterior statistics of one query"),
            ("push", PushArgs, _push, "upload a trained model to the Hugging Face Hub with a model card"),
            ("quickstart", QuickstartArgs, _quickstart, "train the tiny recipe briefly and answer a question"))
BUILT_IN = (*(command[0] for command in COMMANDS), "completion")
"""The commands of this module; an entry point with one of these names is ignored."""


def build_parser(full: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vittle", description="Visual Instruction Bottleneck Tuning for vision-language models", epilog=GLOBAL_HELP)
    parser.add_argument("--version", action="version", version=f"vittle {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (anywhere on the command line)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings only, no progress bars (anywhere on the command line)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, cls, handler, text in COMMANDS:
        command = sub.add_parser(name, help=text, description=text, epilog=GLOBAL_HELP)
        add_options(command, cls)
        command.set_defaults(handler=handler, spec=cls)
    settings = _entry_points(SETTINGS_GROUP) if full else {}
    for name in external_commands():  # the full parsers only for completion: they import each command's settings
        _external_parser(sub, name, settings) if full else sub.add_parser(name, help=f"see `vittle {name} --help`", add_help=False)
    completion = sub.add_parser("completion", help="print a shell completion script: vittle completion bash > ~/.vittle-complete")
    completion.add_argument("shell", choices=("bash", "zsh", "tcsh"))
    return parser


def _run(argv: list[str]) -> int:
    try:
        argv, flags = strip_globals(argv)
    except ValueError as err:
        print(f"vittle: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    apply_globals(flags)
    if argv and argv[0] in external_commands():
        return _dispatch(argv[0], argv[1:])
    if argv and argv[0] in EXTRA_OF_COMMAND:  # a built-in command the package metadata does not declare
        print(f"vittle {argv[0]}: error: vittle's package metadata does not declare this command (never installed, installed "
              "before it existed, or a stale vittle.egg-info here): run `pip install -e .` in the repository", file=sys.stderr)
        return USAGE_ERROR
    args = build_parser().parse_args(argv)
    if args.command == "completion":
        return _completion(args.shell)
    configure_logging(logging.INFO)
    try:
        settings = args.spec(**values(args.spec, args))
    except ValueError as err:
        print(f"vittle {args.command}: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    try:
        return args.handler(settings)
    except (ValueError, OSError, RuntimeError, ImportError) as err:
        return failed(f"vittle {args.command}", err)


def main(argv: list[str] | None = None) -> int:
    try:
        code = _run(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # the reader closed the pipe (`| head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the flush at exit finds nowhere to fail
        return 0
    except KeyboardInterrupt:
        print("vittle: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
