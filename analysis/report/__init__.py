"""The robustness report: accuracy, embedding maps, cosine shifts, JSD, EMID and posterior
diagnostics of several models on one test set, as one offline HTML page and one JSON.

    config = ReportConfig(models={"baseline": "PATH", "vittle": "PATH"}, out=Path("runs/report"),
                          specs="contrast:2,char_typo:1", limit_images=50)
    report = build_report(config)          # writes out/report.html and out/report.json

Models are loaded one at a time (only one is in memory). Each is evaluated by exact match
(`vittle.analysis.evaluate.evaluate`, whose generated answers are kept for EMID), embedded at its
bottleneck layer (`vittle.analysis.representations.extract`, cached on disk) and, with a bottleneck,
diagnosed (`posterior_diagnostics`, `Assistant.probe` of the first clean query). Then one
projection is fitted on every model's clean and perturbed embeddings of the map specs, so all
maps share their axes (`vittle.analysis.shift.ShiftAnalysis`, which the app uses too); JSD and cosine distances come from it; EMID is the CLUB
MI between query embeddings (`vittle.analysis.embedders.QueryEmbedder`: image + question) and
answer embeddings (MiniLM of the model's generated answer), clean minus perturbed. The
embedders differ from the EMID paper's CLIP / XLM-R: see `vittle.analysis.embedders`.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {  # loaded on first use: `vittle analyze --help` needs the config only, not torch
    "CATEGORICAL_MAX_CLASSES": "build", "build_report": "build", "ReportConfig": "config", "SECTIONS": "render",
    "render_html": "render", "FORMAT_VERSION": "result", "ModelInfo": "result", "Report": "result",
    "diagnosis_notes": "result", "severity_table": "result", "to_jsonable": "result",
}
__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
