"""The staged study's gates, comparisons and report (docs/robustness-lab/staged.md).

The gates and the main comparison are fixed here before any shifted result of the study is
looked at:

- gate (a), per arm: clean grounded (colour/shape) accuracy, mean over the arm's units, >= 95%;
- gate (b), per arm with a posterior: the mean KL per dimension (over units) >= 0.01 nats on
  image or on text tokens, AND with alpha = 1 at inference (the state after layer l is the
  posterior mean alone) clean grounded accuracy stays >= 30 points above what the same
  intervention leaves the noise-only control (mean paired difference over units);
- the main comparison: Vittle (F) minus the baseline, grounded accuracy averaged over the
  label-keeping shifts; the primary 95% interval is a t-interval over (base, seed) units, the
  secondary a bootstrap over units and questions;
- every arm against the baseline of the same unit (issue 31's precision target: the visual
  label-keeping difference with a 95% half-width <= 2.5 points per arm), with its clean
  difference and its loss beyond the clean gap (visual minus clean difference, per unit);
  Vittle (F) + augmentation also against augmentation alone (do they add up?).

Gates use clean data only; `shifted=False` leaves every shifted number out of the summary.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vittle.analysis.lab.plan import LABEL_KEEPING, spec_group
from vittle.analysis.lab.results import JsonRecord, RunResult, environment
from vittle.analysis.lab.staged_plan import STAGED_ARMS
from vittle.analysis.lab.stats import (
    Interval,
    difference_matrix,
    paired_bootstrap,
    seed_interval,
)
from vittle.analysis.lab.summary import accuracy, hits_array
from vittle.analysis.plots import figure, forest_spec, save_figure
from vittle.files import write_text_atomic

GATE_A = 95.0
GATE_B_KL = 0.01
GATE_B_MARGIN = 30.0
MAIN_COMPARISON = ("vittle-f", "baseline")
VISUAL = LABEL_KEEPING[0]
HALF_WIDTH_TARGET = 2.5
"""Per arm, on the visual label-keeping difference from the baseline (issue 31; issue 22's 1 point
needed about 500 bases, out of reach on a CPU)."""
BEYOND_CLEAN = "visual beyond clean"


@dataclass
class GateRow:
    """One arm's clean numbers, means over its units (min and max for the accuracy)."""

    arm: str
    units: list[int]
    clean_grounded: float
    clean_grounded_min: float
    gate_a: bool
    kl_visual: float | None = None
    kl_text: float | None = None
    grounded_alpha1: float | None = None
    alpha1_minus_noise: float | None = None
    """Mean over the units both arms finished of (this arm - noise control), alpha 1 at inference."""
    grounded_bottleneck_off: float | None = None
    gate_b: bool | None = None
    train_minutes: float = 0.0
    final_ce: float | None = None


@dataclass
class Comparison:
    arm: str
    against: str
    units: list[int]
    group: str
    per_unit: list[float]
    t_interval: Interval | None
    bootstrap: Interval | None


@dataclass
class StagedSummary(JsonRecord):
    stages: dict[str, dict[str, Any]]
    """Job name -> train minutes, final log and numbers of stage 0 / stage 1 (pressure)."""
    gates: dict[str, GateRow]
    comparisons: list[Comparison] = field(default_factory=list)
    specs: list[str] = field(default_factory=list)
    slice: dict[str, int] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    shifted: bool = False


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def gate_rows(arms: dict[str, list[RunResult]]) -> dict[str, GateRow]:
    """Gates (a) and (b) per arm from clean data only."""
    noise = {r.seed: r.diagnostics.get("grounded_alpha1") for r in arms.get("noise", [])}
    rows = {}
    for name, runs in arms.items():
        clean = [accuracy(r.hits["clean"]) for r in runs]
        row = GateRow(name, [r.seed for r in runs], statistics.fmean(clean), min(clean), statistics.fmean(clean) >= GATE_A,
                      train_minutes=statistics.fmean(r.train_seconds / 60 for r in runs),
                      final_ce=_mean([r.final_log["ce"] for r in runs if "ce" in r.final_log]))
        if "grounded_alpha1" in runs[0].diagnostics:
            row.kl_visual = _mean([r.diagnostics["kl_visual"] for r in runs if "kl_visual" in r.diagnostics])
            row.kl_text = _mean([r.diagnostics["kl_text"] for r in runs if "kl_text" in r.diagnostics])
            row.grounded_alpha1 = _mean([r.diagnostics["grounded_alpha1"] for r in runs])
            row.grounded_bottleneck_off = _mean([r.diagnostics["grounded_bottleneck_off"] for r in runs
                                                 if "grounded_bottleneck_off" in r.diagnostics])
            paired = [r.diagnostics["grounded_alpha1"] - noise[r.seed] for r in runs if noise.get(r.seed) is not None]
            row.alpha1_minus_noise = _mean(paired)
            if name != "noise":
                used = max(row.kl_visual or 0.0, row.kl_text or 0.0) >= GATE_B_KL
                row.gate_b = bool(used and row.alpha1_minus_noise is not None and row.alpha1_minus_noise >= GATE_B_MARGIN)
        rows[name] = row
    return rows


