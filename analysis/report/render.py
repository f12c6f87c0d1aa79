"""The report as one self-contained HTML page (plotly.js inline once; opens offline)."""

from __future__ import annotations

import base64
import html
import io
import math
from typing import TYPE_CHECKING, Any

from PIL import Image

from vittle.analysis.plots import cosine_histograms, embedding_scatter, metric_table, severity_curves, token_colours_html, variance_heatmap
from vittle.token_grid import TokenGrid

if TYPE_CHECKING:
    from vittle.analysis.report.result import Report

SECTIONS = {
    "accuracy": "Accuracy per perturbation",
    "maps": "Layer-l embedding maps",
    "cosine": "Cosine distance between clean and perturbed embeddings",
    "metrics": "JSD and EMID",
    "diagnostics": "Posterior diagnostics",
}
"""Section id -> title, in page order."""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #eee; }
.note { background: #fff4e5; border-left: 4px solid #f0a020; padding: 0.5em 0.8em; }
.muted { color: #666; font-size: 0.9em; }
"""


class _FigureHtml:
    """Plotly figures as <div>s of one page; plotly.js is inlined with the first one only."""

    def __init__(self) -> None:
        self.included = False

    def __call__(self, fig: Any) -> str:
        div = fig.to_html(full_html=False, include_plotlyjs=not self.included, config={"displaylogo": False})
        self.included = True
        return f'<div class="figure">{div}</div>'


def _cell(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "\u2013"
    return f"{value:.{digits}g}" if isinstance(value, float) else html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]], digits: int = 4) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v, digits)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image_tag(path: Any) -> str:
    if not path:
        return ""
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    scale = 192 / max(image.size)  # small images (easy-vqa: 64 px) are enlarged, pixels kept sharp
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return f'<img alt="query image" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _accuracy_section(report: Report, figure: _FigureHtml) -> str:
    models, specs, accuracy, severity = list(report.models), report.specs, report.accuracy, report.severity()
    parts = [_table(["spec", *(f"{m} accuracy (%)" for m in models)], [[s, *(accuracy[m][s] for m in models)]
                                                                       for s in specs], digits=3)]
    if severity:
        curves = {p: {m: {lvl: (acc, 0.0) for lvl, acc in per.items()} for m, per in by_model.items()}
                  for p, by_model in severity.items()}
        clean = {m: (accuracy[m][specs[0]], 0.0) for m in models}
        parts.append(figure(severity_curves(curves, clean, title="Accuracy vs severity (one run: no error bands)")))
    return "".join(parts)


def _maps_section(report: Report, figure: _FigureHtml) -> str:
    coordinates, method = report.shift.coordinates, report.shift.method.upper()
    parts = [(f'<p class="muted">One {method} map fitted on every model\'s clean and perturbed embeddings of '
             f'{html.escape(", ".join(report.map_specs))}; all panels share their axes.</p>')]
    for spec in report.map_specs:
        points = {m: {"clean": per["clean"], spec: per[spec]} for m, per in coordinates.items()}
        parts.append(figure(embedding_scatter(report.shift, points, title=f"{spec}: layer-l query embeddings ({method})")))
    return "".join(parts)


def _cosine_section(report: Report, figure: _FigureHtml) -> str:
    distances = {s: {m: report.shift.distances[m][s] for m in report.models} for s in report.specs[1:]}
    return figure(cosine_histograms(distances))


def _metrics_section(report: Report, figure: _FigureHtml) -> str:
    models, emid, summary, shift = list(report.models), report.emid, report.summary(), report.shift.summary()
    rows = {m: {k.replace("_", " "): v for k, v in summary[m].items()} for m in models}
    parts = [figure(metric_table(rows, title="Means over the perturbed specs")),
             ("<p>JSD: matrix-based Jensen-Shannon divergence between the clean and perturbed embedding sets (nats, "
             "0 to log 2). EMID: CLUB MI(clean query; clean answer) minus MI(perturbed query; perturbed answer), in "
             "nats; lower is more robust.</p>")]
    if emid is None:
        parts.append('<p class="note">EMID was skipped.</p>')
    else:
        parts.append(f'<p class="muted">EMID embedders: query {html.escape(emid["embedders"]["query"])}, answer '
                     f'{html.escape(emid["embedders"]["answer"])} (the paper uses CLIP and XLM-R, which cannot be '
                     "loaded offline; absolute values are not comparable with the paper's, model comparisons are).</p>")
        chosen = emid.get("estimators", {})
        if any(kind == "categorical" for kind in chosen.values()):
            parts.append('<p class="muted">MI estimator per model: ' + html.escape(", ".join(f"{m}: {k}" for m, k in chosen.items()))
                         + ". Categorical (a model with few distinct answers, e.g. one-word answers): I = H(answer) minus the "
                         "held-out cross-entropy of a softmax classifier of the answer from the query embedding, a lower bound "
                         "that stays within log(number of answers); CLUB (the EMID paper's estimator, on MiniLM answer "
                         "embeddings) degenerates there.</p>")
        beyond = emid["unreliable"]
        if beyond:
            parts.append(f'<p class="note">EMID is unreliable for {html.escape(", ".join(beyond))}: an MI estimate there '
                         "exceeds log(number of distinct answers), the most the answers can carry. The answer embeddings "
                         "take only a few distinct values and CLUB's Gaussian q(answer | query) collapses onto them (see "
                         "mi_bound_* in report.json). Usable estimates need free-form, varied answers or a CLUB with a "
                         "bounded variance.</p>")
    header = ["spec", *(f"{m} {metric}" for m in models for metric in ("cosine", "JSD", "EMID"))]
    table_rows = []
    for spec in report.specs[1:]:
        row: list[Any] = [spec]
        for m in models:
            values = shift[m][spec]
            row += [values["cosine_mean"], values["jsd"], emid["values"][m][spec]["emid"] if emid else None]
        table_rows.append(row)
    parts.append(_table(header, table_rows))
    return "".join(parts)


def _diagnostics_section(report: Report, figure: _FigureHtml) -> str:
    if not report.diagnostics:
        return "<p>No model has a bottleneck: there is no posterior to diagnose.</p>"
    parts = [f'<p class="note">{html.escape(note)}</p>' for note in report.diagnosis_notes()]
    keys = ["tokens", "kl", "kl_max_dim", "active_share", "posterior_variance", "hidden_rms", "mu_rms"]
    for model, found in report.diagnostics.items():
        rows = [[modality, *(found[modality].get(k) for k in keys)] for modality in ("visual", "text") if modality in found]
        parts.append(f"<h3>{html.escape(model)}</h3>" + _table(["tokens of", *keys], rows))
        example = report.examples.get(model)
        if example is None:
            continue
        parts.append(f"<p>Example query (clean, image {html.escape(str(example['image_id']))}): "
                     f"{html.escape(example['question'])}</p>{_image_tag(example['image_path'])}")
        grid = TokenGrid.coerce(example["grid"])  # reports written before the grid's start and box: (rows, cols)
        if grid is not None and example["visual_variance"] is not None:
            parts.append(figure(variance_heatmap(grid.values(example["visual_variance"]), grid.shape,
                                                 title=f"{model}: posterior variance per image token")))
        parts.append(token_colours_html(example["text_tokens"], example["text_variance"]))
    return "".join(parts)


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page (plotly.js inline once; opens offline)."""
    figure = _FigureHtml()
    models = "".join(f"<li>{html.escape(m)}: {html.escape(str(info.path))} (layer {info.layer}, "
                     f"{'bottleneck' if info.has_bottleneck else 'no bottleneck'})</li>" for m, info in report.models.items())
    bodies = {
        "accuracy": _accuracy_section(report, figure),
        "maps": _maps_section(report, figure),
        "cosine": _cosine_section(report, figure),
        "metrics": _metrics_section(report, figure),
        "diagnostics": _diagnostics_section(report, figure),
    }
    sections = "".join(f'<h2 id="{key}">{html.escape(SECTIONS[key])}</h2>{bodies[key]}' for key in SECTIONS)
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>Vittle robustness report</title>'
            f"<style>{_STYLE}</style></head><body><h1>Vittle robustness report</h1>"
            f"<p>{html.escape(str(report.data))}: {report.n_questions} questions, {len(report.specs) - 1} "
            f"perturbed specs, seed {report.seed}, created {report.created}.</p><ul>{models}</ul>"
            f"{sections}</body></html>")
