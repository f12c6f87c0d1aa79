"""The app's coordinator: the only module the UI calls. It checks and perturbs a query, asks
the models (`vittle.app.models`) for the answers and probes, the reference sets (`vittle.app.reference`) for
the shift analysis, and the presentation (`vittle.app.presentation`) for the panels.

    service = DemoService(ServiceConfig())          # embedded tiny models from assets/
    service.start()                                 # load, embed the reference set, warm UMAP
    query = service.prepare("photo.png", "What colour is the shape?", visual="frost", severity=3)
    for answers in service.answers(query): ...      # four answers, streamed
    panels = service.panels(query, method="pca")    # figures for the embedding / variance / distance tabs

Slow work (model loading, reference embeddings, UMAP's numba JIT) runs once, in the background
(`vittle.app.models.WarmUp`); the first request waits for it instead of paying it again. Each model
runs on its own worker thread that serves every user: the answers queued by concurrent requests
go through one batched `generate`, their probes through one forward, and a new perturbation's
reference embeddings run in chunks between them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from vittle.app.config import ServiceConfig
from vittle.app.inputs import InputError, QueryImage, clean_question, load_query_image
from vittle.app.model_facts import answer_cap, answerable, finding, is_translation, model_card
from vittle.app.models import ModelPool, WarmUp
from vittle.app.presentation import CLEAN_SUMMARY, PanelNumbers, Panels, posterior_panels, robustness_markdown, shift_figures, shift_summary
from vittle.app.reference import ReferenceSets
from vittle.app.worker import ModelWorker

logger = logging.getLogger(__name__)



NONE = "none"
ROLES = ("baseline_clean", "baseline_perturbed", "vittle_clean", "vittle_perturbed")


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


def spec_of(visual: str | None = NONE, severity: int = 3, text: str | None = NONE, level: int = 3) -> str:
    """The spec string of a menu choice, e.g. ("frost", 3, "greek", 3) -> "frost:3+greek"."""
    from vittle.analysis.perturb import CLEAN, get_perturbation, parse_spec

    steps = []
    for name, strength in ((visual, severity), (text, level)):
        if name and name != NONE:
            entry = get_perturbation(name)
            steps.append(f"{name}:{int(strength)}" if entry.has_levels else name)
    spec = "+".join(steps) or CLEAN
    parse_spec(spec)  # validates the levels
    return spec


class DemoService:
    """The baseline and Vittle models, their reference sets and the lab's numbers, for the UI."""

    def __init__(self, config: ServiceConfig | None = None):
        self.config = config or ServiceConfig()
        self.models = ModelPool(self.config)
        self.warm_up = WarmUp(self.models, lambda name, spec: self.references.embeddings(name, spec), self.precompute_settings)
        self.references = ReferenceSets(self.models, before_umap_fit=self.warm_up.wait_umap)

    # ---------------------------------------------------------------- lifecycle
    @property
    def paths(self) -> dict[str, str]:
        return self.models.paths

    @property
    def vittle_choices(self) -> list[tuple[str, str]]:
        """(label, name) of the selectable Vittle models."""
        return self.models.vittle_choices

    def label(self, name: str) -> str:
        return self.models.label(name)

    def start(self) -> DemoService:
        """Start the background warm-up (idempotent); returns self."""
        self.warm_up.start()
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the background warm-up is done; False on timeout."""
        return self.warm_up.wait(timeout)

    def wait_models(self, timeout: float | None = None) -> bool:
        """Block until the models are loaded (what a turn's answers need); False on timeout."""
        return self.warm_up.wait_models(timeout)

    @property
    def startup_error(self) -> str | None:
        return self.warm_up.error

    @property
    def timings(self) -> dict[str, float]:
        return self.warm_up.timings

    @property
    def precomputed(self) -> tuple[int, int] | None:
        """(done, total) reference sets of the background precompute; None before it starts."""
        return self.warm_up.precomputed

    def precompute_settings(self) -> list[str]:
        """The visual settings whose reference sets the warm-up embeds in the background."""
        from vittle.analysis.perturb import list_perturbations

        return [f"{p.name}:{level}" for level in (1, 2, 3, 4, 5) for p in list_perturbations("visual")]

    def status(self) -> str:
        """A one-line description of what is loaded, for the UI."""
        if self.startup_error:
            return f"Start-up failed: {self.startup_error}"
        loaded = [self.label(name) for name in self.models.loaded()]
        return f"Models: {', '.join(loaded) or 'loading...'} on {self.models.device} ({self.warm_up.state()})."

    @cached_property
    def max_new_tokens(self) -> int:
        """The answers' length cap: the setting, or (0) what the models were trained to give."""
        return answer_cap(self.paths.values(), self.config.max_new_tokens)

    def answerable(self) -> str:
        """What the loaded models can answer (lab models of the easy-vqa task; else "")."""
        return answerable(self.paths.values())

    def finding(self) -> str:
        """What each model is and measurably does, one line each (`vittle.app.model_facts.finding`)."""
        return finding(self.paths, {name: self.label(name) for name in self.paths}, self._lab())

    def assistant(self, name: str) -> Any:
        """The loaded Assistant `name` (loads it on first use)."""
        return self.models.assistant(name)

    def worker(self, name: str) -> ModelWorker:
        return self.models.worker(name)

    def reference(self, name: str, spec: str) -> dict[str, Any]:
        """{"clean": (n, d), spec: (n, d)} reference-set embeddings of model `name`."""
        return self.references.embeddings(name, spec)

    def close(self) -> None:
        """Stop the model workers (after the jobs they hold)."""
        self.references.close()
        self.models.close()

    # ---------------------------------------------------------------- queries
    def prepare(self, image: Any, question: str | None, visual: str | None = NONE, severity: int = 3,
                text: str | None = NONE, level: int = 3) -> Query:
        """Check the inputs and perturb them. `image` is a file path, a PIL image or None."""
        from vittle.analysis.perturb import TranslationUnavailable, apply, describe, get_perturbation, unavailable

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
        if text not in (None, NONE, "") and is_translation(text):
            from vittle.analysis.perturb import get_translator

            if getattr(get_translator(), "is_gloss", False):
                notes.append("this translation is an offline word-by-word gloss (freedict dictionaries), not a real "
                             "translation: set VITTLE_TRANSLATE_BASE_URL (an OpenAI-compatible API) or VITTLE_TRANSLATE_HF_MODEL for one")
        return Query(pil, question, perturbed_image, perturbed_question or question, spec, describe(spec), notes)

    def _check_length(self, image: Any, question: str) -> None:
        limit = self.assistant("baseline").context_length
        tokens = self.worker("baseline").prompt_length(image, question)  # the tokenizer is used on its worker only
        if limit and tokens + self.max_new_tokens > limit:
            raise InputError(f"The query takes {tokens:,} tokens (image and question); this model reads at most "
                             f"{limit - self.max_new_tokens:,} before its answer.")

    def answers(self, query: Query, vittle: str = "vittle-f") -> Iterator[dict[str, str]]:
        """The four answers (baseline/Vittle x clean/perturbed): yields the dict of all four
        each time one arrives. The four are queued at once, so each model answers the clean
        and the perturbed query (and whatever other users queued) in one batched pass."""
        from concurrent.futures import as_completed

        self.models.check_vittle(vittle)
        self.references.prefetch(query.spec, vittle)
        answers = dict.fromkeys(ROLES, "")
        jobs = {self.worker(name).answer(image, question, max_new_tokens=self.max_new_tokens): role
                for role, name, image, question in [
                    ("baseline_clean", "baseline", query.image, query.question),
                    ("baseline_perturbed", "baseline", query.perturbed_image, query.perturbed_question),
                    ("vittle_clean", vittle, query.image, query.question),
                    ("vittle_perturbed", vittle, query.perturbed_image, query.perturbed_question)]}
        for future in as_completed(jobs):
            answers[jobs[future]] = future.result().strip() or "(empty answer)"
            yield dict(answers)

    # ---------------------------------------------------------------- panels
    def panels(self, query: Query, vittle: str = "vittle-f", method: str = "pca") -> Panels:
        """Figures for the embedding map, the cosine-distance histograms and the posterior
        panels, plus the numbers behind them."""
        from vittle.analysis.evaluate.diagnostics import QueryPosterior
        from vittle.analysis.metrics import cosine_distances
        from vittle.analysis.perturb import CLEAN

        self.models.check_vittle(vittle)
        if method not in ("pca", "umap"):
            raise InputError(f"Unknown map method {method!r}; choose pca or umap.")
        labels = {"baseline": self.label("baseline"), vittle: self.label(vittle)}
        queued = {name: (self.worker(name).probe(query.image, query.question),  # all four queued: one pass per model
                         self.worker(name).probe(query.perturbed_image, query.perturbed_question)) for name in labels}
        probes = {name: (clean.result(), perturbed.result()) for name, (clean, perturbed) in queued.items()}
        query_distance = {labels[n]: float(cosine_distances(p[0].hidden_after[None], p[1].hidden_after[None])[0])
                          for n, p in probes.items()}
        posterior = QueryPosterior.from_probe(probes[vittle][1])
        numbers = PanelNumbers(spec=query.spec, layer={n: p[0].layer for n, p in probes.items()},
                               query_cosine_distance=query_distance, posterior=posterior)
        figures: dict[str, Any] = {"embeddings": None, "distances": None}
        if query.spec == CLEAN:
            summary = [CLEAN_SUMMARY]
        else:
            shift = self.references.analysis(method, query.spec, vittle)
            placed = {labels[n]: tuple(shift.place(n, [p[0].hidden_after, p[1].hidden_after])) for n, p in probes.items()}
            figures["embeddings"], figures["distances"] = shift_figures(shift, query.spec, labels, placed, query_distance, method)
            numbers.reference_cosine_mean = {labels[n]: shift.mean_distance(n, query.spec) for n in labels}
            summary = [shift_summary(numbers)]
        figures["variance"], figures["kl"], tokens_html, line = posterior_panels(probes[vittle][1], posterior, labels[vittle])
        return Panels(figures, tokens_html, "\n\n".join([*summary, line]), numbers)

    # ---------------------------------------------------------------- the lab's numbers
    def _lab_arm(self, name: str) -> str | None:
        """The lab arm a loaded model was exported from (its model card's data), if any."""
        card = model_card(self.paths[name])
        return card.name if card else None

    def _lab(self) -> Any:
        from vittle.analysis.lab import LabSummary

        if not self.config.lab:
            return None
        try:
            return LabSummary.load(self.config.lab)
        except FileNotFoundError:
            logger.warning("no lab results: %s is missing", self.config.lab)
            return None
        except (OSError, ValueError) as err:
            logger.warning("no lab results: %s", err)
            return None

    def robustness(self, vittle: str = "vittle-f") -> tuple[str, Any]:
        """The lab's numbers and severity curves for the loaded models (markdown, figure or None)."""
        from vittle.analysis.lab.report import severity_figure

        self.models.check_vittle(vittle)
        summary = self._lab()
        shown = {name: self._lab_arm(name) for name in ("baseline", vittle)}
        labels = {name: self.label(name) for name in shown}
        table = robustness_markdown(summary, shown, labels, self.paths, vittle)
        if summary is None:
            why = ("the app was started without one (--lab none)" if not self.config.lab else
                   f"its file {Path(self.config.lab).name} is missing or unreadable (the server log says why)")
            table = f"The robustness lab's results are not shown: {why}.\n\n{table}"
        found = {name: arm for name, arm in shown.items() if summary is not None and arm in summary.arms}
        figure = severity_figure(summary, list(found.values()), {arm: labels[name] for name, arm in found.items()}) if found else None
        return table, figure

