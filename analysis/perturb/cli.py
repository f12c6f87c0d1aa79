"""`vittle perturb`: perturb one query, build perturbed datasets, list perturbations.

    vittle perturb --image x.png --question "..." --spec frost:3+greek --out DIR
    vittle perturb build --data llava.json --images DIR --specs paper --out DIR [--workers 2]
    vittle perturb list
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from vittle.options import configure_logging, failed, parse

from .api import apply, describe
from .build_config import BuildConfig
from .imagefiles import save_image
from .registry import Category, list_perturbations
from .spec import parse_spec, valid_levels_text
from .translate import Language, TranslationSettings, get_translator

PROG = "vittle perturb"


@dataclass
class QueryConfig:
    """One image/question pair to perturb."""

    spec: str
    """Perturbation spec, e.g. frost:3, char_typo:2, zoom_blur:3+greek."""
    out: Path
    """Folder for the perturbed image and result.json."""
    image: Path | None = None
    """Input image."""
    question: str | None = None
    """Input question (may contain <image>)."""
    seed: int = 0
    """Seed of the perturbation."""
    translation: TranslationSettings | None = field(default=None, metadata={"prefix": "translate"})
    """Where translations come from; None: from the environment."""

    def __post_init__(self) -> None:
        if self.image is None and self.question is None:
            raise ValueError("image and question are both missing; give one or both")


@dataclass
class ListArgs:
    json: bool = False
    """Machine-readable output."""


def run_query(args: QueryConfig) -> int:
    spec = parse_spec(args.spec)
    translator = None
    if spec.text is not None and spec.text.perturbation.category is Category.SENTENCE and args.question is not None:
        translator = get_translator(args.translation)
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


def run_build(config: BuildConfig) -> int:
    from .dataset import build_variants  # heavy

    folders = build_variants(config)
    print(f"built {len(folders)} variants in {config.out}")
    return 0


def run_list(args: ListArgs) -> int:
    entries = list_perturbations()
    if args.json:
        print(json.dumps([{"name": p.name, "modality": p.modality.value, "category": p.category.value,
                           "label": p.label, "levels": list(p.levels)} for p in entries], indent=1))
        return 0
    for p in entries:
        levels = f"1..{max(p.levels)}" if p.levels else "-"
        print(f"{p.name:16} {p.modality.value:7} {p.category.value:10} {levels:5} {p.label}")
    return 0


COMMANDS: dict[str, tuple[type, Any, str]] = {
    "build": (BuildConfig, run_build, "Write each spec as a LLaVA-format dataset (resumable)."),
    "list": (ListArgs, run_list, "List every perturbation."),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point for `vittle perturb ...` (argv without the word "perturb")."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        cls, run, description = COMMANDS[argv[0]]
        prog, epilog, argv = f"{PROG} {argv[0]}", None, argv[1:]
    else:
        cls, run, prog = QueryConfig, run_query, PROG
        description = "Perturb one image/question pair. Subcommands: build, list."
        epilog = f"Spec: {valid_levels_text()}. E.g. frost:3, char_typo:2, zoom_blur:3+greek."
    args = parse(cls, argv, prog=prog, description=description, epilog=epilog)
    configure_logging(logging.INFO)
    try:
        return run(args)
    except (ValueError, OSError, RuntimeError, ImportError) as err:
        return failed(prog, err)
