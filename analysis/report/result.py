"""What `build_report` returns and `render_html` draws: one typed `Report`, stored as report.json.

    report = Report.from_json(json.loads(Path("runs/report/report.json").read_text()))
    report.accuracy["vittle"]["frost:3"]; report.shift.distances["vittle"]["frost:3"]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vittle.analysis.evaluate.result import EvalResult
from vittle.analysis.perturb import parse_spec
from vittle.analysis.shift import ShiftAnalysis

FORMAT_VERSION = 2
"""1: evaluation kept three predictions per spec; 2: every prediction (`EvalResult`)."""


@dataclass
class ModelInfo:
    path: str
    has_bottleneck: bool
    layer: int


@dataclass
class Report:
    """Every number of one report; `to_json` / `from_json` round-trip it (the fitted map is
    not stored: a report read back draws its stored coordinates)."""

    data: str
    n_questions: int
    specs: list[str]
    """"clean" first, then the shifted specs."""
    models: dict[str, ModelInfo]
    evaluation: dict[str, EvalResult]
    shift: ShiftAnalysis
    emid: dict[str, Any] | None
    """{"values": {model: {spec: {mi_clean, mi_perturbed, emid, mi_bound_*, within_bound}}},
    "unreliable", "estimators", "embedders"}; None when skipped."""
    diagnostics: dict[str, dict[str, Any]]
    """model -> `vittle.analysis.evaluate.diagnostics.posterior_diagnostics` (models with a bottleneck)."""
    examples: dict[str, dict[str, Any]]
    """model -> one clean query's posterior per token (question, image, grid, variances, KLs)."""
    limit_images: int | None = None
    seed: int = 0
    created: str = ""
    timings: dict[str, Any] = field(default_factory=dict)

    @property
    def map_specs(self) -> list[str]:
        return self.shift.map_specs

    @property
    def accuracy(self) -> dict[str, dict[str, float]]:
        """model -> spec -> accuracy (%)."""
        return {name: result.accuracies() for name, result in self.evaluation.items()}

    @property
    def answers(self) -> dict[str, dict[str, list[str]]]:
        """model -> spec -> the generated answers, in sample order."""
        return {name: {spec: result.predictions(spec) for spec in self.specs} for name, result in self.evaluation.items()}

    def severity(self) -> dict[str, dict[str, dict[int, float]]]:
        return severity_table(self.accuracy)

    def summary(self) -> dict[str, dict[str, float | None]]:
        """model -> means over the shifted specs (accuracy, cosine distance, JSD, EMID)."""
        shift = self.shift.summary()
        return {name: {"accuracy_clean": accuracy[self.specs[0]],
                       "accuracy_perturbed_mean": _mean([accuracy[s] for s in self.specs[1:]]),
                       "cosine_mean": _mean([v["cosine_mean"] for v in shift[name].values()]),
                       "jsd_mean": _mean([v["jsd"] for v in shift[name].values()]),
                       "emid_mean": _mean([v["emid"] for v in self.emid["values"][name].values()]) if self.emid else None}
                for name, accuracy in self.accuracy.items()}

    def diagnosis_notes(self) -> list[str]:
        return diagnosis_notes(self.diagnostics)

    def to_json(self) -> dict[str, Any]:
        """The report.json content (also carries the derived tables, for readers of the file)."""
        shift = self.shift.to_json()
        return to_jsonable({
            "format_version": FORMAT_VERSION, "created": self.created, "data": self.data, "limit_images": self.limit_images,
            "n_questions": self.n_questions, "seed": self.seed, "specs": self.specs, "map_specs": self.map_specs,
            "models": {name: vars(info) for name, info in self.models.items()},
            "accuracy": self.accuracy, "evaluation": {name: result.to_json() for name, result in self.evaluation.items()},
            "answers": self.answers, "severity": self.severity(), "shift": shift["summary"],
            "cosine_distances": shift["distances"],
            "projection": {"method": shift["method"], "fitted_on": ["clean", *shift["map_specs"]], "coordinates": shift["coordinates"]},
            "emid": self.emid, "diagnostics": self.diagnostics, "diagnosis_notes": self.diagnosis_notes(),
            "examples": self.examples, "summary": self.summary(), "timings": self.timings,
        })

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Report:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"report.json of format {version!r}; this version reads format {FORMAT_VERSION}: build the report again")
        shift = ShiftAnalysis.from_json({"specs": data["specs"][1:], "map_specs": data["map_specs"], "method": data["projection"]["method"],
                                         "summary": data["shift"], "coordinates": data["projection"]["coordinates"],
                                         "distances": data["cosine_distances"]})
        examples = {name: {k: (np.asarray(v) if k.endswith(("_variance", "_kl")) and v is not None else v) for k, v in example.items()}
                    for name, example in data["examples"].items()}
        return cls(data=data["data"], n_questions=data["n_questions"], specs=list(data["specs"]),
                   models={name: ModelInfo(**info) for name, info in data["models"].items()},
                   evaluation={name: EvalResult.from_json(entry) for name, entry in data["evaluation"].items()},
                   shift=shift, emid=data["emid"], diagnostics=data["diagnostics"], examples=examples,
                   limit_images=data.get("limit_images"), seed=data.get("seed", 0), created=data.get("created", ""),
                   timings=data.get("timings", {}))


def severity_table(accuracy: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, dict[int, float]]]:
    """{perturbation: {model: {level: accuracy}}} from {model: {spec: accuracy}}, for specs
    with one perturbation at a level (joint specs and translations have no curve)."""
    curves: dict[str, dict[str, dict[int, float]]] = {}
    for model, per_spec in accuracy.items():
        for spec, value in per_spec.items():
            steps = parse_spec(spec).steps
            if len(steps) == 1 and steps[0].level is not None:
                curves.setdefault(steps[0].name, {}).setdefault(model, {})[steps[0].level] = value
    return curves


def diagnosis_notes(diagnostics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Plain-language findings: a collapsed posterior (active share 0) is stated, never hidden."""
    notes = []
    for model, found in diagnostics.items():
        for modality in ("visual", "text"):
            entry = found.get(modality)
            if not entry or "active_share" not in entry:
                continue
            share = entry["active_share"]
            if share == 0:
                notes.append(f"{model}: the {modality}-token posterior has collapsed. No dimension's mean KL to the prior "
                             f"exceeds {found['threshold']:g} nats (active share 0; mean KL {entry['kl']:.3g} nats per "
                             f"dimension), so the posterior mean carries almost no information about the input, and at "
                             f"inference the bottleneck only pulls these hidden states towards an input-independent mean.")
            else:
                notes.append(f"{model}: {100 * share:.1f}% of the {modality}-token dimensions are active (mean KL to the "
                             f"prior above {found['threshold']:g} nats); mean KL {entry['kl']:.3g} nats per dimension.")
    return notes


def _mean(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def to_jsonable(value: Any) -> Any:
    """Arrays to lists, numpy scalars to Python, non-finite floats to None, keys to strings."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
