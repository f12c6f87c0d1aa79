"""Plotly figures shared by the lab, the report and the app. Importing plotly is deferred
to the first call, so importing this module is cheap.

PNG export uses kaleido with the system Chromium (BROWSER_PATH, default /usr/bin/chromium);
HTML files embed plotly.js, so they open offline.

Long file: every figure of the lab, the report and the app, so they share colours, layouts and
the deferred plotly import; each function is one figure.
"""

from __future__ import annotations

import html
import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PALETTE = {"baseline": "#7f7f7f", "vittle-f": "#1f77b4", "vittle-l": "#d62728"}
_EXTRA_COLOURS = ["#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#1f77b4", "#d62728", "#7f7f7f", "#aec7e8", "#ffbb78"]


def colour_for(name: str, index: int = 0) -> str:
    return PALETTE.get(name, _EXTRA_COLOURS[index % len(_EXTRA_COLOURS)])


def severity_curves(curves: Mapping[str, Mapping[str, Mapping[int, tuple[float, float]]]], clean: Mapping[str, tuple[float, float]] | None = None,
                    title: str = "Accuracy under visual corruptions", columns: int = 3) -> Any:
    """Accuracy-vs-severity, one panel per corruption (the paper's Figure 5 shape).

    `curves[corruption][model]` maps severity (1..5) to (mean, std); `clean[model]` (mean,
    std) is drawn at severity 0. Shaded bands are +-1 std over seeds."""
    import plotly.graph_objects as go  # heavy
    from plotly.subplots import make_subplots  # heavy

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
    import plotly.graph_objects as go  # heavy

    conditions = list(values)
    models = list(dict.fromkeys(m for per in values.values() for m in per))
    fig = go.Figure()
    for index, model in enumerate(models):
        fig.add_trace(go.Bar(name=model, x=conditions, y=[values[c].get(model, (None, None))[0] for c in conditions],
                             error_y={"type": "data", "array": [values[c].get(model, (0, 0))[1] for c in conditions]},
                             marker_color=colour_for(model, index)))
    fig.update_layout(title=title, barmode="group", template="plotly_white", yaxis_title=yaxis, height=420, width=1100)
    return fig


def interval_chart(intervals: Mapping[str, Mapping[str, tuple[float, float, float]]], title: str,
                   xaxis: str = "difference (points)") -> Any:
    """Paired differences with their intervals: `intervals[comparison][condition]` =
    (mean, low, high); one row per condition, one marker colour per comparison, a line at 0."""
    import plotly.graph_objects as go  # heavy

    fig = go.Figure()
    conditions = list(dict.fromkeys(c for per in intervals.values() for c in per))
    used: set[str] = set()
    for index, (name, per) in enumerate(intervals.items()):
        shown = [c for c in conditions if c in per]
        means = [per[c][0] for c in shown]
        colour = colour_for(name, index)
        if colour in used:  # every comparison its own colour
            colour = next((c for c in _EXTRA_COLOURS if c not in used), colour)
        used.add(colour)
        fig.add_trace(go.Scatter(
            x=means, y=shown, mode="markers", name=name, marker={"color": colour, "size": 9},
            error_x={"type": "data", "symmetric": False, "array": [per[c][2] - per[c][0] for c in shown],
                     "arrayminus": [per[c][0] - per[c][1] for c in shown]},
            hovertemplate=f"{name}<br>%{{y}}<br>%{{x:+.2f}}<extra></extra>"))
    fig.add_vline(x=0, line={"color": "#555", "dash": "dash"})
    fig.update_layout(title=title, template="plotly_white", xaxis_title=xaxis, height=120 + 45 * len(conditions), width=900,
                      yaxis={"autorange": "reversed"}, scattermode="group")
    return fig


