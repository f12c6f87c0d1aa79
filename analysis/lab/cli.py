"""`vittle lab`: the robustness lab from the command line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from analysis.lab.plan import LabConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vittle lab",
        description="Per seed, train a base on easy-vqa, fine-tune the baseline, Vittle (F), Vittle (L) and the noise-only "
        "control from it (and a KL-weight sweep of Vittle (F)); evaluate clean and under every shift; write lab.json, lab.md "
        "and figures with paired 95%% intervals. Finished runs are skipped, so an interrupted lab resumes.")
    parser.add_argument("--out", type=Path, default=Path("runs/lab"), help="output folder (default runs/lab)")
    parser.add_argument("--quick", action="store_true", help="one seed, short training on 300 images, a 40-image slice: under 10 minutes")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds of the bases and main arms (default 0,1,2,3,4)")
    parser.add_argument("--sweep-seeds", default=None, help="comma-separated seeds of the KL-weight sweep (default 0,1,2)")
    parser.add_argument("--groups", default=None, help="comma-separated: main, sweep (default both)")
    parser.add_argument("--slice-images", type=int, default=None, help="test images evaluated (default 300)")
    parser.add_argument("--severities", default=None, help="comma-separated visual severities (default 1,3,5)")
    parser.add_argument("--specs", default=None, help="evaluate exactly these comma-separated specs or spec sets instead")
    parser.add_argument("--assets", type=Path, default=None, help="copy the export seed's models here with model cards")
    parser.add_argument("--archive", type=Path, default=None,
                        help="folder under version control that keeps every finished run's result (make lab: "
                        "docs/robustness-lab/runs); runs found there count as finished")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=None, help="processes sharing the runs (default 1; 2 on a 2-core CPU is ~1.5x faster)")
    parser.add_argument("--no-png", action="store_true", help="skip PNG figures (no Chromium needed)")
    parser.add_argument("--report-only", action="store_true", help="train nothing; report the runs that have finished")
    parser.add_argument("--train-only", action="store_true", help="train the planned runs, evaluate nothing")
    parser.add_argument("--runs", default=None, help="comma-separated arm names to restrict to, e.g. vittle-f,noise")
    parser.add_argument("overrides", nargs="*", help="recipe overrides: key=value (every run), base:key=value or arm:key=value")
    return parser


def _ints(flag: str, text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{flag}: expected comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError(f"{flag}: no values in {text!r}")
    return values


def config_from_args(args: argparse.Namespace) -> LabConfig:
    values: dict[str, Any] = {"out": args.out, "device": args.device, "assets": args.assets, "archive": args.archive, "png": not args.no_png,
                              "train_only": args.train_only}
    for flag, key in (("--seeds", "seeds"), ("--sweep-seeds", "sweep_seeds"), ("--severities", "severities")):
        raw = getattr(args, key)
        if raw is not None:
            values[key] = _ints(flag, raw)
    if args.groups is not None:
        values["groups"] = tuple(g.strip() for g in args.groups.split(",") if g.strip())
    for key in ("slice_images", "workers"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if args.specs:
        values["specs"] = tuple(s.strip() for s in args.specs.split(",") if s.strip())
    if args.runs:
        values["only"] = tuple(r.strip() for r in args.runs.split(",") if r.strip())
    if args.quick:
        quick = LabConfig.quick()
        values["overrides"] = (*quick.overrides, *args.overrides)
        return LabConfig.quick(**values)
    values["overrides"] = tuple(args.overrides)
    return LabConfig(**values)


def main(argv: list[str] | None = None) -> int:
    from analysis.lab.report import markdown
    from analysis.lab.runner import Lab

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
        outcome = Lab(config).run(report_only=args.report_only)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"vittle lab: error: {err}", file=sys.stderr)
        return 2
    if isinstance(outcome, list):
        print(f"vittle lab: trained {', '.join(outcome)}", file=sys.stderr)
        return 0
    print(markdown(outcome))
    took = "" if args.report_only else f" in {outcome.seconds / 60:.1f} min"
    print(f"vittle lab: wrote {config.out / 'lab.json'}, {config.out / 'lab.md'} and figures{took}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
