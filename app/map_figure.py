"""The embedding map and the distance histogram of the app, built to be explored.

    view = ReferenceView(questions, kinds, expected, answers, thumbnails)
    reference_map_spec(shift, "frost:3", labels, placed, view, "pca")    # the map's figure dict
    distance_histogram_spec(distances, query_distance, view.questions, "frost:3")

The map has one trace per (model, clean or perturbed, question kind), so the page's script
(`vittle.app.map_script`) can filter kinds and hide or show the segments that join each clean
point to its perturbed twin (`meta` names each trace's part); each point carries its reference
index (`customdata`, for loading it into the inputs) and its query in the hover text. The
images' thumbnails travel once, in `layout.meta`. The histogram's bars are computed here, on
bins shared by the models, so that hovering a bar lists the queries in it.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vittle.app.figures import CLEAN_COLOUR, MODEL_COLOURS, PERTURBED_COLOUR
from vittle.app.query import setting_name

KINDS = {"color": ("colour", "circle"), "shape": ("shape", "square"), "yes/no": ("yes/no", "diamond")}
"""easy-vqa's question kinds: (the page's name, the marker symbol)."""
QUERY_COLOUR, QUERY_OUTLINE = "#ffbf00", "#000000"
LISTED = 12
"""Queries a histogram bar's hover lists by name (the rest are counted)."""


@dataclass
class ReferenceView:
    """What the map tells about each reference query (row i of every list is query i)."""

    questions: list[str]
    kinds: list[str]
    """"color", "shape" or "yes/no" (another kind is shown as its own group)."""
    expected: list[str]
    """easy-vqa's answer."""
    answers: dict[str, dict[str, list[str]]]
    """model label -> "clean" / "perturbed" -> its answers."""
    thumbnails: dict[str, list[str]]
    """"clean" / "perturbed" -> data URIs of the images ("" where there is none)."""
    answers_pending: bool = False
    """Some model's answers are left out: they are computed when the server is quiet (`ReferenceSets.view`)."""


def _hover(view: ReferenceView, index: int, model: str, role: str) -> str:
    lines = [f"<b>#{index}: {html.escape(view.questions[index])}</b>",
             f"{KINDS.get(view.kinds[index], (view.kinds[index],))[0]} question, expected '{html.escape(view.expected[index])}'"]
    for label, per_role in view.answers.items():
        lines.append(f"{html.escape(label)}: {html.escape(per_role['clean'][index])} → {html.escape(per_role['perturbed'][index])}")
    if view.answers_pending:
        lines.append("<i>the models' answers: not computed yet (the server was busy); they show on a later run</i>")
    lines.append(f"<i>{html.escape(model)}, {role}; click to load this query</i>")
    return "<br>".join(lines)


def _span(low_high: tuple[float, float], values: list[float]) -> list[float]:
    low, high = min([low_high[0], *values]), max([low_high[1], *values])
    if (low, high) == tuple(low_high):
        return [low, high]
    return [low - 0.05 * (high - low), high + 0.05 * (high - low)]