def compare(arm: list[RunResult], against: list[RunResult], specs: list[str], group: str) -> Comparison | None:
    """arm minus `against` on grounded accuracy over `specs`, paired by unit and question."""
    a, b = {r.seed: r for r in arm}, {r.seed: r for r in against}
    units = sorted(set(a) & set(b))
    specs = [s for s in specs if all(s in a[u].hits and s in b[u].hits for u in units)]
    if not units or not specs:
        return None
    matrix = difference_matrix([[hits_array(a[u].hits[s]) for s in specs] for u in units],
                               [[hits_array(b[u].hits[s]) for s in specs] for u in units])
    per_unit = [float(v) for v in matrix.mean(axis=1)]
    return Comparison(arm[0].name, against[0].name, units, group, per_unit,
                      seed_interval(per_unit) if len(units) > 1 else None, paired_bootstrap(matrix))


def beyond_clean(visual: Comparison | None, clean: Comparison | None) -> Comparison | None:
    """Per unit, the visual label-keeping difference minus the clean difference: what an arm
    loses (or gains) under the visual shifts beyond its own clean gap."""
    if visual is None or clean is None:
        return None
    clean_of = dict(zip(clean.units, clean.per_unit))
    units = [u for u in visual.units if u in clean_of]
    per_unit = [v - clean_of[u] for u, v in zip(visual.units, visual.per_unit) if u in clean_of]
    return Comparison(visual.arm, visual.against, units, BEYOND_CLEAN, per_unit,
                      seed_interval(per_unit) if len(units) > 1 else None, None)


def meets_target(comparison: Comparison) -> bool | None:
    """The precision target, for an arm's visual label-keeping difference from the baseline."""
    if comparison.group != VISUAL or comparison.against != "baseline" or comparison.t_interval is None:
        return None
    return comparison.t_interval.half_width <= HALF_WIDTH_TARGET


