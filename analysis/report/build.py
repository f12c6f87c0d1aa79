"""Building the report: evaluate, embed, map, measure and diagnose every model; write the files.

See the package docstring for the pipeline; `analysis.report.render` turns the result into HTML.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from analysis.report.config import ReportConfig
from analysis.report.render import render_html

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CATEGORICAL_MAX_CLASSES = 50
"""EMID uses the categorical estimator when a model gives at most this many distinct answers (and
at most a fifth as many as there are questions); CLUB otherwise."""
MIN_EMID_SAMPLES = 5  # CLUB holds out 30% of the pairs: fewer than 5 leave < 2 to fit or to score
DEFAULT_MAP_SPECS = 3


def _split_specs(config: ReportConfig) -> tuple[list[str], list[str]]:
    """(["clean", specs...], map specs) with the map specs checked against the specs."""
    from analysis.perturb import expand_specs
    from analysis.perturb import CLEAN

    specs = expand_specs(config.specs, clean=True)
    perturbed = [s for s in specs if s != CLEAN]
    if not perturbed:
        raise ValueError(f"--specs {config.specs!r} names no perturbation; add e.g. frost:3")
    if config.map_specs is None:
        return specs, perturbed[:DEFAULT_MAP_SPECS]
    chosen = [s for s in expand_specs(config.map_specs, clean=True) if s != CLEAN]
    missing = [s for s in chosen if s not in perturbed]
    if missing or not chosen:
        raise ValueError(f"--map-specs must name perturbed specs of --specs; not among them: {missing or config.map_specs!r}")
    return specs, chosen


class _Recorder:
    """Passes `answer_batch` through to an assistant and keeps every answer list, in call order."""

    def __init__(self, assistant: Any) -> None:
        self.assistant, self.calls = assistant, []

    def answer_batch(self, *args: Any, **kwargs: Any) -> list[str]:
        answers = self.assistant.answer_batch(*args, **kwargs)
        self.calls.append(list(answers))
        return answers


def _analyze_model(assistant: Any, samples: list[dict[str, Any]], specs: list[str], variants: Any,
                   config: ReportConfig) -> dict[str, Any]:
    """Accuracy (with the answers), embeddings and, with a bottleneck, diagnostics of one model."""
    from analysis.evaluate import evaluate
    from analysis.evaluate.diagnostics import posterior_diagnostics
    from analysis.representations import extract

    timings: dict[str, float] = {}
    started = time.perf_counter()
    recorder = _Recorder(assistant)
    evaluation = evaluate(recorder, samples, specs, variants, batch_size=config.batch_size, progress=config.progress,
                          max_new_tokens=config.max_new_tokens)
    timings["evaluate_s"] = time.perf_counter() - started
    started = time.perf_counter()
    embeddings = extract(assistant, samples, specs, config.cache_dir, config.batch_size, config.progress, variants,
                         desc="embedding")
    timings["embed_s"] = time.perf_counter() - started
    result = {"info": {"has_bottleneck": assistant.has_bottleneck, "layer": assistant.layer}, "evaluation": evaluation,
              "answers": dict(zip(specs, recorder.calls, strict=True)), "embeddings": embeddings, "timings": timings}
    if assistant.has_bottleneck:
        started = time.perf_counter()
        images, questions = variants.get(specs[0])
        result["diagnostics"] = posterior_diagnostics(assistant, images, questions, batch_size=config.batch_size)
        probe = assistant.probe(images[0], questions[0])
        result["example"] = {"question": questions[0], "image_id": samples[0].get("image_id"),
                             "image_path": samples[0].get("image_path"), "grid": probe.grid,
                             "text_tokens": probe.text_tokens, "visual_variance": probe.visual_variance,
                             "text_variance": probe.text_variance, "visual_kl": probe.visual_kl, "text_kl": probe.text_kl}
        timings["diagnostics_s"] = time.perf_counter() - started
    return result


def severity_table(accuracy: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, dict[int, float]]]:
    """{perturbation: {model: {level: accuracy}}} from {model: {spec: accuracy}}, for specs
    with one perturbation at a level (joint specs and translations have no curve)."""
    from analysis.perturb import parse_spec

    curves: dict[str, dict[str, dict[int, float]]] = {}
    for model, per_spec in accuracy.items():
        for spec, value in per_spec.items():
            steps = parse_spec(spec).steps
            if len(steps) == 1 and steps[0].level is not None:
                curves.setdefault(steps[0].name, {}).setdefault(model, {})[steps[0].level] = value
    return curves


def _fit_maps(embeddings: Mapping[str, Mapping[str, np.ndarray]], map_specs: list[str], method: str, seed: int) -> tuple[Any, dict]:
    """One projection over every model's clean + map-spec embeddings; {model: {role: (n, 2)}}."""
    from analysis.projection import Projection

    roles = ["clean", *map_specs]
    arrays = {f"{model}\t{role}": per_spec[role] for model, per_spec in embeddings.items() for role in roles}
    projection = Projection().fit(arrays, method=method, seed=seed)
    return projection, {model: {role: projection.coordinates(f"{model}\t{role}") for role in roles} for model in embeddings}


