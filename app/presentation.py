"""What the panels show: figures (plotly figure dicts), markdown and HTML from typed results.

No model code: everything here reads `vittle.analysis.shift.ShiftAnalysis`, an `Assistant.probe`
result, `vittle.analysis.evaluate.diagnostics.QueryPosterior` or the lab's `LabSummary`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from vittle.app.staged_table import STAGED_DOC, staged_markdown


@dataclass
class PanelNumbers:
    """The numbers behind one turn's panels (labels are the UI's model names)."""

    spec: str
    layer: dict[str, int]
    """model name -> the layer whose state is shown."""
    query_cosine_distance: dict[str, float]
    """label -> cosine distance between the clean and the perturbed query's layer-l state."""
    reference_cosine_mean: dict[str, float] = field(default_factory=dict)
    """label -> mean of the same over the reference set (empty for a clean query)."""
    posterior: Any = None
    """The Vittle model's `QueryPosterior` on the perturbed query (None without a bottleneck)."""


@dataclass
class Panels:
    """The panels of one turn. The figures are kept as plotly figure dicts (`specs`): the page
    gets them as JSON (`json`) without plotly building and validating a Figure per panel per
    user; `embeddings`, `distances`, `variance` and `kl` give plotly Figures for code."""

    specs: dict[str, dict[str, Any] | None]
    """Figure name ("embeddings", "distances", "variance", "kl", "overlay") -> figure dict, or None where
    the turn has no such panel (the page's panels pick theirs by name: vittle.app.panels)."""
    tokens_html: str
    summary: str
    numbers: PanelNumbers

    def json(self, name: str) -> str | None:
        from vittle.analysis.plots import figure_json  # heavy

        return figure_json(fit_to_container(self.specs[name]))

    def figure(self, name: str) -> Any:
        from vittle.analysis.plots import figure  # heavy

        return figure(self.specs[name])

    @property
    def embeddings(self) -> Any:
        return self.figure("embeddings")

    @property
    def distances(self) -> Any:
        return self.figure("distances")

    @property
    def variance(self) -> Any:
        return self.figure("variance")

    @property
    def kl(self) -> Any:
        return self.figure("kl")