def forest_spec(rows: Mapping[str, Mapping[str, tuple[float, float, float]]], groups: Sequence[str], title: str,
                xaxis: str = "minus the baseline (points)", columns: int | None = None) -> dict[str, Any]:
    """A forest plot as a figure dict: one panel per group, `columns` side by side (default: all in
    one row; 1 stacks them, for a narrow screen), a row per arm in each, its mean with its interval,
    `rows[arm][group]` = (mean, low, high), a line at 0. Arms read top to bottom in the given
    order; a missing group leaves its cell empty."""
    arms = list(rows)
    columns = columns or len(groups)
    grid = math.ceil(len(groups) / columns)
    layout, axes = _grid_layout(grid, columns, list(groups), 0.03 if columns > 1 else 0.0, 0.07 if grid > 1 else 0.0)
    data = []
    for index, group in enumerate(groups):
        shown = [arm for arm in arms if group in rows[arm]]
        suffix = axes[index]
        data.append({"type": "scatter", "x": [rows[a][group][0] for a in shown], "y": shown, "mode": "markers", "showlegend": False,
                     "xaxis": f"x{suffix}", "yaxis": f"y{suffix}",
                     "marker": {"color": [colour_for(a, arms.index(a)) for a in shown], "size": 9},
                     "error_x": {"type": "data", "symmetric": False, "array": [rows[a][group][2] - rows[a][group][0] for a in shown],
                                 "arrayminus": [rows[a][group][0] - rows[a][group][1] for a in shown], "thickness": 1.5},
                     "hovertemplate": f"%{{y}}<br>{html.escape(group)}: %{{x:+.1f}} points<extra></extra>"})
    for index, suffix in enumerate(axes[: len(groups)]):
        first_column, last_row = index % columns == 0, index // columns == grid - 1
        layout[f"xaxis{suffix}"] = {**layout.get(f"xaxis{suffix}", {}), "zeroline": True, "zerolinecolor": "#555", "zerolinewidth": 1.5,
                                    "title": {"text": xaxis if last_row and first_column else ""}}
        layout[f"yaxis{suffix}"] = {**layout.get(f"yaxis{suffix}", {}), "categoryorder": "array", "categoryarray": arms[::-1],
                                    "showticklabels": first_column, "automargin": True}
    panel_height = 40 + 34 * len(arms)
    layout.update({"title": {"text": title}, "template": "plotly_white", "height": 120 + grid * panel_height + 40 * (grid - 1),
                   "width": 1100 if columns > 1 else 520, "margin": {"l": 10, "r": 10, "t": 80, "b": 50}})
    return {"data": data, "layout": layout}


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


_CLEAN_COLOUR = "#1f77b4"
_QUERY_COLOUR = "#000000"
_SHIFT_COLOURS = ["#d62728", "#ff7f0e", "#9467bd", "#2ca02c", "#8c564b", "#e377c2", "#17becf"]


def _as_xy(point: Any, name: str) -> tuple[float, float]:
    array = np.asarray(point, dtype=float).reshape(-1)
    if array.shape != (2,):
        raise ValueError(f"{name} must be one 2-D point (shape (2,) or (1, 2)), got {np.shape(point)}")
    return float(array[0]), float(array[1])


def _span(ranges: tuple[float, float], values: list[float]) -> tuple[float, float]:
    low, high = min([ranges[0], *values]), max([ranges[1], *values])
    return (low, high) if (low, high) == ranges else (low - 0.05 * (high - low), high + 0.05 * (high - low))


def figure(spec: Mapping[str, Any] | None) -> Any:
    """A plotly Figure (plotly_white) from a figure dict made by one of the `*_spec` builders;
    None stays None."""
    if spec is None:
        return None
    import plotly.graph_objects as go  # heavy

    layout = {k: v for k, v in spec["layout"].items() if k != "template"}
    return go.Figure({"data": spec["data"], "layout": layout}).update_layout(template="plotly_white")


_THEME: dict[str, Any] = {}


def figure_json(spec: Mapping[str, Any] | None) -> str | None:
    """A figure dict as plotly JSON with the plotly_white look, without building a Figure:
    plotly's validation costs tens of milliseconds per figure, the dicts microseconds (the app
    draws four figures per turn for every user)."""
    if spec is None:
        return None
    if not _THEME:
        import plotly.io as pio  # heavy

        _THEME["layout"] = pio.templates["plotly_white"].layout.to_plotly_json()
    return json.dumps({"data": spec["data"], "layout": {**spec["layout"], "template": _THEME}})


