"""`vittle lab`: the robustness lab from the command line; its options are generated from
`LabConfig` (analysis/lab/plan.py) and `LabCommand`."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any

from vittle.analysis.lab.plan import LabConfig
from vittle.options import configure_logging, failed, parse

PROG = "vittle lab"
DESCRIPTION = ("Per seed, train a base on easy-vqa, fine-tune the baseline, Vittle (F), Vittle (L) and the noise-only "
               "control from it (and a KL-weight sweep of Vittle (F)); evaluate clean and under every shift; write lab.json, "
               "lab.md and figures with paired 95% intervals. Finished runs are skipped, so an interrupted lab resumes.")


@dataclass
class LabCommand(LabConfig):
    """The lab's settings and what this invocation does with them."""

    quick: bool = False
    """Start from the quick preset (one seed, short training on 300 images, a 40-image slice: under
    10 minutes); the settings given with it win, its overrides come first."""
    report_only: bool = False
    """Train nothing; report the runs that have finished."""


def make_config(quick: bool = False, report_only: bool = False, **given: Any) -> tuple[LabConfig, bool]:
    """(The LabConfig of the given settings, report_only); the quick preset fills what is not given."""
    if not quick:
        return LabConfig(**given), report_only
    preset = LabConfig.quick()
    return LabConfig.quick(**{**given, "overrides": (*preset.overrides, *given.get("overrides", ()))}), report_only


def main(argv: list[str] | None = None) -> int:
    # --runs: the name of --only before the options were generated from LabConfig
    config, report_only = parse(LabCommand, argv, prog=PROG, description=DESCRIPTION, make=make_config, aliases={"--runs": "only"})
    from vittle.analysis.lab.report import markdown  # heavy: after parsing: --help loads no numpy
    from vittle.analysis.lab.runner import Lab  # heavy

    configure_logging(logging.WARNING)
    try:
        outcome = Lab(config).run(report_only=report_only)
    except (ValueError, OSError, RuntimeError, ImportError) as err:
        return failed(PROG, err)
    if isinstance(outcome, list):
        print(f"{PROG}: trained {', '.join(outcome)}", file=sys.stderr)
        return 0
    print(markdown(outcome))
    took = "" if report_only else f" in {outcome.seconds / 60:.1f} min"
    print(f"{PROG}: wrote {config.out / 'lab.json'}, {config.out / 'lab.md'} and figures{took}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
