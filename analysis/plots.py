"""Plotly figures shared by the lab, the report and the app. Importing plotly is deferred
to the first call, so importing this module is cheap.

PNG export uses kaleido with the system Chromium (BROWSER_PATH, default /usr/bin/chromium);
HTML files embed plotly.js, so they open offline.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PALETTE = {"baseline": "#7f7f7f", "vittle-f": "#1f77b4", "vittle-l": "#d62728"}
_EXTRA_COLOURS = ["#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]


def colour_for(name: str, index: int = 0) -> str:
    return PALETTE.get(name, _EXTRA_COLOURS[index % len(_EXTRA_COLOURS)])


def severity_curves(curves: Mapping[str, Mapping[str, Mapping[int, tuple[float, float]]]], clean: Mapping[str, tuple[float, float]] | None = None,
                    title: str = "Accuracy under visual corruptions", columns: int = 3) -> Any:
    """Accuracy-vs-severity, one panel per corruption (the paper's Figure 5 shape).

    `curves[corruption][model]` maps severity (1..5) to (mean, std); `clean[model]` (mean,
    std) is drawn at severity 0. Shaded bands are +-1 std over seeds."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(curves)
    if not names:
        raise ValueError("no curves to plot")
    rows = (len(names) + columns - 1) // columns
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=[n.replace("_", " ") for n in names],
                        shared_yaxes=True, horizontal_spacing=0.04, vertical_spacing=0.09)
    models = list(dict.fromkeys(m for per_model in curves.values() for m in per_model))
    for panel, corruption in enumerate(names):
        row, col = divmod(panel, columns)
        for index, model in enumerate(models):
            by_severity = curves[corruption].get(model, {})
            if not by_severity:
                continue
            xs = sorted(by_severity)
            points = [by_severity[x] for x in xs]
            if clean and model in clean:
                xs, points = [0, *xs], [clean[model], *points]
            means = [p[0] for p in points]
            stds = [p[1] for p in points]
            colour = colour_for(model, index)
            upper = [m + s for m, s in zip(means, stds)]
            lower = [m - s for m, s in zip(means, stds)]
            fig.add_trace(go.Scatter(x=xs + xs[::-1], y=upper + lower[::-1], fill="toself", fillcolor=colour, opacity=0.15,
                                     line={"width": 0}, hoverinfo="skip", showlegend=False, legendgroup=model),
                          row=row + 1, col=col + 1)
            fig.add_trace(go.Scatter(x=xs, y=means, mode="lines+markers", name=model, legendgroup=model,
                                     line={"color": colour}, showlegend=panel == 0,
                                     error_y={"type": "data", "array": stds, "visible": False},
                                     hovertemplate=f"{model}<br>severity %{{x}}<br>accuracy %{{y:.1f}}%<extra></extra>"),
                          row=row + 1, col=col + 1)
    fig.update_xaxes(tickvals=list(range(6)), title_text="severity")
    fig.update_yaxes(title_text="accuracy (%)", col=1)
    fig.update_layout(title=title, height=300 * rows + 80, width=1100, template="plotly_white",
                      legend={"orientation": "h", "y": -0.08})
    return fig


def bar_chart(values: Mapping[str, Mapping[str, tuple[float, float]]], title: str, yaxis: str = "accuracy (%)") -> Any:
    """Grouped bars: `values[condition][model]` = (mean, std)."""
    import plotly.graph_objects as go

    conditions = list(values)
    models = list(dict.fromkeys(m for per in values.values() for m in per))
    fig = go.Figure()
    for index, model in enumerate(models):
        fig.add_trace(go.Bar(name=model, x=conditions, y=[values[c].get(model, (None, None))[0] for c in conditions],
                             error_y={"type": "data", "array": [values[c].get(model, (0, 0))[1] for c in conditions]},
                             marker_color=colour_for(model, index)))
    fig.update_layout(title=title, barmode="group", template="plotly_white", yaxis_title=yaxis, height=420, width=1100)
    return fig


def save_figure(fig: Any, path_stem: str | Path, png: bool = True, scale: float = 1.0) -> list[Path]:
    """Write `stem.html` (self-contained) and, when a Chromium is available, `stem.png`.
    Returns the files written; a missing browser skips the PNG with a clear message."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    html = stem.with_suffix(".html")
    fig.write_html(html, include_plotlyjs=True, full_html=True)
    written = [html]
    if png:
        browser = os.environ.get("BROWSER_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
        if not browser:
            raise RuntimeError("PNG export needs Chromium (apt-get install chromium) or BROWSER_PATH; pass png=False to skip")
        os.environ.setdefault("BROWSER_PATH", browser)
        target = stem.with_suffix(".png")
        fig.write_image(target, scale=scale)
        written.append(target)
    return written
