"""The app's coordinator: the only module the UI calls. It checks and perturbs a query, asks
the models (`vittle.app.models`) for the answers and probes, the reference sets (`vittle.app.reference`) for
the shift analysis, and the presentation (`vittle.app.presentation`) for the panels.

    service = DemoService(ServiceConfig())          # embedded tiny models from assets/
    service.start()                                 # load, embed the reference set, warm UMAP
    query = service.prepare("photo.png", "What colour is the shape?", visual="frost", severity=3)
    for answers in service.answers(query): ...      # four answers, streamed
    service.distributions(query, answers)           # the four answers' probabilities and the shift's effect
    service.sweep(image, question, "frost", "none") # the query at severities 1..5, both models
    panels = service.panels(query, method="pca")    # figures for the embedding / variance / distance tabs

Slow work (model loading, reference embeddings, UMAP's numba JIT) runs once, in the background
(`vittle.app.models.WarmUp`); the first request waits for it instead of paying it again. Each model
runs on its own worker thread that serves every user: the answers queued by concurrent requests
go through one batched `generate`, their probes through one forward, and a new perturbation's
reference embeddings run in chunks between them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import as_completed
from contextlib import AbstractContextManager, contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

from vittle.analysis.perturb import CLEAN, TranslationUnavailable, apply, describe, get_perturbation, get_translator, list_perturbations, unavailable
from vittle.analysis.umap_process import MapLost, UmapProcess
from vittle.app.config import ServiceConfig
from vittle.app.domain import DomainCheck
from vittle.app.inputs import InputError, QueryImage, clean_question, load_query_image
from vittle.app.model_facts import (
    answer_cap,
    answer_vocabulary,
    answerable,
    finding,
    is_translation,
    load_lab,
    model_strip,
    robustness_view,
    training_alpha,
)
from vittle.app.models import ModelPool, WarmUp
from vittle.app.overlay import overlay_spec
from vittle.app.presentation import CLEAN_SUMMARY, PanelNumbers, Panels, posterior_panels, shift_figures, shift_summary
from vittle.app.probe_results import Sweep, TurnDistributions
from vittle.app.probing import Probing
from vittle.app.query import NONE, ROLES, Query, setting_name, spec_of
from vittle.app.reference import ReferenceSets
from vittle.app.worker import ModelWorker
from vittle.memo import Memo

logger = logging.getLogger(__name__)


class DemoService:
    """The baseline and Vittle models, their reference sets and the lab's numbers, for the UI."""

    def __init__(self, config: ServiceConfig | None = None):
        self.config = config or ServiceConfig()
        self.models = ModelPool(self.config)
        self.corruptions = Memo(8)  # recent corrupted images: a severity sweep and the turn after it do not corrupt twice
        self.domain_check = DomainCheck(self.models)
        self.warm_up = WarmUp(self.models, lambda name, spec: self.references.prepare(name, spec), self.precompute_settings,
                              calibrate=self.domain_check.reference)
        self.umap: UmapProcess | None = None
        """UMAP's process (`warm_umap`), started with the service; None: UMAP runs here."""
        self.references = ReferenceSets(self.models, umap=lambda: self.umap, answer_tokens=lambda: self.max_new_tokens)
        self._turns = 0
        """Requests in progress (`turn`): the load measure that decides what a map computes now."""
        self._turns_lock = threading.Lock()

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
        """Start the background warm-up and (`warm_umap`) UMAP's process, which compiles while the
        models load (idempotent); returns self."""
        if self.config.warm_umap and self.umap is None:
            self.umap = UmapProcess(self.config.seed)
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

    @cached_property
    def probing(self) -> Probing:
        return Probing(self.models, answer_vocabulary(self.paths.values()), self.max_new_tokens)

    def training_alpha(self, name: str) -> float | None:
        """The alpha model `name` was trained to (None: no bottleneck)."""
        return training_alpha(self.paths[name]) if name in self.paths else None

    def _alpha(self, vittle: str, alpha: float | None) -> float | None:
        """A checked inference alpha for `vittle`; None when it is the model's own."""
        if alpha is None:
            return None
        if not 0.0 <= float(alpha) <= 1.0:
            raise InputError(f"Vittle's alpha must be between 0 and 1, got {alpha!r}.")
        return None if float(alpha) == self.training_alpha(vittle) else float(alpha)

    def domain(self, query: Query) -> Any:
        """Whether the query's (clean) image is like the models' training images
        (`vittle.app.domain`): a `DomainVerdict` with its score and the threshold above which the
        answers are guesses; None without an image, for models of another task, or while the
        calibration is still running."""
        return None if query.image is None else self.domain_check.verdict(query.image)

    def answerable(self) -> str:
        """What the loaded models can answer (lab models of the easy-vqa task; else "")."""
        return answerable(self.paths.values())

    def model_strip(self) -> str:
        """One plain line per model and the numbers behind them folded away (`model_facts.model_strip`)."""
        return model_strip(self.paths, {name: self.label(name) for name in self.paths}, self._lab())

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

    def close(self, cancel: bool = False) -> None:
        """Stop the model workers (after the jobs they hold; `cancel`: after the ones running now,
        the queued ones cancelled, as a server that is stopping does) and UMAP's process."""
        self.references.close()
        self.models.close(cancel)
        if self.umap is not None:
            self.umap.close()

    # ---------------------------------------------------------------- queries
    @contextmanager
    def turn(self) -> Iterator[None]:
        """Count a request (a whole turn, or a map) as in progress while the block runs: the
        maps of a request made while others are in progress leave optional work for later
        (`ReferenceSets.view`)."""
        with self._turns_lock:
            self._turns += 1
        try:
            yield
        finally:
            with self._turns_lock:
                self._turns -= 1

    def answering(self) -> AbstractContextManager[None]:
        """Mark a turn as waiting for its answers while the block runs: the warm-up's work (the
        start-up's reference sets and domain calibration) waits for it, two seconds at most at a
        time (`vittle.app.worker.Foreground`)."""
        return self.models.foreground.active()

    @property
    def busy(self) -> bool:
        """Whether another request is in progress besides the caller's (or jobs of users wait on a model)."""
        return self._turns > 1 or self.models.busy()

    def prepare(self, image: Any, question: str | None, visual: str | None = NONE, severity: int = 3,
                text: str | None = NONE, level: int = 3) -> Query:
        """Check the inputs and perturb them. `image` is a file path, a PIL image or None."""
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
            perturbed_image, perturbed_question = apply(spec, image=pil, text=question, seed=self.config.seed, memo=self.corruptions)
        except TranslationUnavailable as err:
            raise InputError(f"Translation is not available on this server: {err}") from err
        if pil is None and visual not in (None, NONE):
            notes.append("no image: the visual perturbation does nothing")
        if text not in (None, NONE, "") and is_translation(text):
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

    def answers(self, query: Query, vittle: str = "vittle-f", alpha: float | None = None) -> Iterator[dict[str, str]]:
        """The four answers (baseline/Vittle x clean/perturbed): yields the dict of all four
        each time one arrives. The four are queued at once, so each model answers the clean
        and the perturbed query (and whatever other users queued) in one batched pass.
        `alpha`: the Vittle model's inference alpha (None: its own)."""
        self.models.check_vittle(vittle)
        alpha = self._alpha(vittle, alpha)
        if not self.warm_up.running:  # at start-up the warm-up embeds the default setting's sets, after the users' answers
            self.references.prefetch(query.spec, vittle)  # (`Foreground`); a turn's own prefetch would not wait for them
        answers = dict.fromkeys(ROLES, "")
        jobs = {self.worker(name).answer(image, question, max_new_tokens=self.max_new_tokens, alpha=alpha if name == vittle else None): role
                for role, name, image, question in [
                    ("baseline_clean", "baseline", query.image, query.question),
                    ("baseline_perturbed", "baseline", query.perturbed_image, query.perturbed_question),
                    ("vittle_clean", vittle, query.image, query.question),
                    ("vittle_perturbed", vittle, query.perturbed_image, query.perturbed_question)]}
        for future in as_completed(jobs):
            answers[jobs[future]] = future.result().strip() or "(empty answer)"
            yield dict(answers)

    def distributions(self, query: Query, answers: dict[str, str], vittle: str = "vittle-f",
                      alpha: float | None = None) -> TurnDistributions:
        """Each of the four answers' probabilities over the candidate answers, and per model the
        drop of its clean answer's probability and the total variation under the shift."""
        self.models.check_vittle(vittle)
        return self.probing.distributions(query, answers, vittle, self._alpha(vittle, alpha))

    def sweep(self, image: Any, question: str | None, visual: str | None = NONE, text: str | None = NONE,
              vittle: str = "vittle-f", alpha: float | None = None) -> Sweep:
        """The query under the chosen corruption at severities 1..5 (with the text shift at
        levels 1..5, when it has levels), for both models (`Probing.sweep`)."""
        self.models.check_vittle(vittle)
        alpha = self._alpha(vittle, alpha)
        base = self.prepare(image, question, visual, 1, text, 1)
        if base.image is None:
            raise InputError("The sweep needs an image: it perturbs the image at each severity.")
        swept = [name for name in (visual, text) if name not in (None, NONE, "") and get_perturbation(name).has_levels]
        if not swept:
            raise InputError("The sweep varies a severity: choose a visual corruption, or a text perturbation with levels "
                             "(translations have none).")
        steps = []
        for severity in range(1, 6):
            spec = spec_of(visual, severity, text, severity)
            perturbed_image, perturbed_question = apply(spec, base.image, base.question, self.config.seed, memo=self.corruptions)
            steps.append((severity, spec, perturbed_image, perturbed_question or base.question))
        setting = " + ".join(f"{get_perturbation(n).label} {'severity' if n == visual else 'level'} 1-5" if n in swept
                             else get_perturbation(n).label for n in (visual, text) if n not in (None, NONE, ""))
        result = self.probing.sweep(base.image, base.question, steps, setting, vittle, alpha)
        result.notes = [note for note in base.notes if "gloss" in note or "image" in note]
        return result

    # ---------------------------------------------------------------- panels
    def panels(self, query: Query, vittle: str = "vittle-f", method: str = "pca") -> Panels:
        """Figures for the embedding map, the cosine-distance histograms and the posterior
        panels, plus the numbers behind them."""
        from vittle.analysis.evaluate.diagnostics import QueryPosterior  # heavy
        from vittle.analysis.metrics import cosine_distances  # heavy
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
            try:
                placed = {labels[n]: tuple(shift.place(n, [p[0].hidden_after, p[1].hidden_after])) for n, p in probes.items()}
            except MapLost:  # UMAP's process was restarted since this map was fitted: fit it again
                self.references.forget_analysis(method, query.spec, vittle)
                shift = self.references.analysis(method, query.spec, vittle)
                placed = {labels[n]: tuple(shift.place(n, [p[0].hidden_after, p[1].hidden_after])) for n, p in probes.items()}
            view = self.references.view(query.spec, labels, now=not self.busy)  # under load the map's answers wait
            figures["embeddings"], figures["distances"] = shift_figures(shift, query.spec, labels, placed, query_distance, method, view)
            numbers.reference_cosine_mean = {labels[n]: shift.mean_distance(n, query.spec) for n in labels}
            summary = [shift_summary(numbers)]
        setting = setting_name(query.spec)
        figures["variance"], figures["kl"], tokens_html, line = posterior_panels(probes[vittle][1], posterior, labels[vittle], setting)
        figures["overlay"] = overlay_spec(probes[vittle][1], query.perturbed_image, labels[vittle], setting) if posterior else None
        return Panels(figures, tokens_html, "\n\n".join([*summary, line]), numbers)

    def reference_query(self, index: int, folder: Path) -> tuple[Path, str]:
        """(image file, question) of reference query `index` (a map point), its image copied into `folder`."""
        try:
            return self.references.query(index, folder)
        except IndexError as err:
            raise InputError(str(err)) from err

    # ---------------------------------------------------------------- the lab's numbers
    def _lab(self) -> Any:
        return load_lab(self.config.lab)

    def robustness(self, vittle: str = "vittle-f") -> tuple[str, Any]:
        """The lab's numbers and severity curves for the loaded models (markdown, figure or None)."""
        self.models.check_vittle(vittle)
        names = ("baseline", vittle)
        return robustness_view(self._lab(), self.config.lab, {n: self.paths[n] for n in names}, {n: self.label(n) for n in names}, vittle,
                               self.config.staged)
