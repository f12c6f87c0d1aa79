"""Building the report: evaluate, embed, map, measure and diagnose every model; write the files.

See the package docstring for the pipeline; `vittle.analysis.report.render` turns the result into HTML.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import torch
from tqdm.auto import tqdm

from vittle.analysis.embedders import QueryEmbedder, list_embedders, make_embedder
from vittle.analysis.evaluate import Variants, evaluate, load_samples
from vittle.analysis.evaluate.diagnostics import posterior_diagnostics
from vittle.analysis.metrics import categorical_mutual_information, club_mutual_information
from vittle.analysis.perturb import CLEAN, expand_specs
from vittle.analysis.report.config import ReportConfig
from vittle.analysis.report.render import render_html
from vittle.analysis.report.result import ModelInfo, Report
from vittle.analysis.shift import ShiftAnalysis
from vittle.options import UsageError

logger = logging.getLogger(__name__)

CATEGORICAL_MAX_CLASSES = 50
"""EMID uses the categorical estimator when a model gives at most this many distinct answers (and
at most a fifth as many as there are questions); CLUB otherwise."""
MIN_EMID_SAMPLES = 5  # CLUB holds out 30% of the pairs: fewer than 5 leave < 2 to fit or to score
DEFAULT_MAP_SPECS = 3


def _split_specs(config: ReportConfig) -> tuple[list[str], list[str]]:
    """(["clean", specs...], map specs) with the map specs checked against the specs."""
    specs = expand_specs(config.specs, clean=True)
    perturbed = [s for s in specs if s != CLEAN]
    if not perturbed:
        raise ValueError(f"specs={config.specs!r} names no perturbation; add e.g. frost:3")
    if config.map_specs is None:
        return specs, perturbed[:DEFAULT_MAP_SPECS]
    chosen = [s for s in expand_specs(config.map_specs, clean=True) if s != CLEAN]
    missing = [s for s in chosen if s not in perturbed]
    if missing or not chosen:
        raise UsageError(f"map_specs must name perturbed specs of specs; not among them: {missing or config.map_specs!r}")
    return specs, chosen


def _analyze_model(assistant: Any, samples: list[dict[str, Any]], specs: list[str], variants: Any,
                   config: ReportConfig) -> dict[str, Any]:
    """Accuracy (with the answers), embeddings and, with a bottleneck, diagnostics of one model."""
    from vittle.analysis.representations import extract  # heavy

    timings: dict[str, float] = {}
    started = time.perf_counter()
    evaluation = evaluate(assistant, samples, specs, variants, batch_size=config.batch_size, progress=config.progress,
                          max_new_tokens=config.max_new_tokens)
    timings["evaluate_s"] = time.perf_counter() - started
    started = time.perf_counter()
    embeddings = extract(assistant, samples, specs, config.cache_dir, config.batch_size, config.progress, variants,
                         desc="embedding")
    timings["embed_s"] = time.perf_counter() - started
    result = {"info": {"has_bottleneck": assistant.has_bottleneck, "layer": assistant.layer}, "evaluation": evaluation,
              "embeddings": embeddings, "timings": timings}
    if assistant.has_bottleneck:
        started = time.perf_counter()
        images, questions = variants.get(specs[0])
        result["diagnostics"] = posterior_diagnostics(assistant, images, questions, batch_size=config.batch_size)
        probe = assistant.probe(images[0], questions[0])
        result["example"] = {"question": questions[0], "image_id": samples[0].get("image_id"),
                             "image_path": samples[0].get("image_path"), "grid": probe.grid.to_dict() if probe.grid else None,
                             "text_tokens": probe.text_tokens, "visual_variance": probe.visual_variance,
                             "text_variance": probe.text_variance, "visual_kl": probe.visual_kl, "text_kl": probe.text_kl}
        timings["diagnostics_s"] = time.perf_counter() - started
    return result


def _emid(per_model: Mapping[str, Mapping[str, Any]], specs: list[str], variants: Any, config: ReportConfig) -> dict[str, Any]:
    """{model: {spec: {mi_clean, mi_perturbed, emid}}} with CLUB between query and answer embeddings."""
    from vittle.inference import pick_device  # heavy

    device = pick_device(config.device)
    text = make_embedder("text", config.text_embedder, device=device)
    query = QueryEmbedder(text, make_embedder("image", config.image_embedder, device=device))
    queries = {spec: query.encode(*variants.get(spec)) for spec in tqdm(specs, desc="EMID queries", disable=not config.progress)}
    club = {"steps": config.club_steps, "seed": config.seed}
    result: dict[str, Any] = {}
    estimators: dict[str, str] = {}
    bar = tqdm(total=len(per_model) * len(specs), desc="EMID", disable=not config.progress)
    for model, data in per_model.items():
        labels = {spec: [answer.strip().lower() for answer in data["evaluation"].predictions(spec)] for spec in specs}
        distinct = len({answer for spec in specs for answer in labels[spec]})
        # Few distinct answers (easy-vqa's one-word answers): CLUB's Gaussian q collapses onto the answer points and
        # its estimate grows without bound, so use the categorical estimator (H(A) - held-out CE, <= log k).
        categorical = distinct <= CATEGORICAL_MAX_CLASSES and distinct * 5 <= len(labels[specs[0]])
        estimators[model] = "categorical" if categorical else "club"
        if categorical:
            def estimate(spec: str) -> float:
                return categorical_mutual_information(queries[spec], labels[spec], seed=config.seed)
        else:
            answers = {spec: text.encode(data["evaluation"].predictions(spec)) for spec in specs}

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


def build_report(config: ReportConfig) -> Report:
    """Compute everything, write `report.json` and `report.html` under `config.out`; returns
    the report."""
    from vittle.checkpoint import resolve_checkpoint  # heavy
    from vittle.inference import Assistant  # heavy

    started = time.perf_counter()
    specs, map_specs = _split_specs(config)
    samples = load_samples(config.data, config.limit_images)
    if config.emid and len(samples) < MIN_EMID_SAMPLES:
        raise ValueError(f"EMID needs at least {MIN_EMID_SAMPLES} questions, the data gives {len(samples)}: "
                         "raise limit_images or turn emid off")
    if config.emid:
        for kind, name in (("text", config.text_embedder), ("image", config.image_embedder)):
            if name not in list_embedders(kind):
                raise ValueError(f"{kind}_embedder={name!r} is not a registered {kind} embedder; registered: {list_embedders(kind)}")
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
    timings: dict[str, Any] = {"models": {name: data["timings"] for name, data in per_model.items()}}
    step = time.perf_counter()
    shift = ShiftAnalysis.compute({name: data["embeddings"] for name, data in per_model.items()}, map_specs,
                                  method=config.projection, seed=config.seed)
    shift.summary()  # the JSDs, timed with the maps
    timings["maps_s"], step = time.perf_counter() - step, time.perf_counter()
    emid = _emid(per_model, specs, variants, config) if config.emid else None
    timings["emid_s"] = time.perf_counter() - step
    models = {name: ModelInfo(path=str(config.models[name]), **data["info"])
              for name, data in per_model.items()}
    report = Report(data=str(config.data), n_questions=len(samples), specs=specs, models=models,
                    evaluation={name: data["evaluation"] for name, data in per_model.items()}, shift=shift, emid=emid,
                    diagnostics={name: data["diagnostics"] for name, data in per_model.items() if "diagnostics" in data},
                    examples={name: data["example"] for name, data in per_model.items() if "example" in data},
                    limit_images=config.limit_images, seed=config.seed, created=time.strftime("%Y-%m-%dT%H:%M:%S"),
                    timings=timings)
    page = render_html(report)
    timings["total_s"] = time.perf_counter() - started
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "report.json").write_text(json.dumps(report.to_json(), indent=1, allow_nan=False), encoding="utf-8")
    (config.out / "report.html").write_text(page, encoding="utf-8")
    return report