def shift_figures(shift: Any, spec: str, labels: dict[str, str], placed: dict[str, Any], query_distance: dict[str, float],
                  method: str, view: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(map, histograms) figure dicts of a `ShiftAnalysis` with the user's query marked:
    `placed[label]` = (clean, perturbed) map points, `query_distance[label]` its distance, `view`
    the reference queries (`vittle.app.map_figure.ReferenceView`) for the hover texts."""
    from vittle.app.map_figure import distance_histogram_spec, reference_map_spec  # heavy

    embeddings = reference_map_spec(shift, spec, labels, placed, view, method)
    distances = {labels[name]: shift.distances[name][spec] for name in labels}
    return embeddings, distance_histogram_spec(distances, query_distance, view.questions, spec)


def shift_summary(numbers: PanelNumbers) -> str:
    return ("Cosine distance between the clean and perturbed query's layer-l state: "
            + ", ".join(f"{label} **{value:.4f}**" for label, value in numbers.query_cosine_distance.items())
            + "; reference-set mean: "
            + ", ".join(f"{label} {value:.4f}" for label, value in numbers.reference_cosine_mean.items()) + ".")


CLEAN_SUMMARY = "Clean query: choose a perturbation to compare clean and perturbed representations."


def fit_to_container(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    """A figure dict without a fixed width: in the app, plots take their container's width (a
    phone's column too); the report keeps its fixed sizes."""
    if spec is None:
        return None
    layout = {key: value for key, value in spec.get("layout", {}).items() if key != "width"}
    return {**spec, "layout": {**layout, "autosize": True}}


KL_SCALE_NATS = 0.05
"""The KL colour scale runs from 0 to at least this (nats per dimension): values far below it,
a collapsed posterior's micro-nats, stay dark instead of filling the scale."""


def _finite_max(values: Any) -> float:
    import numpy as np  # heavy

    array = np.asarray(values, dtype=float).reshape(-1)
    array = array[np.isfinite(array)]
    return float(array.max()) if array.size else 0.0


def posterior_panels(probe: Any, posterior: Any, label: str, setting: str = "perturbed query") -> tuple[Any, Any, str, str]:
    """(variance figure, KL figure, tokens HTML, summary line) of the Vittle model's posterior
    on one query (`setting`: its perturbation's name, for the titles); figures are None without
    image tokens or without a bottleneck."""
    from vittle.analysis.plots import token_colours_html, variance_heatmap_spec  # heavy

    if posterior is None:
        text = f"{label} has no bottleneck, so there is no posterior to show."
        return None, None, f"<p>{html.escape(text)}</p>", text
    variance = kl = None
    # fixed scales, so that a collapsed posterior (variance ~1, KL ~0 everywhere) reads as flat, not as a pattern:
    # variance from 0 to max(1, ...) with the fixed prior's variance 1 marked; KL from 0 to at least KL_SCALE_NATS
    variance_range = (0.0, max(1.0, _finite_max(probe.visual_variance), _finite_max(probe.text_variance)))
    kl_range = (0.0, max(KL_SCALE_NATS, _finite_max(probe.visual_kl), _finite_max(probe.text_kl)))
    if probe.grid is not None and posterior.visual_variance_mean is not None:
        shown = probe.grid.caption(len(probe.visual_positions))  # a tiling family: the base or global image's tokens
        shown = f"<br>{shown}" if shown else ""
        variance = variance_heatmap_spec(probe.on_grid(probe.visual_variance), probe.grid.shape,
                                         f"{label}<br>posterior variance per image token<br>({setting}){shown}",
                                         value_range=variance_range, marks={0.0: "0", 1.0: "1 (prior)"})
        kl = variance_heatmap_spec(probe.on_grid(probe.visual_kl), probe.grid.shape,
                                   f"{label}<br>KL to the prior per image token<br>(nats per dim, {setting}){shown}", label="KL",
                                   value_range=kl_range)
    tokens_html = (token_colours_html(probe.text_tokens, probe.text_variance, "posterior variance", value_range=variance_range)
                   + "<p style='margin-top:8px'>KL to the prior per text token:</p>"
                   + token_colours_html(probe.text_tokens, probe.text_kl, "KL to the prior", colour=(31, 119, 180), value_range=kl_range))
    means = posterior.kl_means
    if posterior.collapsed:
        line = (f"{label}: the posterior has collapsed to the prior (mean KL per dim "
                + ", ".join(f"{name} {max(value, 0.0):.2g}" for name, value in means.items())
                + "): the bottleneck passes almost no information through its noisy path, and the answer "
                "comes from the direct path (1 - alpha) h. See docs/robustness-lab.md.")
    else:
        line = f"{label}: mean KL to the prior per dim " + ", ".join(f"{name} {value:.3g}" for name, value in means.items()) + "."
    return variance, kl, tokens_html, line




def robustness_markdown(summary: Any, shown: dict[str, str | None], labels: dict[str, str], paths: dict[str, str],
                        vittle: str, staged: dict[str, str] | None = None, staged_summary: Any = None,
                        staged_arms: dict[str, str] | None = None) -> str:
    """The lab's table for the shown models: `shown[name]` is the lab arm a model was exported
    from (None: not a lab model); `summary` the `LabSummary` (None: no lab results); `staged`
    the models of the staged study (name -> unit), which the first lab's table does not describe,
    `staged_arms` their arms (name -> arm) and `staged_summary` the study's `StagedSummary`
    (None: not shipped), whose gates and differences are shown for them."""
    staged = staged or {}
    from vittle.analysis.lab.report import GROUP_COLUMNS, fmt, fmt_interval  # heavy

    found = {name: arm for name, arm in shown.items() if summary is not None and arm in summary.arms}
    lines = []
    if found:
        lines += [f"easy-vqa, {summary.slice['images']} test images: accuracy (%, mean ± std over the lab's seeds) on all clean "
                  f"questions and on the colour and shape questions (grounded), clean and under each group of shifts. The app's "
                  f"models are seed {summary.export_seed}, declared before any result. Source: docs/robustness-lab.md.", "",
                  "| model | seeds | clean | clean, grounded | yes/no | " + " | ".join(GROUP_COLUMNS) + " |",
                  "|---|---|---|---|---|" + "---|" * len(GROUP_COLUMNS)]
        for name, arm_name in found.items():
            arm = summary.arms[arm_name]
            lines.append(f"| {labels[name]} | {len(arm.seeds)} | {fmt(arm.clean.get('all'))} | {fmt(arm.clean.get('grounded'))} | "
                         f"{fmt(arm.clean.get('yes/no'))} | " + " | ".join(fmt(arm.groups.get(g)) for g in GROUP_COLUMNS) + " |")
        vittle_arm = summary.arms.get(found.get(vittle, ""))
        if vittle_arm is not None and vittle_arm.versus_baseline:
            lines += ["", f"{labels[vittle]} minus the baseline fine-tuned from the same base (grounded accuracy, points; "
                          "mean [95% paired bootstrap interval over seeds and questions], * excludes 0):", "",
                      "| clean | " + " | ".join(GROUP_COLUMNS) + " |", "|---|" + "---|" * len(GROUP_COLUMNS),
                      f"| {fmt_interval(vittle_arm.versus_baseline.get('clean'))} | "
                      + " | ".join(fmt_interval(vittle_arm.versus_baseline.get(g)) for g in GROUP_COLUMNS) + " |"]
    for name in shown:
        if name in staged and staged_summary is None:
            lines += ["", f"{labels[name]} comes from the staged study ({STAGED_DOC}), unit {staged[name]}: a Llama pretrained "
                          "on text, a projector aligned on captions, then the task learned with the bottleneck present from the "
                          "first step. Its robustness over the study's units is reported there (the app has no staged.json)."]
        elif name not in found and name not in staged:
            lines += ["", f"No lab results for {labels[name]} ({paths[name]}): evaluate it with "
                          f"`vittle eval easyvqa --model PATH --specs paper`."]
    if staged and staged_summary is not None:
        arms = staged_arms or {}
        lines += ["", staged_markdown(staged_summary, {arms[n]: labels[n] for n in staged if n in arms},
                                      {arms[n]: unit for n, unit in staged.items() if n in arms})]
    first = summary.arms.get("vittle-f") if summary is not None and staged else None
    interval = first.versus_baseline.get("label-keeping") if first is not None else None
    if interval is not None:
        lines += ["", f"The first robustness lab (docs/robustness-lab.md) fine-tuned models that already answered the task, a "
                      f"different protocol: there Vittle (F) minus the baseline under the label-keeping shifts was "
                      f"{interval.mean:+.2f} points [{interval.low:+.2f}, {interval.high:+.2f}] over {len(interval.per_seed)} seeds, "
                      "and its posterior sat at the prior."]
    return "\n".join(lines).strip()


def model_finding(label: str, settings: dict[str, Any] | None, card: Any, lab_arm: Any = None) -> str:
    """One line of what a loaded model is and what it measurably does: its bottleneck (layer,
    prior), whether its posterior carries information or sits at the prior (the numbers of its
    model card), and the lab's headline for it with its interval."""
    if not settings:
        return f"**{label}**: no bottleneck (a plain LLaVA-architecture model)."
    kind = "noise only (no posterior)" if settings.get("kind") == "noise" else f"{settings.get('prior', 'fixed')} prior"
    parts = [f"**{label}**: bottleneck after layer {settings.get('layer')}, {kind}, alpha {settings.get('alpha_max')}"]
    diagnostics = getattr(card, "diagnostics", None) or {}
    kls = {name: diagnostics.get(f"kl_{key}") for name, key in (("image", "visual"), ("text", "text"))}
    kls = {name: value for name, value in kls.items() if isinstance(value, (int, float))}
    if kls:
        used = max(kls.values()) >= USED_KL_NATS
        numbers = ", ".join(f"{name} {value:.2g}" for name, value in kls.items())
        parts.append(("its posterior carries information" if used else "**its posterior sits at the prior**")
                     + f" (mean KL per dim {numbers} nats; {USED_KL_NATS:g} counts as used)")
    else:
        parts.append("its posterior use is not measured (no model card with diagnostics)")
    alpha1 = diagnostics.get("grounded_alpha1")
    if getattr(card, "protocol", "") == "staged" and isinstance(alpha1, (int, float)):
        parts.append(f"the posterior mean alone (alpha 1) answers {alpha1:.0f}% of the colour/shape questions "
                     f"(staged study, unit {card.unit}; {STAGED_DOC})")
    interval = getattr(lab_arm, "versus_baseline", {}).get("label-keeping") if lab_arm is not None else None
    if interval is not None:
        verdict = "a difference" if interval.low > 0 or interval.high < 0 else "no difference shown"
        parts.append(f"robustness lab, minus the baseline under label-keeping shifts: {interval.mean:+.2f} points "
                     f"[{interval.low:+.2f}, {interval.high:+.2f}] over {len(interval.per_seed)} seeds ({verdict})")
    return "; ".join(parts) + "."


def model_line(label: str, settings: dict[str, Any] | None, card: Any) -> str:
    """What a model is, in plain words, on one line: its bottleneck and whether its posterior is
    used (the numbers are in `model_finding`)."""
    if not settings:
        return f"**{label}**: no bottleneck."
    if settings.get("kind") == "noise":
        return f"**{label}**: noise after layer {settings.get('layer')}, no posterior."
    line = f"**{label}**: bottleneck after layer {settings.get('layer')}"
    diagnostics = getattr(card, "diagnostics", None) or {}
    kls = [diagnostics.get(key) for key in ("kl_visual", "kl_text") if isinstance(diagnostics.get(key), (int, float))]
    if kls:
        line += "; its posterior is used" if max(kls) >= USED_KL_NATS else "; its posterior sits at its prior (unused)"
    return line + "."


USED_KL_NATS = 0.01
"""Mean KL per dimension (nats) from which a posterior counts as used (the lab's gate (b))."""


def answer_marks(answers: dict[str, str], vittle_label: str) -> str:
    """Where the perturbation flipped an answer and where the two models disagree, in words."""
    def norm(text: str) -> str:
        return " ".join(text.lower().strip().rstrip(".").split())

    if not all(answers.get(role) for role in ("baseline_clean", "baseline_perturbed", "vittle_clean", "vittle_perturbed")):
        return ""
    lines = []
    for label, role in (("Baseline", "baseline"), (vittle_label, "vittle")):
        clean, perturbed = answers[f"{role}_clean"], answers[f"{role}_perturbed"]
        if norm(clean) == norm(perturbed):
            lines.append(f"{label}: kept its answer")
        else:
            lines.append(f"{label}: **flipped** ({clean.strip()} → {perturbed.strip()})")
    for when in ("clean", "perturbed"):
        if norm(answers[f"baseline_{when}"]) != norm(answers[f"vittle_{when}"]):
            lines.append(f"the models **disagree** on the {when} query")
    return " · ".join(lines)