def _emid(per_model: Mapping[str, Mapping[str, Any]], specs: list[str], variants: Any, config: ReportConfig) -> dict[str, Any]:
    """{model: {spec: {mi_clean, mi_perturbed, emid}}} with CLUB between query and answer embeddings."""
    from analysis.embedders import QueryEmbedder, make_embedder
    from analysis.metrics import categorical_mutual_information, club_mutual_information
    from vittle.inference import pick_device

    device = pick_device(config.device)
    text = make_embedder("text", config.text_embedder, device=device)
    query = QueryEmbedder(text, make_embedder("image", config.image_embedder, device=device))
    queries = {spec: query.encode(*variants.get(spec)) for spec in tqdm(specs, desc="EMID queries", disable=not config.progress)}
    club = {"steps": config.club_steps, "seed": config.seed}
    result: dict[str, Any] = {}
    estimators: dict[str, str] = {}
    bar = tqdm(total=len(per_model) * len(specs), desc="EMID", disable=not config.progress)
    for model, data in per_model.items():
        labels = {spec: [answer.strip().lower() for answer in data["answers"][spec]] for spec in specs}
        distinct = len({answer for spec in specs for answer in labels[spec]})
        # Few distinct answers (easy-vqa's one-word answers): CLUB's Gaussian q collapses onto the answer points and
        # its estimate grows without bound, so use the categorical estimator (H(A) - held-out CE, <= log k).
        categorical = distinct <= CATEGORICAL_MAX_CLASSES and distinct * 5 <= len(labels[specs[0]])
        estimators[model] = "categorical" if categorical else "club"
        if categorical:
            def estimate(spec: str) -> float:
                return categorical_mutual_information(queries[spec], labels[spec], seed=config.seed)
        else:
            answers = {spec: text.encode(data["answers"][spec]) for spec in specs}

            def estimate(spec: str) -> float:
                return club_mutual_information(queries[spec], answers[spec], **club)
        mi_clean = estimate(specs[0])
        bar.update()
        result[model] = {}
        # The answers take k distinct values, so I(query; answer) <= H(answer) <= log k: an estimate above it is
        # not information (CLUB's q collapsing onto the few answer points).
        bound = {spec: math.log(max(len(set(labels[spec])), 1)) for spec in specs}
        for spec in specs[1:]:
            mi_perturbed = estimate(spec)
            result[model][spec] = {"mi_clean": mi_clean, "mi_perturbed": mi_perturbed, "emid": mi_clean - mi_perturbed,
                                   "mi_bound_clean": bound[specs[0]], "mi_bound_perturbed": bound[spec],
                                   "within_bound": mi_clean <= bound[specs[0]] + 1e-6 and mi_perturbed <= bound[spec] + 1e-6}
            bar.update()
    bar.close()
    unreliable = [f"{m} ({s})" for m, per_spec in result.items() for s, v in per_spec.items() if not v["within_bound"]]
    if unreliable:
        logger.warning("EMID estimates above log(distinct answers), unreliable: %s", ", ".join(unreliable))
    return {"unreliable": unreliable, "estimators": estimators,
            "embedders": {"query": query.name, "answer": getattr(text, "name", type(text).__name__), "club_steps": config.club_steps},
            "values": result}


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


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def build_report(config: ReportConfig) -> dict[str, Any]:
    """Compute everything, write `report.json` and `report.html` under `config.out`; returns
    the JSON content."""
    from analysis.evaluate import Variants, load_samples
    from analysis.representations import shift_distances, summarize_shift
    from vittle.checkpoint import resolve_checkpoint
    from vittle.inference import Assistant

    started = time.perf_counter()
    specs, map_specs = _split_specs(config)
    samples = load_samples(config.data, config.limit_images)
    if config.emid and len(samples) < MIN_EMID_SAMPLES:
        raise ValueError(f"EMID needs at least {MIN_EMID_SAMPLES} questions, the data gives {len(samples)}: "
                         "raise --limit-images or pass --no-emid")
    folders = {name: resolve_checkpoint(path) for name, path in config.models.items()}  # fail before any work
    variants = Variants(samples, seed=config.seed)
    per_model: dict[str, dict[str, Any]] = {}
    for name, folder in folders.items():
        logger.info("analysing %s (%s) on %d questions x %d specs", name, folder, len(samples), len(specs))
        assistant = Assistant.load(folder, device=config.device)
        per_model[name] = _analyze_model(assistant, samples, specs, variants, config)
        del assistant
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    embeddings = {name: data["embeddings"] for name, data in per_model.items()}
    shift = {name: summarize_shift(per_spec) for name, per_spec in embeddings.items()}
    distances = {name: shift_distances(per_spec) for name, per_spec in embeddings.items()}
    timings: dict[str, Any] = {"models": {name: data["timings"] for name, data in per_model.items()}}
    step = time.perf_counter()
    projection, coordinates = _fit_maps(embeddings, map_specs, config.projection, config.seed)
    timings["maps_s"], step = time.perf_counter() - step, time.perf_counter()
    emid = _emid(per_model, specs, variants, config) if config.emid else None
    timings["emid_s"] = time.perf_counter() - step
    accuracy = {name: {spec: r["accuracy"] for spec, r in data["evaluation"]["results"].items()} for name, data in per_model.items()}
    diagnostics = {name: data["diagnostics"] for name, data in per_model.items() if "diagnostics" in data}
    summary = {name: {"accuracy_clean": accuracy[name][specs[0]],
                      "accuracy_perturbed_mean": _mean([accuracy[name][s] for s in specs[1:]]),
                      "cosine_mean": _mean([v["cosine_mean"] for v in shift[name].values()]),
                      "jsd_mean": _mean([v["jsd"] for v in shift[name].values()]),
                      "emid_mean": _mean([v["emid"] for v in emid["values"][name].values()]) if emid else None}
               for name in per_model}
    report = {
        "format_version": FORMAT_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "data": config.data, "limit_images": config.limit_images, "n_questions": len(samples), "seed": config.seed,
        "specs": specs, "map_specs": map_specs,
        "models": {name: {"path": config.models[name], **data["info"]} for name, data in per_model.items()},
        "accuracy": accuracy, "evaluation": {name: data["evaluation"] for name, data in per_model.items()},
        "answers": {name: data["answers"] for name, data in per_model.items()},
        "severity": severity_table(accuracy), "shift": shift,
        "cosine_distances": distances,
        "projection": {"method": config.projection, "fitted_on": ["clean", *map_specs], "coordinates": coordinates},
        "emid": emid, "diagnostics": diagnostics, "diagnosis_notes": diagnosis_notes(diagnostics),
        "examples": {name: data["example"] for name, data in per_model.items() if "example" in data},
        "summary": summary,
        "timings": timings,
    }
    page = render_html(report, projection)
    timings["total_s"] = time.perf_counter() - started
    content = to_jsonable(report)
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "report.json").write_text(json.dumps(content, indent=1, allow_nan=False), encoding="utf-8")
    (config.out / "report.html").write_text(page, encoding="utf-8")
    return content


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