def reference_map_spec(shift: Any, spec: str, labels: Mapping[str, str], placed: Mapping[str, tuple[Any, Any]],
                       view: ReferenceView, method: str) -> dict[str, Any]:
    """One panel per model (`labels`: model name -> label) on the axes they share: the reference
    queries clean and under `spec`, by question kind, the join segments (hidden until the page
    shows them) and the user's query (`placed[label]` = (clean xy, perturbed xy)): a star, and a
    cross drawn over it, larger and outlined, so both show when they overlap."""
    setting = setting_name(spec)
    (x_range, y_range) = shift.axis_ranges()
    points = [np.asarray(xy, dtype=float).reshape(-1) for pair in placed.values() for xy in pair]
    x_range, y_range = _span(x_range, [p[0] for p in points]), _span(y_range, [p[1] for p in points])
    width = 0.95 / len(labels)
    layout: dict[str, Any] = {"annotations": []}
    data: list[dict[str, Any]] = []
    kinds = [k for k in KINDS if k in view.kinds] + [k for k in dict.fromkeys(view.kinds) if k not in KINDS]  # circles first
    for col, (name, label) in enumerate(labels.items()):
        suffix = "" if col == 0 else str(col + 1)
        axes = {"xaxis": f"x{suffix}", "yaxis": f"y{suffix}"}
        x0 = col * (width + 0.05)
        layout[f"xaxis{suffix}"] = {"domain": [x0, x0 + width], "anchor": f"y{suffix}", "range": x_range,
                                    "title": {"text": f"{method.upper()} 1"}}
        layout[f"yaxis{suffix}"] = {"domain": [0, 1], "anchor": f"x{suffix}", "range": y_range,
                                    **({"title": {"text": f"{method.upper()} 2"}} if col == 0 else {})}
        layout["annotations"].append({"text": html.escape(label), "x": x0 + width / 2, "y": 1, "xref": "paper", "yref": "paper",
                                      "xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": 14}})
        clean, shifted = shift.coordinates[name]["clean"], shift.coordinates[name][spec]
        for kind in kinds:
            rows = [i for i, k in enumerate(view.kinds) if k == kind]
            segments_x = [v for i in rows for v in (clean[i, 0], shifted[i, 0], None)]
            segments_y = [v for i in rows for v in (clean[i, 1], shifted[i, 1], None)]
            data.append({"type": "scatter", "mode": "lines", "x": segments_x, "y": segments_y, "visible": False,
                         "line": {"color": "rgba(90, 90, 90, 0.45)", "width": 1}, "hoverinfo": "skip", "showlegend": False,
                         "meta": {"part": "join", "kind": kind}, **axes})
            for role, xy, colour in (("clean", clean, CLEAN_COLOUR), ("perturbed", shifted, PERTURBED_COLOUR)):
                first = col == 0 and kind == kinds[0]
                data.append({"type": "scatter", "mode": "markers", "x": xy[rows, 0].tolist(), "y": xy[rows, 1].tolist(),
                             "customdata": rows, "hovertext": [_hover(view, i, label, role if role == "clean" else setting) for i in rows],
                             "hovertemplate": "%{hovertext}<extra></extra>", "name": "clean" if role == "clean" else setting,
                             "legendgroup": role, "showlegend": first,
                             "marker": {"color": colour, "size": 7, "opacity": 0.7, "symbol": KINDS.get(kind, (kind, "circle"))[1]},
                             "meta": {"part": "points", "kind": kind, "role": role}, **axes})
        if label in placed:
            (cx, cy), (px, py) = (np.asarray(xy, dtype=float).reshape(-1) for xy in placed[label])
            data.append({"type": "scatter", "mode": "markers", "x": [cx], "y": [cy], "name": "your query: clean",
                         "legendgroup": "query-clean", "showlegend": col == 0, "meta": {"part": "query"},
                         "marker": {"color": QUERY_COLOUR, "size": 20, "symbol": "star", "line": {"color": QUERY_OUTLINE, "width": 1}},
                         "hovertemplate": f"your query, clean<br>{html.escape(label)}<extra></extra>", **axes})
            data.append({"type": "scatter", "mode": "lines", "x": [cx, px], "y": [cy, py], "showlegend": False, "hoverinfo": "skip",
                         "line": {"color": QUERY_OUTLINE, "dash": "dot", "width": 1.5}, "meta": {"part": "query"}, **axes})
            data.append({"type": "scatter", "mode": "markers", "x": [px], "y": [py], "name": f"your query: {setting}",
                         "legendgroup": "query-perturbed", "showlegend": col == 0, "meta": {"part": "query"},
                         "marker": {"color": PERTURBED_COLOUR, "size": 13, "symbol": "x", "line": {"color": "#ffffff", "width": 1.5}},
                         "hovertemplate": f"your query, {html.escape(setting)}<br>{html.escape(label)}<extra></extra>", **axes})
    layout.update(title={"text": f"Layer-l last-token states:<br>reference queries, clean vs {html.escape(setting)} ({method.upper()})",
                         "font": {"size": 14}},
                  height=500, autosize=True, hovermode="closest", legend={"orientation": "h", "y": -0.18},
                  margin={"l": 10, "r": 10, "t": 80, "b": 40},
                  meta={"thumbnails": view.thumbnails, "setting": setting})
    return {"data": data, "layout": layout}