def _grid_layout(rows: int, cols: int, titles: Sequence[str], h_spacing: float, v_spacing: float) -> tuple[dict[str, Any], list[str]]:
    """Axes and subplot titles of a rows x cols grid (what `make_subplots` lays out), and each
    cell's axis suffix ("", "2", ...) in row-major order."""
    width = (1 - h_spacing * (cols - 1)) / cols
    height = (1 - v_spacing * (rows - 1)) / rows
    layout: dict[str, Any] = {"annotations": [], "shapes": []}
    suffixes = []
    for cell in range(rows * cols):
        row, col = divmod(cell, cols)
        suffix = "" if cell == 0 else str(cell + 1)
        x0 = col * (width + h_spacing)
        y1 = 1 - row * (height + v_spacing)
        layout[f"xaxis{suffix}"] = {"domain": [max(0.0, round(x0, 9)), min(1.0, round(x0 + width, 9))], "anchor": f"y{suffix}"}
        layout[f"yaxis{suffix}"] = {"domain": [max(0.0, round(y1 - height, 9)), min(1.0, round(y1, 9))], "anchor": f"x{suffix}"}
        if cell < len(titles):
            layout["annotations"].append({"text": titles[cell], "x": x0 + width / 2, "y": y1, "xref": "paper", "yref": "paper",
                                          "xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": 16}})
        suffixes.append(suffix)
    return layout, suffixes


def embedding_scatter_spec(projection: Any, points: Mapping[str, Mapping[str, np.ndarray]],
                           query: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                           title: str = "Layer-l query embeddings, clean vs perturbed") -> dict[str, Any]:
    """The figure dict of `embedding_scatter`."""
    models = list(points)
    if not models:
        raise ValueError("no models to plot")
    unknown = sorted(set(query or {}) - set(models))
    if unknown:
        raise ValueError(f"query has models {unknown} that are not in points {models}")
    (x_range, y_range) = projection.axis_ranges()
    pairs = {m: (_as_xy(c, f"query[{m!r}][0]"), _as_xy(p, f"query[{m!r}][1]")) for m, (c, p) in (query or {}).items()}
    x_range = _span(x_range, [xy[0] for pair in pairs.values() for xy in pair])
    y_range = _span(y_range, [xy[1] for pair in pairs.values() for xy in pair])
    layout, suffixes = _grid_layout(1, len(models), models, 0.05, 0.0)
    shifted = list(dict.fromkeys(role for per_model in points.values() for role in per_model if role != "clean"))
    data: list[dict[str, Any]] = []
    method = projection.method or "map"
    for col, (model, suffix) in enumerate(zip(models, suffixes)):
        axes = {"xaxis": f"x{suffix}", "yaxis": f"y{suffix}"}
        for role, xy in points[model].items():
            xy = np.asarray(xy, dtype=float)
            if xy.ndim != 2 or xy.shape[1] != 2:
                raise ValueError(f"points[{model!r}][{role!r}] must have shape (n, 2), got {xy.shape}")
            colour = _CLEAN_COLOUR if role == "clean" else _SHIFT_COLOURS[shifted.index(role) % len(_SHIFT_COLOURS)]
            data.append({"type": "scatter", "x": xy[:, 0].tolist(), "y": xy[:, 1].tolist(), "mode": "markers", "name": role,
                         "legendgroup": role, "showlegend": col == 0, "marker": {"color": colour, "size": 5, "opacity": 0.6},
                         "hovertemplate": f"{model}<br>{role}<br>(%{{x:.2f}}, %{{y:.2f}})<extra></extra>", **axes})
        if model in pairs:
            (cx, cy), (px, py) = pairs[model]
            data.append({"type": "scatter", "x": [cx], "y": [cy], "mode": "markers", "name": "query: clean",
                         "legendgroup": "query-clean", "showlegend": col == 0,
                         "marker": {"color": _QUERY_COLOUR, "size": 13, "symbol": "star"}, **axes})
            data.append({"type": "scatter", "x": [cx, px], "y": [cy, py], "mode": "lines+markers", "name": "query: perturbed",
                         "legendgroup": "query-perturbed", "showlegend": col == 0, "line": {"color": _QUERY_COLOUR, "dash": "dot"},
                         "marker": {"color": _QUERY_COLOUR, "size": [0, 12], "symbol": "x"}, **axes})
        layout[f"xaxis{suffix}"].update(range=list(x_range), title={"text": f"{method} 1"})
        layout[f"yaxis{suffix}"].update(range=list(y_range), **({"title": {"text": f"{method} 2"}} if col == 0 else {}))
    layout.update(title={"text": title}, height=460, width=max(520, 440 * len(models)), legend={"orientation": "h", "y": -0.15})
    return {"data": data, "layout": layout}


