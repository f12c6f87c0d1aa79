"""The robustness report: accuracy, embedding maps, cosine shifts, JSD, EMID and posterior
diagnostics of several models on one test set, as one offline HTML page and one JSON.

    config = ReportConfig(models={"baseline": "PATH", "vittle": "PATH"}, out=Path("runs/report"),
                          specs="contrast:2,char_typo:1", limit_images=50)
    report = build_report(config)          # writes out/report.html and out/report.json

Models are loaded one at a time (only one is in memory). Each is evaluated by exact match
(`analysis.evaluate.evaluate`, whose generated answers are kept for EMID), embedded at its
bottleneck layer (`analysis.representations.extract`, cached on disk) and, with a bottleneck,
diagnosed (`posterior_diagnostics`, `Assistant.probe` of the first clean query). Then one
projection is fitted on every model's clean and perturbed embeddings of the map specs, so all
maps share their axes (`analysis.shift.ShiftAnalysis`, which the app uses too); JSD and cosine distances come from it; EMID is the CLUB
MI between query embeddings (`analysis.embedders.QueryEmbedder`: image + question) and
answer embeddings (MiniLM of the model's generated answer), clean minus perturbed. The
embedders differ from the EMID paper's CLIP / XLM-R: see `analysis.embedders`.
"""

from analysis.report.build import CATEGORICAL_MAX_CLASSES, build_report
from analysis.report.config import ReportConfig
from analysis.report.render import SECTIONS, render_html
from analysis.report.result import FORMAT_VERSION, ModelInfo, Report, diagnosis_notes, severity_table, to_jsonable

__all__ = ["CATEGORICAL_MAX_CLASSES", "FORMAT_VERSION", "SECTIONS", "ModelInfo", "Report", "ReportConfig", "build_report",
           "diagnosis_notes", "render_html", "severity_table", "to_jsonable"]
