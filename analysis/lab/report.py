"""The lab's markdown tables and figures, from a `LabSummary`."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from vittle.analysis.lab.plan import LABEL_KEEPING
from vittle.analysis.lab.results import LabSummary, Stat
from vittle.analysis.lab.stats import Interval
from vittle.analysis.perturb import list_perturbations
from vittle.analysis.perturb.registry import Modality
from vittle.analysis.plots import bar_chart, interval_chart, save_figure, severity_curves

logger = logging.getLogger(__name__)

GROUP_COLUMNS = ("visual, label-keeping", "text, label-keeping", "label-keeping", "visual, colour-altering", "text, translation")


def fmt(value: Stat | float | None, digits: int = 1) -> str:
    """"83.1 ± 2.0" for a Stat over several seeds, "83.1" for one value, "–" for none."""
    if value is None:
        return "–"
    if isinstance(value, Stat):
        if value.n == 0 or math.isnan(value.mean):
            return "–"
        return f"{value.mean:.{digits}f} ± {value.std:.{digits}f}" if value.n > 1 else f"{value.mean:.{digits}f}"
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def fmt_small(value: Stat | float | None) -> str:
    """Significant digits for quantities spanning decades (KL, variation distances)."""
    mean = value.mean if isinstance(value, Stat) else value
    if mean is None or math.isnan(mean):
        return "–"
    return f"{mean:.2g}" + (f" ± {value.std:.1g}" if isinstance(value, Stat) and value.n > 1 else "")


def fmt_interval(interval: Interval | None) -> str:
    if interval is None:
        return "–"
    mark = " *" if interval.excludes_zero() else ""
    return f"{interval.mean:+.2f} [{interval.low:+.2f}, {interval.high:+.2f}]{mark}"


def markdown(summary: LabSummary) -> str:
    arms = summary.arms
    lines = [f"Evaluation slice: the first {summary.slice['images']} easy-vqa test images, {summary.slice['questions']} questions "
             f"clean, their {summary.slice['grounded']} colour and shape questions under every shift.", ""]
    if summary.bases:
        lines += ["## Bases (one per seed; every arm of a seed is fine-tuned from it)", "",
                  "| seed | layers | bottleneck after | colour | shape | yes/no | grounded | RMS of h at l (image / text) | "
                  "answer's attention on image tokens after l | train min | device | target met |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for b in summary.bases:
            lines.append(f"| {b.seed} | {b.depth} | {b.layer} | {fmt(b.clean.get('color'))} | {fmt(b.clean.get('shape'))} | "
                         f"{fmt(b.clean.get('yes/no'))} | {fmt(b.clean.get('grounded'))} | {fmt(b.hidden_rms.get('visual'), 2)} / "
                         f"{fmt(b.hidden_rms.get('text'), 2)} | {fmt(b.image_attention, 3)} | {b.train_minutes:.1f} | {b.device} | "
                         f"{'yes' if b.meets_target else 'no'} |")
    compared = {n: a for n, a in arms.items() if a.versus_baseline}
    if compared:
        lines += ["", "## Paired differences from the baseline (grounded accuracy, points; mean [95% interval], * excludes 0)", "",
                  "Each arm minus the baseline fine-tuned from the same base, on the same questions; the interval resamples "
                  "seeds and questions (paired bootstrap). \"label-keeping\" joins " + " and ".join(LABEL_KEEPING) + ".", "",
                  "| arm | seeds | clean | " + " | ".join(GROUP_COLUMNS) + " |", "|---|---|---|" + "---|" * len(GROUP_COLUMNS)]
        for a in compared.values():
            lines.append(f"| {a.label} | {len(a.seeds)} | {fmt_interval(a.versus_baseline.get('clean'))} | "
                         + " | ".join(fmt_interval(a.versus_baseline.get(g)) for g in GROUP_COLUMNS) + " |")
        lines += ["", "Per seed (label-keeping): " + "; ".join(
            f"{a.label} " + ", ".join(f"{v:+.1f}" for v in a.versus_baseline["label-keeping"].per_seed)
            for a in compared.values() if "label-keeping" in a.versus_baseline)]
    against_noise = {n: a for n, a in arms.items() if a.versus_noise}
    if against_noise:
        lines += ["", "## Paired differences from the noise-only control (grounded accuracy, points)", "",
                  "Each arm with a posterior minus the noise-only control fine-tuned from the same base: what the information "
                  "bottleneck adds to the noise it injects.", "",
                  "| arm | seeds | clean | " + " | ".join(GROUP_COLUMNS) + " |", "|---|---|---|" + "---|" * len(GROUP_COLUMNS)]
        for a in against_noise.values():
            lines.append(f"| {a.label} | {len(set(a.seeds) & set(arms['noise'].seeds)) if 'noise' in arms else 0} | "
                         f"{fmt_interval(a.versus_noise.get('clean'))} | " + " | ".join(fmt_interval(a.versus_noise.get(g)) for g in GROUP_COLUMNS) + " |")
    lines += ["", "## Accuracy (%; mean ± std over seeds)", "",
              "| arm | seeds | clean, all | clean, grounded | colour | shape | yes/no | " + " | ".join(GROUP_COLUMNS) + " |",
              "|---|---|---|---|---|---|---|" + "---|" * len(GROUP_COLUMNS)]
    for a in arms.values():
        lines.append(f"| {a.label} | {len(a.seeds)} | {fmt(a.clean.get('all'))} | {fmt(a.clean.get('grounded'))} | {fmt(a.clean.get('color'))} | "
                     f"{fmt(a.clean.get('shape'))} | {fmt(a.clean.get('yes/no'))} | " + " | ".join(fmt(a.groups.get(g)) for g in GROUP_COLUMNS) + " |")
    lines += ["", "## Yes/no questions, POPE-style (clean slice)", "",
              "| arm | accuracy | precision | recall | F1 | yes ratio |", "|---|---|---|---|---|---|"]
    for a in arms.values():
        lines.append(f"| {a.label} | " + " | ".join(fmt(a.clean.get(f"yes_no_{k}")) for k in ("accuracy", "precision", "recall", "f1", "yes_ratio")) + " |")
    lines += ["", "## Does the answer use the bottleneck? (clean colour and shape queries)", "",
              "| arm | KL image (nats/dim) | KL text | state change image ‖α(μ−h)‖/‖h‖ | state change text | answer TV, α 0 vs α_max | "
              "answers flipped | answer's attention on image tokens after l | grounded, bottleneck off | RMS of h (image / text) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for a in arms.values():
        d = a.diagnostics
        lines.append(f"| {a.label} | {fmt_small(d.get('kl_visual'))} | {fmt_small(d.get('kl_text'))} | {fmt(d.get('visual_state_change'), 3)} | "
                     f"{fmt(d.get('text_state_change'), 3)} | {fmt_small(d.get('answer_tv'))} | {fmt(_pct(d.get('answer_flips')))} | "
                     f"{fmt(d.get('image_attention'), 3)} | {fmt(d.get('grounded_bottleneck_off'))} | "
                     f"{fmt(d.get('hidden_rms_visual'), 2)} / {fmt(d.get('hidden_rms_text'), 2)} |")
    lines += ["", "## Every run", "",
              "| run | trained on | train min | clean | colour | shape | yes/no | grounded | label-keeping | KL image | KL text | answer TV |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary.runs:
        lines.append(f"| {r.run} | {r.train_device} | {r.train_minutes:.1f} | {fmt(r.clean)} | {fmt(r.color)} | {fmt(r.shape)} | "
                     f"{fmt(r.yes_no)} | {fmt(r.grounded)} | {fmt(r.label_keeping)} | {fmt_small(r.kl_visual)} | "
                     f"{fmt_small(r.kl_text)} | {fmt_small(r.answer_tv)} |")
    names = list(arms)
    lines += ["", "## Per shift: grounded accuracy (%)", "", "| spec | " + " | ".join(arms[n].label for n in names) + " |",
              "|---|" + "---|" * len(names)]
    for spec in summary.specs:
        lines.append(f"| {spec} | " + " | ".join(fmt(arms[n].shifted.get(spec)) for n in names) + " |")
    return "\n".join(lines) + "\n"


def _pct(value: Stat | None) -> Stat | None:
    return None if value is None else Stat(100 * value.mean, 100 * value.std, value.n)


def severity_figure(summary: LabSummary, names: list[str], labels: dict[str, str] | None = None, title: str | None = None) -> Any:
    """Grounded accuracy vs corruption severity for the arms `names` (mean ± std over seeds,
    one panel per corruption; the paper's Figure 5 shape). None if nothing to draw."""
    labels = labels or {n: summary.arms[n].label for n in names}
    curves: dict[str, dict[str, dict[int, tuple[float, float]]]] = {}
    for p in list_perturbations(Modality.VISUAL):
        per_model = {}
        for name in names:
            shifted = summary.arms[name].shifted
            points = {s: (shifted[f"{p.name}:{s}"].mean, shifted[f"{p.name}:{s}"].std) for s in p.levels
                      if f"{p.name}:{s}" in shifted and shifted[f"{p.name}:{s}"].n}
            if points:
                per_model[labels[name]] = points
        if per_model:
            curves[p.name] = per_model
    if not curves:
        return None
    clean = {labels[n]: (summary.arms[n].shifted["clean"].mean, summary.arms[n].shifted["clean"].std) for n in names}
    return severity_curves(curves, clean, title=title or "easy-vqa colour and shape questions: accuracy vs corruption severity (±1 std over seeds)")


def write_figures(summary: LabSummary, folder: Path, png: bool = True) -> list[Path]:
    written: list[Path] = []
    main = [n for n, a in summary.arms.items() if a.group == "main"]
    if main:
        fig = severity_figure(summary, main)
        if fig is not None:
            written += save_figure(fig, folder / "severity-main-grounded", png=png)
        text = [s for s in summary.specs if s in summary.spec_groups.get("text, label-keeping", []) + summary.spec_groups.get("text, translation", [])]
        if text:
            values = {s: {summary.arms[n].label: (summary.arms[n].shifted[s].mean, summary.arms[n].shifted[s].std) for n in main}
                      for s in ["clean", *text]}
            written += save_figure(bar_chart(values, "easy-vqa colour and shape questions under text shifts (mean ± std over seeds)"),
                                   folder / "text-main-grounded", png=png)
    intervals = {a.label: {g: (i.mean, i.low, i.high) for g, i in a.versus_baseline.items()} for a in summary.arms.values() if a.versus_baseline}
    far = [label for label, per in intervals.items() if any(abs(v[0]) > OFF_SCALE for v in per.values())]
    intervals = {label: per for label, per in intervals.items() if label not in far}
    if intervals:
        title = "Each arm minus the baseline from the same base: grounded accuracy, 95% paired bootstrap intervals"
        if far:
            title += f"<br><sup>not drawn, beyond {OFF_SCALE} points (see lab.md): {', '.join(far)}</sup>"
        written += save_figure(interval_chart(intervals, title), folder / "differences", png=png)
    return written


OFF_SCALE = 25
"""An arm whose mean difference from the baseline exceeds this many points is left out of the
differences figure (it would squeeze the others to a dot) and named in its title."""


def write_report(summary: LabSummary, out: Path, png: bool = True) -> None:
    summary.save(out / "lab.json")
    (out / "lab.md").write_text(markdown(summary), encoding="utf-8")
    try:
        write_figures(summary, out / "figures", png=png)
    except (RuntimeError, ValueError, OSError) as err:  # a figure must not cost the lab's results
        logger.error("figures not written: %s", err)