def embedding_scatter(projection: Any, points: Mapping[str, Mapping[str, np.ndarray]],
                      query: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                      title: str = "Layer-l query embeddings, clean vs perturbed") -> Any:
    """One panel per model of 2-D embedding coordinates on the same axes (the paper's Figure 8).

    `points[model]` maps "clean" and each perturbation spec to (n, 2) coordinates from
    `projection` (one trace each, legend names "clean" / the spec). `query[model]` = (clean
    xy, perturbed xy) adds the current query's two positions joined by a line (two traces:
    "query: clean" and "query: perturbed"). Axis ranges are `projection.axis_ranges()`,
    widened (for every panel alike) only if a query point falls outside them."""
    return figure(embedding_scatter_spec(projection, points, query, title))


def cosine_histograms_spec(distances: Mapping[str, Mapping[str, np.ndarray]], marker: Mapping[str, float] | None = None,
                           title: str = "Cosine distance between clean and perturbed embeddings", columns: int = 3,
                           bins: int = 30) -> dict[str, Any]:
    """The figure dict of `cosine_histograms`."""
    specs = list(distances)
    if not specs:
        raise ValueError("no distances to plot")
    columns = min(columns, len(specs))
    rows = (len(specs) + columns - 1) // columns
    layout, suffixes = _grid_layout(rows, columns, specs, 0.06, 0.12)
    models = list(dict.fromkeys(m for per_model in distances.values() for m in per_model))
    data: list[dict[str, Any]] = []
    for panel, spec in enumerate(specs):
        suffix = suffixes[panel]
        for index, model in enumerate(models):
            if model not in distances[spec]:
                continue
            values = np.asarray(distances[spec][model], dtype=float).reshape(-1)
            if values.size == 0:
                raise ValueError(f"distances[{spec!r}][{model!r}] is empty")
            data.append({"type": "histogram", "x": values.tolist(), "name": f"{model} (mean {values.mean():.3f})", "legendgroup": model,
                         "marker": {"color": colour_for(model, index)}, "opacity": 0.6, "nbinsx": bins,
                         "xaxis": f"x{suffix}", "yaxis": f"y{suffix}"})
        for index, (model, value) in enumerate((marker or {}).items()):
            colour = colour_for(model, models.index(model) if model in models else index)
            layout["shapes"].append({"type": "line", "x0": float(value), "x1": float(value), "xref": f"x{suffix}", "y0": 0, "y1": 1,
                                     "yref": f"y{suffix} domain", "line": {"color": colour, "dash": "dash", "width": 2}})
            layout["annotations"].append({"text": f"query ({model})", "x": float(value), "xref": f"x{suffix}", "y": 1,
                                          "yref": f"y{suffix} domain", "showarrow": False, "xanchor": "center", "yanchor": "bottom"})
    for panel, suffix in enumerate(suffixes):
        layout[f"xaxis{suffix}"]["title"] = {"text": "cosine distance"}
        if panel % columns == 0:
            layout[f"yaxis{suffix}"]["title"] = {"text": "samples"}
    layout.update(title={"text": title}, barmode="overlay", height=300 * rows + 120, width=max(520, 380 * columns),
                  legend={"orientation": "h", "y": -0.15})
    return {"data": data, "layout": layout}


def cosine_histograms(distances: Mapping[str, Mapping[str, np.ndarray]], marker: Mapping[str, float] | None = None,
                      title: str = "Cosine distance between clean and perturbed embeddings", columns: int = 3,
                      bins: int = 30) -> Any:
    """Histograms of row-paired clean-vs-perturbed cosine distances (in [0, 2]), one panel per
    spec, one trace per model: `distances[spec][model]` is (n,). Legend names carry each
    model's mean, e.g. "baseline (mean 0.123)". `marker[model]` draws a vertical line at the
    current query's distance in every panel (meant for a one-spec figure)."""
    return figure(cosine_histograms_spec(distances, marker, title, columns, bins))


