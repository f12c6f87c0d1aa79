"""The app's model side: the only module of `app/` that calls models.

    service = DemoService(ServiceConfig())          # embedded tiny models from assets/
    service.start()                                 # load, embed the reference set, warm UMAP
    query = service.prepare("photo.png", "What colour is the shape?", visual="frost", severity=3)
    for answers in service.answers(query): ...      # four answers, streamed
    panels = service.panels(query, method="pca")    # figures for the embedding / variance / distance tabs

Slow work (model loading, reference embeddings, UMAP's numba JIT) runs once, in a background
thread started by `start()`; the first request waits for it instead of paying it again. Each
model runs on its own worker thread (`app.worker.ModelWorker`) that serves every user: the
answers queued by concurrent requests go through one batched `generate`, their probes
through one forward, and a new perturbation's reference embeddings run in chunks between
them. Each reference set, perturbed input set and map is computed once however many requests
ask for it at the same time (`SingleFlight`), and its perturbation runs outside the workers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.config import ASSETS, ServiceConfig
from app.inputs import InputError, QueryImage, clean_question, load_query_image
from app.worker import ModelWorker, SingleFlight, ViaWorker

logger = logging.getLogger(__name__)

LABELS = {"baseline": "Baseline", "vittle-f": "Vittle (F)", "vittle-l": "Vittle (L)"}
NONE = "none"
ROLES = ("baseline_clean", "baseline_perturbed", "vittle_clean", "vittle_perturbed")
_COLLAPSED_KL = 1e-3
"""Mean per-token KL (nats per dim) below which the posterior is reported as collapsed."""


@dataclass
class Query:
    """One user query and its perturbed twin, ready for the models."""

    image: Any  # PIL image or None
    question: str
    perturbed_image: Any
    perturbed_question: str
    spec: str
    label: str
    notes: list[str] = field(default_factory=list)


FIGURES = ("embeddings", "distances", "variance", "kl")


@dataclass
class Panels:
    """The panels of one turn. The figures are kept as plotly figure dicts (`specs`): the page
    gets them as JSON (`json`) without plotly building and validating a Figure per panel per
    user; `embeddings`, `distances`, `variance` and `kl` give plotly Figures for code."""

    specs: dict[str, dict[str, Any] | None]
    """FIGURES -> figure dict, or None where the turn has no such panel."""
    tokens_html: str
    summary: str
    numbers: dict[str, Any]

    def json(self, name: str) -> str | None:
        from analysis.plots import figure_json

        return figure_json(self.specs[name])

    def figure(self, name: str) -> Any:
        from analysis.plots import figure

        return figure(self.specs[name])

    @property
    def embeddings(self) -> Any:
        return self.figure("embeddings")

    @property
    def distances(self) -> Any:
        return self.figure("distances")

    @property
    def variance(self) -> Any:
        return self.figure("variance")

    @property
    def kl(self) -> Any:
        return self.figure("kl")


def spec_of(visual: str | None = NONE, severity: int = 3, text: str | None = NONE, level: int = 3) -> str:
    """The spec string of a menu choice, e.g. ("frost", 3, "greek", 3) -> "frost:3+greek"."""
    from analysis.perturb import CLEAN, get_perturbation, parse_spec

    steps = []
    for name, strength in ((visual, severity), (text, level)):
        if name and name != NONE:
            entry = get_perturbation(name)
            steps.append(f"{name}:{int(strength)}" if entry.has_levels else name)
    spec = "+".join(steps) or CLEAN
    parse_spec(spec)  # validates the levels
    return spec


class DemoService:
    """Holds the baseline and Vittle assistants and the reference set."""

    def __init__(self, config: ServiceConfig | None = None):
        self.config = config or ServiceConfig()
        paths = {"baseline": self.config.baseline, "vittle-f": self.config.vittle}
        if self.config.vittle_l:
            paths["vittle-l"] = self.config.vittle_l
        self.paths = paths
        self._assistants: dict[str, Any] = {}
        self._workers: dict[str, ModelWorker] = {}
        self._load_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._reference = SingleFlight()
        """(model, spec) -> (n, d) reference-set embeddings."""
        self._perturbed = SingleFlight()
        """spec -> the reference set's perturbed inputs (shared by the models)."""
        self._maps = SingleFlight()
        """(method, spec, vittle) -> fitted Projection."""
        self._cache_keys = SingleFlight()
        """model -> its reference embeddings' cache folder (model and data fingerprints)."""
        self._background = ThreadPoolExecutor(max_workers=32, thread_name_prefix="vittle-reference")
        """Runs each model's reference embedding of a turn side by side, started with the turn's answers."""
        self._samples: list[dict[str, Any]] | None = None
        self._variants: Any = None
        self._warm: threading.Thread | None = None
        self._umap_warm: threading.Thread | None = None
        self.startup_error: str | None = None
        self.timings: dict[str, float] = {}
        self.precomputed: tuple[int, int] | None = None
        """(done, total) reference sets of the background precompute; None before it starts."""

    # ---------------------------------------------------------------- lifecycle
    @property
    def vittle_choices(self) -> list[tuple[str, str]]:
        """(label, name) of the selectable Vittle models."""
        return [(self.label(name), name) for name in self.paths if name != "baseline"]

    def label(self, name: str) -> str:
        return LABELS.get(name, name) if self.paths[name].startswith(str(ASSETS)) else f"{LABELS.get(name, name)}: {self.paths[name]}"

    def start(self) -> DemoService:
        """Start the background warm-up (idempotent); returns self."""
        if self._warm is None:
            # modules that request threads would otherwise import lazily, several at once: two
            # threads importing plotly's circular submodules can deadlock (seen under load)
            import analysis.lab.report  # noqa: F401
            import plotly.graph_objects  # noqa: F401
            import plotly.io  # noqa: F401
            import plotly.subplots  # noqa: F401

            self._warm = threading.Thread(target=self._warm_up, name="vittle-warm-up", daemon=True)
            self._warm.start()
            if self.config.warm_umap:
                self._umap_warm = threading.Thread(target=self._warm_umap, name="vittle-umap-warm-up", daemon=True)
                self._umap_warm.start()
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the background warm-up is done; False on timeout."""
        self.start()
        self._warm.join(timeout)
        return not self._warm.is_alive()

    def _warm_up(self) -> None:
        try:
            started = time.perf_counter()
            for name in self.paths:
                self.assistant(name)
            self.timings["load_seconds"] = round(time.perf_counter() - started, 2)
            started = time.perf_counter()
            self.reference("baseline", self.config.default_spec)
            self.reference("vittle-f", self.config.default_spec)
            self.timings["reference_seconds"] = round(time.perf_counter() - started, 2)
        except Exception as err:  # reported in the UI's status line, and again on use
            logger.exception("warm-up failed")
            self.startup_error = f"{type(err).__name__}: {err}"
            return
        if self.config.precompute:
            threading.Thread(target=self._precompute, name="vittle-precompute", daemon=True).start()

    def precompute_settings(self) -> list[str]:
        """The visual settings whose reference sets `precompute` embeds."""
        from analysis.perturb import list_perturbations

        return [f"{p.name}:{level}" for level in (1, 2, 3, 4, 5) for p in list_perturbations("visual")]

    def _precompute(self) -> None:
        settings = self.precompute_settings()
        self.precomputed = (0, len(settings))
        started = time.perf_counter()
        for done, spec in enumerate(settings, start=1):
            self.wait_quiet(self.config.precompute_quiet_s)
            try:
                for name in ("baseline", "vittle-f"):
                    self.reference(name, spec)
            except Exception:
                logger.exception("precomputing the reference set of %s failed; it is computed on first use", spec)
            self.precomputed = (done, len(settings))
        self.timings["precompute_seconds"] = round(time.perf_counter() - started, 2)

    def wait_quiet(self, seconds: float) -> None:
        """Return once no model worker has had a user query for `seconds`."""
        while True:
            last = max((worker.last_query for worker in list(self._workers.values())), default=float("-inf"))
            idle = time.monotonic() - last
            if idle >= seconds:
                return
            time.sleep(min(seconds - idle, 0.25))

    def _warm_umap(self) -> None:
        try:
            started = time.perf_counter()
            from analysis.projection import warm_umap

            warm_umap(self.config.seed)
            self.timings["umap_warm_seconds"] = round(time.perf_counter() - started, 2)
        except Exception:
            logger.exception("UMAP warm-up failed; UMAP maps will pay the JIT on first use")

    def status(self) -> str:
        """A one-line description of what is loaded, for the UI."""
        if self.startup_error:
            return f"Start-up failed: {self.startup_error}"
        loaded = [self.label(n) for n in self.paths if n in self._assistants]
        state = "ready" if self._warm is not None and not self._warm.is_alive() else "warming up"
        if state == "ready" and self.precomputed and self.precomputed[0] < self.precomputed[1]:
            state += f"; reference sets of the visual shifts {self.precomputed[0]}/{self.precomputed[1]} embedded"
        device = next(iter(self._assistants.values())).device if self._assistants else self.config.device
        return f"Models: {', '.join(loaded) or 'loading...'} on {device} ({state})."

    def assistant(self, name: str) -> Any:
        """The loaded Assistant `name` (loads it on first use)."""
        if name not in self.paths:
            raise InputError(f"Unknown model {name!r}; choose one of {', '.join(self.paths)}.")
        with self._load_lock:
            if name not in self._assistants:
                from vittle.inference import Assistant

                logger.info("loading %s from %s", name, self.paths[name])
                assistant = Assistant.load(self.paths[name], device=self.config.device)
                if self.config.prefix_cache_mb > 0:
                    assistant.enable_prefix_cache(self.config.prefix_cache_mb * 1024 * 1024)
                self._workers[name] = ModelWorker(assistant, name).start()
                self._assistants[name] = assistant
            return self._assistants[name]

    def worker(self, name: str) -> ModelWorker:
        """The thread that runs model `name` for every request (loads the model on first use)."""
        self.assistant(name)
        return self._workers[name]

    def close(self) -> None:
        """Stop the model workers (after the jobs they hold)."""
        self._background.shutdown(wait=False, cancel_futures=True)
        for worker in list(self._workers.values()):
            worker.close()

    # ---------------------------------------------------------------- queries
    def prepare(self, image: Any, question: str | None, visual: str | None = NONE, severity: int = 3,
                text: str | None = NONE, level: int = 3) -> Query:
        """Check the inputs and perturb them. `image` is a file path, a PIL image or None."""
        from analysis.perturb import TranslationUnavailable, apply, describe, get_perturbation, unavailable

        notes: list[str] = []
        if image is None or isinstance(image, (str, Path)):
            loaded: QueryImage | None = load_query_image(image, max_bytes=self.config.max_upload_bytes)
            pil = loaded.image if loaded else None
            notes += loaded.notes if loaded else []
        else:
            pil = image.convert("RGB")
        question = clean_question(question)
        try:
            spec = spec_of(visual, severity, text, level)
        except ValueError as err:
            raise InputError(str(err)) from err
        for name in (visual, text):
            if name not in (None, NONE, "") and (why := unavailable(name)):
                raise InputError(f"{get_perturbation(name).label} is not available on this server: {why}")
        self._check_length(pil, question)
        try:
            perturbed_image, perturbed_question = apply(spec, image=pil, text=question, seed=self.config.seed)
        except TranslationUnavailable as err:
            raise InputError(f"Translation is not available on this server: {err}") from err
        if pil is None and visual not in (None, NONE):
            notes.append("no image: the visual perturbation does nothing")
        return Query(pil, question, perturbed_image, perturbed_question or question, spec, describe(spec), notes)

    def _check_length(self, image: Any, question: str) -> None:
        limit = self.assistant("baseline").context_length
        tokens = self.worker("baseline").prompt_length(image, question)  # the tokenizer is used on its worker only
        if limit and tokens + self.config.max_new_tokens > limit:
            raise InputError(f"The query takes {tokens:,} tokens (image and question); this model reads at most "
                             f"{limit - self.config.max_new_tokens:,} before its answer.")

    def answers(self, query: Query, vittle: str = "vittle-f") -> Iterator[dict[str, str]]:
        """The four answers (baseline/Vittle x clean/perturbed): yields the dict of all four
        each time one arrives. The four are queued at once, so each model answers the clean
        and the perturbed query (and whatever other users queued) in one batched pass."""
        from concurrent.futures import as_completed

        self._check_vittle(vittle)
        self.prefetch(query.spec, vittle)
        answers = dict.fromkeys(ROLES, "")
        jobs = {self.worker(name).answer(image, question, max_new_tokens=self.config.max_new_tokens): role
                for role, name, image, question in [
                    ("baseline_clean", "baseline", query.image, query.question),
                    ("baseline_perturbed", "baseline", query.perturbed_image, query.perturbed_question),
                    ("vittle_clean", vittle, query.image, query.question),
                    ("vittle_perturbed", vittle, query.perturbed_image, query.perturbed_question)]}
        for future in as_completed(jobs):
            answers[jobs[future]] = future.result().strip() or "(empty answer)"
            yield dict(answers)

    def _check_vittle(self, vittle: str) -> None:
        if vittle == "baseline" or vittle not in self.paths:
            raise InputError(f"Unknown Vittle model {vittle!r}; choose one of {', '.join(n for n in self.paths if n != 'baseline')}.")

    # ---------------------------------------------------------------- reference set and panels
    def _reference_samples(self) -> tuple[list[dict[str, Any]], Any]:
        with self._state_lock:
            if self._samples is None:
                from analysis.evaluate.runner import Variants, load_samples

                rows = load_samples("easyvqa", limit_images=self.config.reference_images)
                by_image: dict[Any, list[dict[str, Any]]] = {}
                for row in rows:
                    by_image.setdefault(row["image_id"], []).append(row)
                # one question per image, rotating through each image's questions for a mix of kinds
                self._samples = [qs[i % len(qs)] for i, qs in enumerate(by_image.values())]
                self._variants = Variants(self._samples, seed=self.config.seed)
            return self._samples, self._variants

    def reference(self, name: str, spec: str) -> dict[str, np.ndarray]:
        """{"clean": (n, d), spec: (n, d)} reference-set embeddings of model `name`, each
        computed once (from the disk cache when it has them)."""
        from analysis.perturb import CLEAN
        from analysis.representations import cache_key, extract

        samples, variants = self._reference_samples()
        worker = self.worker(name)
        # the models are frozen: their cache folder is hashed once, not on every new setting
        key = self._cache_keys.get(name, lambda: cache_key(worker.assistant, samples, variants.seed))

        def embed(wanted: str) -> np.ndarray:
            self._perturbed.get(wanted, lambda: variants.get(wanted))  # perturbed once for every model, on this thread
            return extract(ViaWorker(worker), samples, [wanted], cache_dir=self.config.cache_dir, progress=False,
                           variants=variants, desc=f"reference {name}", key=key)[wanted]

        return {s: self._reference.get((name, s), lambda s=s: embed(s)) for s in dict.fromkeys([CLEAN, spec])}

    def references(self, models: list[str], spec: str) -> dict[str, dict[str, np.ndarray]]:
        """`reference` of several models at once: each model's worker queues its own chunks,
        so the two embeddings of a new setting run side by side, not one after the other."""
        futures = {name: self._background.submit(self.reference, name, spec) for name in models}
        return {name: future.result() for name, future in futures.items()}

    def prefetch(self, spec: str, vittle: str) -> None:
        """Start a new setting's reference embeddings while its answers are made (the panels
        that follow find them done or under way: each is computed once); errors surface in
        the panels."""
        from analysis.perturb import CLEAN

        if spec == CLEAN:
            return
        for name in ("baseline", vittle):
            self._background.submit(self._quiet_reference, name, spec)

    def _quiet_reference(self, name: str, spec: str) -> None:
        try:
            self.reference(name, spec)
        except Exception as err:  # reported by the panels, which ask again
            logger.debug("prefetching the reference set of %s for %s failed: %s", name, spec, err)

    def _projection(self, method: str, spec: str, vittle: str) -> Any:
        from analysis.projection import Projection

        def fit() -> Any:
            if method == "umap" and self._umap_warm is not None:
                self._umap_warm.join(120)  # the warm-up compiles what the fit needs: do not compile twice
            arrays = {name: np.vstack(list(refs.values())) for name, refs in self.references(["baseline", vittle], spec).items()}
            return Projection().fit(arrays, method=method, seed=self.config.seed)

        return self._maps.get((method, spec, vittle), fit)

    def probe(self, name: str, image: Any, question: str) -> Any:
        return self.worker(name).probe(image, question).result()

    def panels(self, query: Query, vittle: str = "vittle-f", method: str = "pca") -> Panels:
        """Figures for the embedding map, the cosine-distance histograms and the posterior
        panels, plus the numbers behind them."""
        from analysis.metrics import cosine_distances
        from analysis.perturb import CLEAN
        from analysis.plots import cosine_histograms_spec, embedding_scatter_spec

        self._check_vittle(vittle)
        if method not in ("pca", "umap"):
            raise InputError(f"Unknown map method {method!r}; choose pca or umap.")
        models = {"baseline": self.label("baseline"), vittle: self.label(vittle)}
        queued = {name: (self.worker(name).probe(query.image, query.question),  # all four queued: one pass per model
                         self.worker(name).probe(query.perturbed_image, query.perturbed_question)) for name in models}
        probes = {name: (clean.result(), perturbed.result()) for name, (clean, perturbed) in queued.items()}
        numbers: dict[str, Any] = {"spec": query.spec, "layer": {n: p[0].layer for n, p in probes.items()}}
        query_distance = {models[n]: float(cosine_distances(p[0].hidden_after[None], p[1].hidden_after[None])[0])
                          for n, p in probes.items()}
        numbers["query_cosine_distance"] = query_distance
        spec = query.spec
        if spec == CLEAN:
            embeddings = distances = None
            summary = ["Clean query: choose a perturbation to compare clean and perturbed representations."]
        else:
            references = self.references(list(models), spec)
            projection = self._projection(method, spec, vittle)
            points, placed = {}, {}
            for name, label in models.items():
                n_ref = len(references[name][CLEAN])
                xy = projection.coordinates(name)
                points[label] = {CLEAN: xy[:n_ref], spec: xy[n_ref:]}
                ends = projection.transform(name, np.vstack([probes[name][0].hidden_after, probes[name][1].hidden_after]))
                placed[label] = (ends[0], ends[1])
            embeddings = embedding_scatter_spec(projection, points, placed,
                                           title=f"Layer-l last-token states, reference set clean vs {spec} ({method.upper()})")
            shift = {models[n]: cosine_distances(r[CLEAN], r[spec]) for n, r in references.items()}
            distances = cosine_histograms_spec({spec: shift}, marker=query_distance,
                                          title=f"Cosine distance clean vs {spec} over {len(next(iter(shift.values())))} reference queries")
            numbers["reference_cosine_mean"] = {label: float(v.mean()) for label, v in shift.items()}
            summary = ["Cosine distance between the clean and perturbed query's layer-l state: "
                       + ", ".join(f"{label} **{value:.4f}**" for label, value in query_distance.items())
                       + "; reference-set mean: "
                       + ", ".join(f"{label} {value:.4f}" for label, value in numbers["reference_cosine_mean"].items()) + "."]
        variance, kl, tokens_html, posterior_notes = self._posterior(probes[vittle][1], models[vittle])
        numbers["posterior"] = posterior_notes["numbers"]
        summary += posterior_notes["lines"]
        figures = {"embeddings": embeddings, "distances": distances, "variance": variance, "kl": kl}
        return Panels(figures, tokens_html, "\n\n".join(summary), numbers)

    def _posterior(self, probe: Any, label: str) -> tuple[Any, Any, str, dict[str, Any]]:
        import html

        from analysis.plots import token_colours_html, variance_heatmap_spec

        if not probe.has_bottleneck:
            text = f"{label} has no bottleneck, so there is no posterior to show."
            return None, None, f"<p>{html.escape(text)}</p>", {"numbers": {}, "lines": [text]}
        numbers = {"text_variance_mean": float(np.mean(probe.text_variance)), "text_kl_mean": float(np.mean(probe.text_kl))}
        variance = kl = None
        if probe.grid is not None and probe.visual_variance is not None and len(probe.visual_variance):
            variance = variance_heatmap_spec(probe.visual_variance, probe.grid, f"{label}: posterior variance per image token (perturbed query)")
            kl = variance_heatmap_spec(probe.visual_kl, probe.grid, f"{label}: KL to the prior per image token (nats per dim)", label="KL")
            numbers.update(visual_variance_mean=float(np.mean(probe.visual_variance)), visual_kl_mean=float(np.mean(probe.visual_kl)))
        text_tokens = probe.text_tokens
        tokens_html = (token_colours_html(text_tokens, probe.text_variance, "posterior variance")
                       + "<p style='margin-top:8px'>KL to the prior per text token:</p>"
                       + token_colours_html(text_tokens, probe.text_kl, "KL to the prior", colour=(31, 119, 180)))
        lines = []
        kl_means = [v for k, v in numbers.items() if k.endswith("kl_mean")]
        if max(kl_means) < _COLLAPSED_KL:
            lines.append(f"{label}: the posterior has collapsed to the prior (mean KL per dim "
                         + ", ".join(f"{k.split('_')[0]} {max(v, 0.0):.2g}" for k, v in numbers.items() if k.endswith("kl_mean"))
                         + "): the bottleneck passes almost no information through its noisy path, and the answer "
                         "comes from the direct path (1 - alpha) h. See docs/robustness-lab.md.")
        else:
            lines.append(f"{label}: mean KL to the prior per dim "
                         + ", ".join(f"{k.split('_')[0]} {v:.3g}" for k, v in numbers.items() if k.endswith("kl_mean")) + ".")
        return variance, kl, tokens_html, {"numbers": numbers, "lines": lines}

    # ---------------------------------------------------------------- the lab's numbers
    def _lab_name(self, name: str) -> str | None:
        """The lab arm a loaded model was exported from (its model card's data), if any."""
        from analysis.lab.card import read_card

        card = read_card(self.paths[name])
        return card.name if card else None

    def _lab(self) -> Any:
        from analysis.lab import LabSummary

        if not self.config.lab:
            return None
        try:
            return LabSummary.load(self.config.lab)
        except (OSError, ValueError) as err:
            logger.warning("no lab results: %s", err)
            return None

    def robustness(self, vittle: str = "vittle-f") -> tuple[str, Any]:
        """The lab's numbers and severity curves for the loaded models (markdown, figure or None)."""
        from analysis.lab.report import GROUP_COLUMNS, fmt, fmt_interval, severity_figure

        self._check_vittle(vittle)
        summary = self._lab()
        shown = {name: self._lab_name(name) for name in ("baseline", vittle)}
        found = {name: arm for name, arm in shown.items() if summary is not None and arm in summary.arms}
        lines = []
        if found:
            lines += [f"easy-vqa, {summary.slice['images']} test images: accuracy (%, mean ± std over the lab's seeds) on all clean "
                      f"questions and on the colour and shape questions (grounded), clean and under each group of shifts. The app's "
                      f"models are seed {summary.export_seed}, declared before any result. Source: docs/robustness-lab.md.", "",
                      "| model | seeds | clean | clean, grounded | yes/no | " + " | ".join(GROUP_COLUMNS) + " |",
                      "|---|---|---|---|---|" + "---|" * len(GROUP_COLUMNS)]
            for name, arm_name in found.items():
                arm = summary.arms[arm_name]
                lines.append(f"| {self.label(name)} | {len(arm.seeds)} | {fmt(arm.clean.get('all'))} | {fmt(arm.clean.get('grounded'))} | "
                             f"{fmt(arm.clean.get('yes/no'))} | " + " | ".join(fmt(arm.groups.get(g)) for g in GROUP_COLUMNS) + " |")
            vittle_arm = summary.arms.get(found.get(vittle, ""))
            if vittle_arm is not None and vittle_arm.versus_baseline:
                lines += ["", f"{self.label(vittle)} minus the baseline fine-tuned from the same base (grounded accuracy, points; "
                              "mean [95% paired bootstrap interval over seeds and questions], * excludes 0):", "",
                          "| clean | " + " | ".join(GROUP_COLUMNS) + " |", "|---|" + "---|" * len(GROUP_COLUMNS),
                          f"| {fmt_interval(vittle_arm.versus_baseline.get('clean'))} | "
                          + " | ".join(fmt_interval(vittle_arm.versus_baseline.get(g)) for g in GROUP_COLUMNS) + " |"]
        for name in shown:
            if name not in found:
                lines += ["", f"No lab results for {self.label(name)} ({self.paths[name]}): evaluate it with "
                              f"`vittle eval easyvqa --model PATH --specs paper`."]
        figure = None
        if found:
            figure = severity_figure(summary, list(found.values()), {arm: self.label(name) for name, arm in found.items()})
        return "\n".join(lines).strip(), figure
