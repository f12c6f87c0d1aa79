"""The figures and words of the probe panels: answer-distribution bars per model and the
severity sweep's curves, as plotly figure dicts (`vittle.analysis.plots.figure_json` sends them to
the page without building a Figure), plus the numbers in markdown."""

from __future__ import annotations

from typing import Any

from vittle.app.probe_results import Sweep, TurnDistributions

CLEAN_COLOUR, PERTURBED_COLOUR = "#1f77b4", "#d62728"
MODEL_COLOURS = ("#555555", "#ff7f0e")
"""The baseline's and the Vittle model's line colours in the sweep."""
TOP = 5
"""Answers per chart: the clean and the perturbed query's TOP most likely, together."""


def _quote(answer: str, width: int = 18) -> str:
    return answer if len(answer) <= width else answer[: width - 1] + "…"


def signed(value: float, digits: int = 3) -> str:
    """`value` with its sign, and no "-0.000" for a value that rounds to zero."""
    text = f"{value:+.{digits}f}"
    return f"{0:.{digits}f}" if float(text) == 0 else text


def shown_answers(clean: Any, perturbed: Any, top: int = TOP) -> list[str]:
    """The answers a chart shows: the clean and the perturbed query's `top` most likely, together."""
    return list(dict.fromkeys([a for a, _ in clean.top(top)] + [a for a, _ in perturbed.top(top)]))


def distribution_spec(title: str, clean: Any, perturbed: Any, top: int = TOP, rows: int = 0) -> dict[str, Any]:
    """Horizontal bars: the top answers of the clean and the perturbed query side by side on a
    fixed 0..1 axis (the same scale for both models, so their charts compare by eye). `rows`: the
    height in answers (the larger of the two models' counts, so that their charts line up)."""
    shown = shown_answers(clean, perturbed, top)
    shown.sort(key=lambda a: -clean.prob(a))
    names = [_quote(a) for a in shown]
    data = []
    for name, dist, colour in (("clean", clean, CLEAN_COLOUR), ("perturbed", perturbed, PERTURBED_COLOUR)):
        values = [dist.prob(a) for a in shown]
        data.append({"type": "bar", "orientation": "h", "name": name, "y": names, "x": values, "marker": {"color": colour},
                     "text": [f"{v:.2f}" for v in values], "textposition": "outside", "cliponaxis": False, "textfont": {"size": 11},
                     "hovertemplate": "%{y}: %{x:.4f}<extra>" + name + "</extra>"})
    layout = {"title": {"text": title, "font": {"size": 14}}, "barmode": "group", "bargap": 0.25, "bargroupgap": 0.05,
              "xaxis": {"range": [0, 1.12], "tickvals": [0, 0.25, 0.5, 0.75, 1], "title": {"text": "probability"}},
              "yaxis": {"autorange": "reversed", "automargin": True}, "height": 110 + 34 * max(rows, len(shown)),
              "margin": {"l": 10, "r": 10, "t": 40, "b": 40}, "legend": {"orientation": "h", "y": -0.25 - 0.6 / max(rows, len(shown))},
              "uniformtext": {"minsize": 10, "mode": "show"}, "autosize": True}
    return {"data": data, "layout": layout}


def distribution_specs(turn: TurnDistributions, labels: dict[str, str]) -> dict[str, dict[str, Any]]:
    """{"baseline": figure, "vittle": figure}; `labels` names the two roles."""
    dists = turn.distributions
    rows = max(len(shown_answers(dists[f"{role}_clean"], dists[f"{role}_perturbed"])) for role in ("baseline", "vittle"))
    return {role: distribution_spec(f"{labels[role]}: answer probabilities", dists[f"{role}_clean"], dists[f"{role}_perturbed"],
                                    rows=rows) for role in ("baseline", "vittle")}


def effects_markdown(turn: TurnDistributions, vittle_label: str, training_alpha: float | None) -> str:
    """Per model: the clean answer's probability before and after the shift, its drop and the
    total variation; then what the distributions are over."""
    lines = []
    for label, effect in turn.effects.items():
        lines.append(f"**{label}**: its clean answer '{effect.clean_answer}' has probability {effect.clean_prob:.3f} on the clean "
                     f"query and {effect.perturbed_prob:.3f} on the perturbed one (drop **{signed(effect.drop)}**); total "
                     f"variation between the two distributions **{effect.total_variation:.3f}**.")
    coverage = min(d.coverage for d in turn.distributions.values())
    lines.append(f"Distributions {turn.over}; the candidates hold at least {coverage:.1%} of each model's probability.")
    if turn.alpha is not None:
        lines.append(f"{vittle_label} answers at alpha {turn.alpha:.2f} (trained at {training_alpha}); the tabs below show it at "
                     "its training alpha.")
    return "  \n".join(lines)


def sweep_spec(sweep: Sweep) -> dict[str, Any]:
    """Two stacked panels over severity 0 (clean) .. 5: the clean answer's probability (0..1)
    and the layer-l cosine distance from the clean query, one line per model."""
    data = []
    for (label, points), colour in zip(sweep.points.items(), MODEL_COLOURS):
        x = [0, *(p.severity for p in points)]
        common = {"type": "scatter", "mode": "lines+markers", "x": x, "line": {"color": colour}, "legendgroup": label}
        data.append({**common, "name": label, "y": [sweep.clean_probs[label], *(p.clean_answer_prob for p in points)],
                     "hovertemplate": "severity %{x}: %{y:.3f}<extra>" + label + "</extra>"})
        data.append({**common, "name": label, "showlegend": False, "xaxis": "x2", "yaxis": "y2",
                     "y": [0.0, *(p.cosine_distance for p in points)],
                     "hovertemplate": "severity %{x}: %{y:.4f}<extra>" + label + "</extra>"})
    top = max([p.cosine_distance for points in sweep.points.values() for p in points] + [1e-3])
    ticks = {"tickvals": list(range(6)), "ticktext": ["clean", "1", "2", "3", "4", "5"], "range": [-0.2, 5.2]}
    layout = {"title": {"text": f"Severity sweep:<br>{sweep.setting}", "font": {"size": 14}}, "height": 480, "autosize": True,
              "margin": {"l": 10, "r": 10, "t": 60, "b": 40}, "legend": {"orientation": "h", "y": -0.12},
              "xaxis": {**ticks, "anchor": "y", "showticklabels": False},
              "yaxis": {"domain": [0.56, 1.0], "range": [0, 1.05], "automargin": True,
                        "title": {"text": "P(clean answer)"}},
              "xaxis2": {**ticks, "anchor": "y2", "matches": "x", "title": {"text": "severity"}},
              "yaxis2": {"domain": [0.0, 0.44], "range": [0, top * 1.15], "automargin": True,
                         "title": {"text": "cosine distance"}}}
    return {"data": data, "layout": layout}


def sweep_markdown(sweep: Sweep) -> str:
    lines = [f"**Sweep** ({sweep.setting}; {sweep.seconds:.1f} s): per severity, the probability of each model's clean answer "
             "and the cosine distance of its layer-l state from the clean query's."]
    for label, points in sweep.points.items():
        cells = ", ".join(f"{p.severity}: {p.clean_answer_prob:.2f} / {p.cosine_distance:.3f}" for p in points)
        lines.append(f"{label} (clean answer '{sweep.clean_answers[label]}', {sweep.clean_probs[label]:.2f} clean): {cells}")
    lines.append(f"Distributions {sweep.over}." + (f" Vittle at alpha {sweep.alpha:.2f}." if sweep.alpha is not None else ""))
    lines += [f"_Note: {note}_" for note in sweep.notes]
    return "  \n".join(lines)