def distance_histogram_spec(distances: Mapping[str, Any], query_distance: Mapping[str, float], questions: Sequence[str],
                            spec: str, bins: int = 20) -> dict[str, Any]:
    """Grouped bars of each model's clean-vs-perturbed cosine distances over the reference queries
    on shared bins (`distances[label]`: (n,)); hovering a bar lists its queries. Your query's
    distance per model is a dashed line named in the legend (labels that cannot collide)."""
    arrays = {label: np.asarray(values, dtype=float).reshape(-1) for label, values in distances.items()}
    joined = np.concatenate([*arrays.values(), np.asarray(list(query_distance.values()), dtype=float)])
    edges = np.histogram_bin_edges(joined[np.isfinite(joined)], bins=bins)
    data: list[dict[str, Any]] = []
    top = 1
    bar = float(edges[1] - edges[0]) * 0.9 / max(1, len(arrays))  # side by side within a bin: no bar hides or tints another
    for index, ((label, values), colour) in enumerate(zip(arrays.items(), MODEL_COLOURS)):
        counts, _ = np.histogram(values, bins=edges)
        top = max(top, int(counts.max()) if counts.size else 0)
        where = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
        texts = []
        for b in range(len(edges) - 1):
            members = sorted(np.flatnonzero(where == b).tolist(), key=lambda i: values[i])
            listed = [f"#{i} {html.escape(questions[i])} ({values[i]:.4f})" for i in members[:LISTED]]
            more = [f"… and {len(members) - LISTED} more"] if len(members) > LISTED else []
            texts.append("<br>".join([f"<b>{html.escape(label)}: {len(members)} queries, {edges[b]:.4f}–{edges[b + 1]:.4f}</b>",
                                      *listed, *more]))
        data.append({"type": "bar", "x": ((edges[:-1] + edges[1:]) / 2).tolist(), "y": counts.tolist(), "width": bar,
                     "offset": -0.45 * float(edges[1] - edges[0]) + index * bar,
                     "name": f"{html.escape(label)} (mean {values.mean():.4f})", "marker": {"color": colour}, "hovertext": texts,
                     "hovertemplate": "%{hovertext}<extra></extra>", "meta": {"part": "bars"}})
    for (label, value), colour in zip(query_distance.items(), MODEL_COLOURS):
        data.append({"type": "scatter", "mode": "lines", "x": [value, value], "y": [0, top * 1.08], "name": f"your query, {html.escape(label)}: {value:.4f}",
                     "line": {"color": colour, "dash": "dash", "width": 2}, "hovertemplate": f"your query, {html.escape(label)}: {value:.4f}<extra></extra>"})
    count = len(next(iter(arrays.values()))) if arrays else 0
    layout = {"title": {"text": f"Cosine distance, clean vs {html.escape(setting_name(spec))},<br>over {count} reference queries",
                        "font": {"size": 14}},
              "barmode": "overlay", "height": 440, "autosize": True, "hovermode": "closest",
              "xaxis": {"title": {"text": "cosine distance"}}, "yaxis": {"title": {"text": "queries"}, "range": [0, top * 1.12]},
              "legend": {"orientation": "h", "y": -0.22}, "margin": {"l": 10, "r": 10, "t": 70, "b": 40}}
    return {"data": data, "layout": layout}
