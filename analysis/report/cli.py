"""`vittle analyze`: one offline HTML report (and a JSON of every number) comparing models
under perturbations: accuracy, layer-l embedding maps, cosine shifts, JSD, EMID and posterior
diagnostics.

    vittle analyze --models baseline=PATH vittle=PATH --data easyvqa --specs paper \
        --limit-images 100 --out runs/report [--projection umap] [--no-emid]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

PROG = "vittle analyze"


def build_parser() -> argparse.ArgumentParser:
    from analysis.embedders import list_embedders

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Compare models clean and under perturbations; writes OUT/report.html (self-contained, opens "
        "offline) and OUT/report.json.",
        epilog="Spec sets: paper (27 variants), visual (9 corruptions x severities 1..5), text, full; or specs such as "
        "frost:3,char_typo:2,zoom_blur:3+greek. EMID uses offline stand-ins for the paper's CLIP / XLM-R embedders "
        "(see analysis/embedders.py).")
    parser.add_argument("--models", nargs="+", required=True, metavar="NAME=PATH",
                        help="checkpoint folders (or hub ids), e.g. baseline=PATH vittle=PATH")
    parser.add_argument("--data", default="easyvqa", help="'easyvqa' (the package's test split) or a LLaVA conversation JSON")
    parser.add_argument("--specs", default="paper", help="spec sets and/or specs, comma-separated (clean is always included)")
    parser.add_argument("--limit-images", type=int, default=60, metavar="N",
                        help="keep the questions of the first N images (easy-vqa: ~9.7 questions each; 0: every image; "
                        "the default, 60, runs the paper's 27 variants for two tiny models in about 8 minutes on 2 CPU cores)")
    parser.add_argument("--out", type=Path, required=True, help="folder for report.html and report.json")
    parser.add_argument("--projection", choices=["pca", "umap"], default="pca", help="2-D map method (umap: ~10 s of JIT first)")
    parser.add_argument("--map-specs", default=None, metavar="SPECS",
                        help="perturbed specs drawn as embedding maps, comma-separated (default: the first three)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=4, help="longest generated answer")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="embedding cache (default $VITTLE_CACHE_DIR or ~/.cache/vittle/representations)")
    parser.add_argument("--emid", action=argparse.BooleanOptionalAction, default=True,
                        help="estimate EMID (CLUB MI between query and answer embeddings)")
    parser.add_argument("--club-steps", type=int, default=2000, help="most CLUB training steps per MI estimate")
    parser.add_argument("--text-embedder", default="minilm", choices=list_embedders("text"), help="embeds questions and answers")
    parser.add_argument("--image-embedder", default="efficientnet-lite0", choices=list_embedders("image"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the perturbations, the map and CLUB")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _number(value: float | None, form: str = ".4f") -> str:
    return "-" if value is None else format(value, form)


def main(argv: list[str] | None = None) -> int:
    """Entry point for `vittle analyze ...` (argv without the word "analyze")."""
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from analysis.evaluate.benchmark import parse_models
    from vittle.checkpoint import CheckpointError
    from vittle.data import DataError

    from . import ReportConfig, build_report

    try:
        if args.limit_images < 0:
            raise ValueError(f"--limit-images={args.limit_images} must be 0 (every image) or a positive number of images")
        config = ReportConfig(models=parse_models(args.models), out=args.out, data=args.data, specs=args.specs,
                              limit_images=args.limit_images or None, map_specs=args.map_specs, projection=args.projection,
                              device=args.device, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                              cache_dir=args.cache_dir, emid=args.emid, club_steps=args.club_steps,
                              text_embedder=args.text_embedder, image_embedder=args.image_embedder, seed=args.seed,
                              progress=not args.no_progress)
        report = build_report(config)
    except (ValueError, CheckpointError, DataError, FileNotFoundError, ImportError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    for name, summary in report["summary"].items():
        print(f"{name}: clean {_number(summary['accuracy_clean'], '.1f')}%, perturbed "
              f"{_number(summary['accuracy_perturbed_mean'], '.1f')}%, cosine {_number(summary['cosine_mean'])}, "
              f"JSD {_number(summary['jsd_mean'])}, EMID {_number(summary['emid_mean'])}")
    if report["emid"] and report["emid"]["unreliable"]:
        print(f"EMID unreliable (an MI estimate above log(distinct answers)): {', '.join(report['emid']['unreliable'])}")
    for note in report["diagnosis_notes"]:
        print(note)
    print(f"{PROG}: wrote {args.out / 'report.html'} and {args.out / 'report.json'} "
          f"in {report['timings']['total_s']:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