def summarize_staged(lab: Any, seconds: float = 0.0) -> StagedSummary:
    stages, results = lab.records()
    arms: dict[str, list[RunResult]] = {}
    for result in results.values():
        arms.setdefault(result.name, []).append(result)
    shifted = not (lab.config.clean_only or lab.config.train_only or lab.config.gates_only)
    comparisons = []
    if shifted:
        label_keeping = [s for s in lab.specs if spec_group(s) in LABEL_KEEPING]
        groups = {"clean": ["clean"], "label-keeping": label_keeping,
                  **{g: [s for s in lab.specs if spec_group(s) == g] for g in LABEL_KEEPING}}
        pairs = [(name, "baseline") for name in arms if name != "baseline"] + [(n, "noise") for n in ("vittle-f", "vittle-l") if n in arms]
        pairs += [("vittle-f-augmented", "augmented")] if "vittle-f-augmented" in arms else []
        for name, against in pairs:
            if against not in arms:
                continue
            found = {group: compare(arms[name], arms[against], specs, group) for group, specs in groups.items()}
            comparisons += [c for c in found.values() if c is not None]
            beyond = beyond_clean(found.get(VISUAL), found.get("clean"))
            if beyond is not None:
                comparisons.append(beyond)
    stage_rows = {name: {"train_minutes": rec.train_seconds / 60, "final_log": rec.final_log, **rec.numbers}
                  for name, rec in sorted(stages.items())}
    return StagedSummary(stage_rows, gate_rows(arms), comparisons, list(lab.specs),
                         {"images": lab.config.slice_images, "questions": len(lab.slice), "grounded": len(lab.grounded)},
                         environment(), round(seconds, 1), shifted)


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(summary: StagedSummary) -> str:
    lines = ["# The staged study", "", "## Stages 0 and 1 (per base)", ""]
    for name, row in summary.stages.items():
        numbers = ", ".join(f"{k} {v:.3g}" for k, v in row.items() if isinstance(v, float) and k != "train_minutes")
        lines.append(f"- {name}: {row['train_minutes']:.1f} min; final CE {row['final_log'].get('ce', float('nan')):.3f}; {numbers}")
    lines += ["", "## Gates (clean data only)", "",
              "| arm | units | clean grounded (min) | gate (a) | KL/dim image | KL/dim text | alpha 1 | alpha 1 minus noise "
              "| bottleneck off | gate (b) | train min | final CE |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in summary.gates.values():
        gate_b = "-" if row.gate_b is None else ("pass" if row.gate_b else "fail")
        lines.append(f"| {row.arm} | {len(row.units)} | {row.clean_grounded:.1f} ({row.clean_grounded_min:.1f}) | "
                     f"{'pass' if row.gate_a else 'fail'} | {_f(row.kl_visual, 4)} | {_f(row.kl_text, 4)} | {_f(row.grounded_alpha1)} | "
                     f"{_f(row.alpha1_minus_noise)} | {_f(row.grounded_bottleneck_off)} | {gate_b} | {row.train_minutes:.1f} | "
                     f"{_f(row.final_ce, 3)} |")
    if summary.shifted:
        lines += ["", "## Paired differences (grounded accuracy points; t-interval over units, bootstrap over units and "
                  "questions)", "",
                  "| arm - against | group | units | mean | t 95% | half-width | bootstrap 95% | per unit |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in summary.comparisons:
            t = c.t_interval
            b = c.bootstrap
            main = (c.arm, c.against) == MAIN_COMPARISON and c.group == "label-keeping"
            name = f"**{c.arm} - {c.against}**" if main else f"{c.arm} - {c.against}"
            per_unit = ", ".join(f"{unit:02d}: {value:+.1f}" for unit, value in zip(c.units, c.per_unit))
            lines.append(f"| {name} | {c.group} | {len(c.units)} | {statistics.fmean(c.per_unit):+.2f} | "
                         f"{'-' if t is None else f'[{t.low:+.2f}, {t.high:+.2f}]'} | {'-' if t is None else f'{t.half_width:.2f}'} | "
                         f"{'-' if b is None else f'[{b.low:+.2f}, {b.high:+.2f}]'} | {per_unit} |")
        targets = {c.arm: meets_target(c) for c in summary.comparisons if meets_target(c) is not None}
        lines += ["", f"Main comparison in bold; units are coded 10 x base + seed. Precision target, the visual label-keeping "
                  f"difference from the baseline with a half-width <= {HALF_WIDTH_TARGET:g} points: "
                  + (", ".join(f"{arm} {'met' if met else 'NOT met'}" for arm, met in targets.items()) or "no arm has two units yet") + "."]
    else:
        lines += ["", "(No shifted result is in this report.)"]
    return "\n".join(lines) + "\n"


FOREST_GROUPS = ("clean", VISUAL, LABEL_KEEPING[1], "label-keeping")
"""The forest plot's panels, left to right: the clean cost first, then the shift groups."""


def forest(summary: StagedSummary, labels: dict[str, str] | None = None, columns: int | None = None) -> dict[str, Any] | None:
    """The study in one figure (a figure dict): every arm minus the baseline of the same unit,
    mean and 95% t-interval over units, per group (`FOREST_GROUPS`); None before any shifted
    comparison. `labels`: arm -> the name shown (default: the plan's arm labels)."""
    names = {arm.name: arm.label for arm in STAGED_ARMS} | (labels or {})
    rows: dict[str, dict[str, tuple[float, float, float]]] = {}
    for c in summary.comparisons:
        if c.against == "baseline" and c.group in FOREST_GROUPS and c.t_interval is not None:
            t = c.t_interval
            rows.setdefault(f"{names.get(c.arm, c.arm)} ({len(c.units)})", {})[c.group] = (t.mean, t.low, t.high)
    if not rows:
        return None
    groups = [g.replace(", label-keeping", "") if g != "label-keeping" else "all label-keeping" for g in FOREST_GROUPS]
    rows = {arm: {groups[FOREST_GROUPS.index(g)]: v for g, v in per.items()} for arm, per in rows.items()}
    title = ("Each method minus the baseline of the same unit (grounded accuracy, points; mean and 95% interval over units; "
             "units in brackets)")
    if columns == 1:  # a narrow screen: the title wraps
        title = "Each method minus the baseline<br>of the same unit (points; mean,<br>95% interval; units in brackets)"
    return forest_spec(rows, groups, title, columns=columns)


def write_staged_report(summary: StagedSummary, out: Path, png: bool = False) -> None:
    summary.save(out / "staged.json")
    write_text_atomic(out / "staged.md", markdown(summary))
    spec = forest(summary)
    if spec is not None:
        save_figure(figure(spec), out / "forest", png=png, scale=2.0)
