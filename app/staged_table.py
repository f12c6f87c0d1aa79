"""The staged study's numbers for the Robustness tab: its gates per arm and each arm's
shifted difference from the baseline, from the `StagedSummary` the app ships
(assets/staged.json, written by `make lab-staged-report`)."""

from __future__ import annotations

from typing import Any

STAGED_DOC = "docs/robustness-lab/staged.md"

STAGED_ARMS = {"baseline": "Baseline", "vittle-f": "Vittle (F)", "vittle-l": "Vittle (L)", "noise": "Noise-only control",
               "vittle-f-kl0.1": "Vittle (F), KL 0.1 (the paper's literal per-dimension weight)",
               "augmented": "Positive control (half its training images blurred or noised)"}
STAGED_GROUPS = ("label-keeping", "visual, label-keeping", "text, label-keeping")


def staged_markdown(summary: Any, shown: dict[str, str], units: dict[str, str]) -> str:
    """The staged study's gates and shifted differences from its `StagedSummary` (the app's
    staged.json); `shown`: arm -> the UI's name of a loaded model from it, `units`: arm -> unit."""
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}%"

    def interval(found: Any) -> str:
        t = found.t_interval if found is not None else None
        return "-" if t is None else f"{t.mean:+.2f} [{t.low:+.2f}, {t.high:+.2f}]"

    gates = summary.gates
    count = max(len(row.units) for row in gates.values())
    declared = ", ".join(f"{name}: unit {units[arm]}" for arm, name in shown.items() if arm in units)
    lines = [f"The staged study ({STAGED_DOC}): a Llama pretrained on text, a projector aligned on captions, then the task "
             f"learned with the bottleneck present from the first step; {count} paired units (bases x seeds), easy-vqa, "
             f"{summary.slice.get('images')} test images ({summary.slice.get('grounded')} colour and shape questions). "
             f"The app's models ({declared}) were declared before any shifted result.", "",
             "Gates, clean questions only (means over units; (b): the posterior is used and carries the task):", "",
             "| arm | units | clean, grounded | KL per dim, image / text | posterior mean alone (alpha 1) | (a) >= 95% | (b) |",
             "|---|---|---|---|---|---|---|"]
    verdict = {True: "pass", False: "**fails**", None: "-"}
    for arm, row in gates.items():
        name = STAGED_ARMS.get(arm, arm) + (" (shown)" if arm in shown else "")
        kl = "no posterior" if arm == "noise" else "-" if row.kl_visual is None else f"{row.kl_visual:.3g} / {row.kl_text:.3g}"
        lines.append(f"| {name} | {len(row.units)} | {pct(row.clean_grounded)} | {kl} | {pct(row.grounded_alpha1)} | "
                     f"{verdict[row.gate_a]} | {verdict[row.gate_b]} |")
    found = {(c.arm, c.group): c for c in summary.comparisons if c.against == "baseline"}
    lines += ["", "Grounded accuracy minus the baseline of the same unit under the label-keeping shifts (points; mean "
                  "[95% t-interval over units]):", "", "| arm | " + " | ".join(STAGED_GROUPS) + " |", "|---|" + "---|" * len(STAGED_GROUPS)]
    for arm in gates:
        if arm != "baseline" and any((arm, g) in found for g in STAGED_GROUPS):
            lines.append(f"| {STAGED_ARMS.get(arm, arm)} | " + " | ".join(interval(found.get((arm, g))) for g in STAGED_GROUPS) + " |")
    visual = found.get(("vittle-f", "visual, label-keeping"))
    if visual is not None and visual.t_interval is not None:
        from vittle.analysis.lab.staged_report import HALF_WIDTH_TARGET  # heavy

        t = visual.t_interval
        half = (t.high - t.low) / 2
        reading = ("too wide to show or rule out a difference of a few points" if half > HALF_WIDTH_TARGET else
                   "within it, and " + ("excludes 0" if t.low > 0 or t.high < 0 else "includes 0"))
        lines += ["", f"Under the visual label-keeping shifts, Vittle (F) minus the baseline has a half-width of {half:.2f} points "
                      f"against the study's target of {HALF_WIDTH_TARGET:g}: {reading}. The text shifts' intervals are wide because "
                      f"the bases disagree; {STAGED_DOC} says where the spread comes from."]
    return "\n".join(lines)
