"""`vittle perturb`: perturb one query, build perturbed datasets, list perturbations.

    vittle perturb --image x.png --question "..." --spec frost:3+greek --out DIR
    vittle perturb build --data llava.json --images DIR --specs paper --out DIR [--workers 2]
    vittle perturb list
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields
from pathlib import Path

from .spec import valid_levels_text

PROG = "vittle perturb"


def _add_translation_args(parser: argparse.ArgumentParser) -> None:
    """One --translate-* option per TranslationSettings field (secrets stay env-only)."""
    from .translate import TranslationSettings

    group = parser.add_argument_group("translation (defaults from VITTLE_* environment variables)")
    for f in fields(TranslationSettings):
        if f.metadata.get("cli", True):
            env = f.metadata.get("env")
            help_text = f.metadata["help"] + (f" [env {env}]" if env else "")
            group.add_argument(f"--translate-{f.name.replace('_', '-')}", dest=f"translate_{f.name}",
                               default=None, help=help_text)


def _settings(args: argparse.Namespace):
    from .translate import TranslationSettings

    overrides = {k.removeprefix("translate_"): v for k, v in vars(args).items() if k.startswith("translate_")}
    return TranslationSettings.from_env(**overrides)


def query_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Perturb one image/question pair. Subcommands: build, list.",
        epilog=f"Spec: {valid_levels_text()}. E.g. frost:3, char_typo:2, zoom_blur:3+greek.")
    parser.add_argument("--image", type=Path, help="input image")
    parser.add_argument("--question", help="input question (may contain <image>)")
    parser.add_argument("--spec", required=True, help="perturbation spec")
    parser.add_argument("--out", type=Path, required=True, help="folder for the perturbed image and result.json")
    parser.add_argument("--seed", type=int, default=0)
    _add_translation_args(parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"{PROG} build",
                                     description="Write each spec as a LLaVA-format dataset (resumable).")
    parser.add_argument("--data", type=Path, required=True, help="LLaVA conversation JSON")
    parser.add_argument("--images", type=Path, required=True, help="folder the samples' image paths are relative to")
    parser.add_argument("--specs", default="paper", help="'paper' (the 27 variants) or a comma-separated list")
    parser.add_argument("--out", type=Path, required=True, help="output folder (one subfolder per spec)")
    parser.add_argument("--workers", type=int, default=1, help="image worker processes")
    parser.add_argument("--seed", type=int, default=0)
    _add_translation_args(parser)
    return parser


def list_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"{PROG} list", description="List every perturbation.")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def run_query(args: argparse.Namespace) -> int:
    from PIL import Image

    from .api import apply, describe
    from .imagefiles import save_image
    from .registry import Category
    from .spec import parse_spec
    from .translate import Language, get_translator

    if args.image is None and args.question is None:
        raise ValueError("give --image, --question or both")
    spec = parse_spec(args.spec)
    translator = None
    if spec.text is not None and spec.text.perturbation.category is Category.SENTENCE and args.question is not None:
        translator = get_translator(_settings(args))
    image = None
    if args.image is not None:
        with Image.open(args.image) as opened:
            opened.load()
            image = opened.copy()
    new_image, new_text = apply(spec, image=image, text=args.question, seed=args.seed, translator=translator)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"spec": str(spec), "label": describe(spec, translator), "seed": args.seed,
              "question": args.question, "perturbed_question": new_text, "image": None}
    if new_image is not None:
        name = "image" + (args.image.suffix.lower() or ".png")
        save_image(new_image, args.out / name)
        result["image"] = name
    if translator is not None:
        result["translation"] = {"backend": translator.backend_id, "gloss": translator.is_gloss,
                                 "label": translator.label(Language(spec.text.name))}
    (args.out / "result.json").write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"{result['label']}: wrote {args.out}")
    if new_text is not None:
        print(new_text)
    return 0


def run_build(args: argparse.Namespace) -> int:
    from .dataset import BuildConfig, build_variants
    from .spec import expand_specs

    config = BuildConfig(data=args.data, images=args.images, out=args.out, specs=expand_specs(args.specs),
                         workers=args.workers, seed=args.seed, translation=_settings(args))
    folders = build_variants(config)
    print(f"built {len(folders)} variants in {args.out}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from .registry import list_perturbations

    entries = list_perturbations()
    if args.json:
        print(json.dumps([{"name": p.name, "modality": p.modality.value, "category": p.category.value,
                           "label": p.label, "levels": list(p.levels)} for p in entries], indent=1))
        return 0
    for p in entries:
        levels = f"1..{max(p.levels)}" if p.levels else "-"
        print(f"{p.name:16} {p.modality.value:7} {p.category.value:10} {levels:5} {p.label}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for `vittle perturb ...` (argv without the word "perturb")."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    commands = {"build": (build_parser, run_build), "list": (list_parser, run_list)}
    make_parser, run = commands.get(argv[0], (query_parser, run_query)) if argv else (query_parser, run_query)
    parser = make_parser()
    args = parser.parse_args(argv[1:] if argv and argv[0] in commands else argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