def variance_heatmap_spec(values: np.ndarray, grid: tuple[int, int], title: str = "Posterior variance per image token",
                          label: str = "variance", value_range: tuple[float, float] | None = None,
                          marks: Mapping[float, str] | None = None) -> dict[str, Any]:
    """The figure dict of `variance_heatmap`. `value_range` fixes the colour scale (else it
    spans the values: a near-constant map then looks patterned); `marks` labels values on the
    colour bar, e.g. {1.0: "prior"}."""
    rows, cols = grid
    values = np.asarray(values, dtype=float).reshape(-1)
    if rows < 1 or cols < 1 or values.size != rows * cols:
        raise ValueError(f"{values.size} values do not fill a grid of {rows} x {cols} = {rows * cols} tokens")
    colorbar: dict[str, Any] = {"title": {"text": label}}
    if marks:
        colorbar.update(tickvals=list(marks), ticktext=list(marks.values()))
    data = [{"type": "heatmap", "z": values.reshape(rows, cols).tolist(), "colorscale": "Viridis", "colorbar": colorbar,
             "hovertemplate": f"row %{{y}}, col %{{x}}<br>{label} %{{z:.4g}}<extra></extra>"}]
    if value_range is not None:
        data[0].update(zmin=float(value_range[0]), zmax=float(value_range[1]))
    layout = {"yaxis": {"autorange": "reversed", "scaleanchor": "x", "constrain": "domain", "title": {"text": "row"}},
              "xaxis": {"constrain": "domain", "title": {"text": "column"}}, "title": {"text": title}, "height": 420, "width": 480}
    return {"data": data, "layout": layout}


def variance_heatmap(values: np.ndarray, grid: tuple[int, int], title: str = "Posterior variance per image token",
                     label: str = "variance") -> Any:
    """Per-image-token values (e.g. posterior variance or KL, mean over dims) as a
    (rows, cols) heatmap, read row-major like `ProbeResult.grid`; row 0 is drawn at the top."""
    return figure(variance_heatmap_spec(values, grid, title, label))


_BPE_MARKERS = {"Ġ": " ", "▁": " ", "Ċ": "\n", "ĉ": "\t"}


def _token_text(token: str) -> str:
    return "".join(_BPE_MARKERS.get(char, char) for char in token)


def token_colours_html(tokens: Sequence[str], values: np.ndarray, label: str = "posterior variance",
                       colour: tuple[int, int, int] = (214, 39, 40), value_range: tuple[float, float] | None = None) -> str:
    """Text tokens as HTML spans shaded by value (low -> clear, high -> full `colour`; the
    values' own min and max unless `value_range` fixes them), each with a title showing
    `label` and the number. Byte-level BPE / SentencePiece markers become spaces and newlines;
    tokens are HTML-escaped. A self-contained fragment (inline styles)."""
    values = np.asarray(values, dtype=float).reshape(-1)
    if len(tokens) != values.size:
        raise ValueError(f"{len(tokens)} tokens but {values.size} values")
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if value_range is not None:
        low, high = float(value_range[0]), float(value_range[1])
    red, green, blue = colour
    spans = []
    for token, value in zip(tokens, values):
        shade = min(1.0, max(0.0, (value - low) / (high - low))) if high > low and np.isfinite(value) else 0.0
        text = html.escape(_token_text(token))
        tip = html.escape(f"{label}: {value:.4g}", quote=True)
        spans.append(f'<span title="{tip}" style="background-color: rgba({red}, {green}, {blue}, {shade:.3f}); '
                     f'border-radius: 3px; padding: 1px 0;">{text}</span>')
    scale = html.escape(f"{label}: {low:.4g} (clear) to {high:.4g} (full colour)")
    return ('<div class="vittle-tokens" style="font-family: monospace; white-space: pre-wrap; line-height: 1.9;">'
            + "".join(spans) + f'<div style="font-size: 0.8em; color: #555; margin-top: 4px;">{scale}</div></div>')


def metric_table(rows: Mapping[str, Mapping[str, float]], title: str = "Representation metrics", digits: int = 4) -> Any:
    """A plotly table, one row per model and one column per metric (e.g. JSD, EMID); numbers
    shown to `digits` significant digits, a missing metric as an en dash."""
    import plotly.graph_objects as go  # heavy

    if not rows:
        raise ValueError("no rows for the table")
    metrics = list(dict.fromkeys(metric for per_model in rows.values() for metric in per_model))

    def cell(value: Any) -> str:
        return "\u2013" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"

    columns = [list(rows)] + [[cell(rows[model].get(metric)) for model in rows] for metric in metrics]
    fig = go.Figure(go.Table(header={"values": ["model", *metrics], "align": "left", "fill_color": "#e8e8e8"},
                             cells={"values": columns, "align": "left"}))
    fig.update_layout(title=title, height=120 + 30 * len(rows), width=max(480, 140 * (len(metrics) + 1)),
                      template="plotly_white", margin={"t": 60, "b": 10})
    return fig
