"""`vittle analyze`: one offline HTML report (and a JSON of every number) comparing models
under perturbations: accuracy, layer-l embedding maps, cosine shifts, JSD, EMID and posterior
diagnostics.

    vittle analyze --model baseline=PATH --model vittle=PATH --data easyvqa --specs paper \
        --limit-images 100 --out runs/report [--projection umap] [--no-emid]

The options are generated from `ReportConfig` (analysis/report/config.py).
"""

from __future__ import annotations

import logging
import sys

from vittle.options import configure_logging, failed, parse

PROG = "vittle analyze"


DESCRIPTION = ("Compare models clean and under perturbations; writes OUT/report.html (self-contained, opens offline) "
               "and OUT/report.json.")
EPILOG = ("Spec sets: paper (27 variants), visual (9 corruptions x severities 1..5), text, full; or specs such as "
          "frost:3,char_typo:2,zoom_blur:3+greek. EMID uses offline stand-ins for the paper's CLIP / XLM-R embedders "
          "(see analysis/embedders.py).")


def _number(value: float | None, form: str = ".4f") -> str:
    return "-" if value is None else format(value, form)


def main(argv: list[str] | None = None) -> int:
    """Entry point for `vittle analyze ...` (argv without the word "analyze")."""
    from .config import ReportConfig  # heavy

    config = parse(ReportConfig, argv, prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    from .build import build_report  # heavy

    configure_logging(logging.WARNING)
    try:
        report = build_report(config)
    except (ValueError, OSError, RuntimeError, ImportError) as err:
        return failed(PROG, err)
    for name, summary in report.summary().items():
        print(f"{name}: clean {_number(summary['accuracy_clean'], '.1f')}%, perturbed "
              f"{_number(summary['accuracy_perturbed_mean'], '.1f')}%, cosine {_number(summary['cosine_mean'])}, "
              f"JSD {_number(summary['jsd_mean'])}, EMID {_number(summary['emid_mean'])}")
    if report.emid and report.emid["unreliable"]:
        print(f"EMID unreliable (an MI estimate above log(distinct answers)): {', '.join(report.emid['unreliable'])}")
    for note in report.diagnosis_notes():
        print(note)
    print(f"{PROG}: wrote {config.out / 'report.html'} and {config.out / 'report.json'} "
          f"in {report.timings['total_s']:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
