"""The reference set behind the embedding and distance panels: easy-vqa test images, one
question each, embedded by each model clean and under each shift a user asks for.

    references = ReferenceSets(pool, config)
    references.embeddings("baseline", "frost:3")          # {"clean": (n, d), "frost:3": (n, d)}
    references.analysis("pca", "frost:3", "vittle-f")     # vittle.analysis.shift.ShiftAnalysis of both models
    references.answers("baseline", "frost:3")             # {"clean": [...], "frost:3": [...]}: the model's answers
    references.thumbnails("frost:3")                      # the perturbed images as small data URIs (the map's hover)

Each embedding set, perturbed input set and map is computed once however many requests ask
for it at the same time (`SingleFlight`), and a bounded number of each is kept (the least
recently used leave first); the perturbation runs outside the model workers, the
embedding in chunks between the users' batches on each model's worker, the two models' side by
side, and on disk (`vittle.analysis.representations`) so that a restart reads them back.
"""

from __future__ import annotations

import base64
import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from vittle.analysis.evaluate.runner import Variants, load_samples
from vittle.analysis.perturb import CLEAN
from vittle.analysis.umap_process import UmapProcess
from vittle.app.map_figure import ReferenceView
from vittle.app.models import ModelPool
from vittle.app.worker import SingleFlight, ViaWorker
from vittle.files import write_bytes_atomic

logger = logging.getLogger(__name__)

SETTINGS_KEPT = 160
"""Per-(model, setting) results kept in memory (embeddings, answers) and per-setting thumbnails:
the background precompute's 45 visual settings and clean, for each of three models (138), fit. Each is
tens of KB; one asked for again after it left is read back from the disk cache (embeddings) or
recomputed."""
PERTURBED_KEPT = 16
"""Perturbed reference inputs kept (about 0.6 MB each at 48 images): needed only while a new
setting's embeddings, answers and thumbnails are made."""
ANALYSES_KEPT = 32
"""Maps (PCA or UMAP of both models' states) kept: the heaviest entry, and the cheapest to redo."""
DEFERRED_KEPT = 64
"""(model, setting) pairs whose map answers wait for a quiet moment; past this the oldest are dropped."""


class ReferenceSets:
    def __init__(self, pool: ModelPool, umap: Callable[[], UmapProcess | None] = lambda: None, answer_tokens: Callable[[], int] = lambda: 4):
        self.pool, self.config = pool, pool.config
        self._umap = umap
        """Where UMAP maps are fitted: the service's UMAP process, or None (here)."""
        self._answer_tokens = answer_tokens
        """The answers' length cap (the service's)."""
        self._answers = SingleFlight(SETTINGS_KEPT)
        """(model, spec) -> the model's answers to the reference queries under spec."""
        self._thumbnails = SingleFlight(SETTINGS_KEPT)
        """spec -> the reference images under spec as data URIs."""
        self._samples = SingleFlight(1)
        """() -> (samples, Variants): the reference set, chosen once."""
        self.cache = SingleFlight(SETTINGS_KEPT)
        """(model, spec) -> (n, d) embeddings."""
        self._perturbed = SingleFlight(PERTURBED_KEPT)
        """spec -> the reference set's perturbed inputs (shared by the models)."""
        self._analyses = SingleFlight(ANALYSES_KEPT)
        """(method, spec, vittle) -> ShiftAnalysis."""
        self._cache_keys = SingleFlight(16)
        """model -> its embeddings' cache folder (model and data fingerprints)."""
        self._background = ThreadPoolExecutor(max_workers=32, thread_name_prefix="vittle-reference")
        """Runs each model's embedding of a turn side by side, started with the turn's answers."""
        self._deferred: OrderedDict[tuple[str, str], None] = OrderedDict()
        """(model, spec) whose answers the map left out under load, newest last (`view`)."""
        self._deferred_wake = threading.Condition()
        self._deferred_thread: threading.Thread | None = None

    def samples(self) -> tuple[list[dict[str, Any]], Any]:
        """(samples, Variants): the first `reference_images` easy-vqa test images, one question
        each, rotating through each image's questions for a mix of kinds."""
        def choose() -> tuple[list[dict[str, Any]], Any]:
            by_image: dict[Any, list[dict[str, Any]]] = {}
            for row in load_samples("easyvqa", limit_images=self.config.reference_images):
                by_image.setdefault(row["image_id"], []).append(row)
            samples = [qs[i % len(qs)] for i, qs in enumerate(by_image.values())]
            return samples, Variants(samples, seed=self.config.seed, pause=self.pool.foreground.yield_to_users)

        return self._samples.get((), choose)

    def embeddings(self, name: str, spec: str) -> dict[str, np.ndarray]:
        """{"clean": (n, d), spec: (n, d)}: model `name`'s reference-set embeddings, each
        computed once (from the disk cache when it has them)."""
        from vittle.analysis.representations import cache_key, extract  # heavy

        samples, variants = self.samples()
        worker = self.pool.worker(name)
        # the models are frozen: their cache folder is hashed once, not on every new setting
        key = self._cache_keys.get(name, lambda: cache_key(worker.assistant, samples, variants.seed))

        def embed(wanted: str) -> np.ndarray:
            self._perturbed.get(wanted, lambda: variants.get(wanted))  # perturbed once for every model, on this thread
            return extract(ViaWorker(worker), samples, [wanted], cache_dir=self.config.cache_dir, progress=False,
                           variants=variants, desc=f"reference {name}", key=key)[wanted]

        return {s: self.cache.get((name, s), lambda s=s: embed(s)) for s in dict.fromkeys([CLEAN, spec])}

    def answers(self, name: str, spec: str) -> dict[str, list[str]]:
        """{"clean": [...], spec: [...]}: model `name`'s greedy answers to the reference queries,
        each set computed once, on its worker after the users' jobs (`ModelWorker.answers`)."""
        _, variants = self.samples()
        worker = self.pool.worker(name)

        def answer(wanted: str) -> list[str]:
            images, questions = self._perturbed.get(wanted, lambda: variants.get(wanted))
            return [text.strip() or "(empty answer)" for text in worker.answers(images, questions, self._answer_tokens())]

        return {s: self._answers.get((name, s), lambda s=s: answer(s)) for s in dict.fromkeys([CLEAN, spec])}

    def thumbnails(self, spec: str) -> list[str]:
        """The reference images under `spec` (the clean ones for "clean") as WebP data URIs, for
        the map's hover; computed once per spec (a few hundred bytes to a few KB each)."""
        _, variants = self.samples()

        def encode() -> list[str]:
            uris = []
            for image in self._perturbed.get(spec, lambda: variants.get(spec))[0]:
                buffer = io.BytesIO()
                if image is not None:
                    image.convert("RGB").save(buffer, "WEBP", quality=70)
                uris.append("data:image/webp;base64," + base64.b64encode(buffer.getvalue()).decode() if image is not None else "")
            return uris

        return self._thumbnails.get(spec, encode)

    def view(self, spec: str, labels: dict[str, str], now: bool = True) -> ReferenceView:
        """The reference queries as the map's hover shows them under `spec`, for the models of
        `labels` (name -> label): question, kind, expected answer, each model's answers clean and
        perturbed, and the images' thumbnails.

        The models' answers are the costliest part of a new setting (two batched generations of
        every reference query, more than its embeddings) and only decorate the hover. With
        `now` false (other requests are in progress: `DemoService.busy`) a model's answers not yet computed are left
        out (`answers_pending`) and computed once the models have been quiet for a moment: under
        load a turn does not pay for them, and a later map of the setting has them."""
        samples, _ = self.samples()
        answers, pending = {}, False
        for name, label in labels.items():
            if now or self.has_answers(name, spec):
                given = self.answers(name, spec)
                answers[label] = {"clean": given[CLEAN], "perturbed": given[spec]}
            else:
                self.defer_answers(name, spec)
                pending = True
        return ReferenceView([s["question"] for s in samples], [s.get("kind", "other") for s in samples], [s["answer"] for s in samples],
                             answers, {"clean": self.thumbnails(CLEAN), "perturbed": self.thumbnails(spec)}, pending)

    def has_answers(self, name: str, spec: str) -> bool:
        """Whether model `name`'s answers clean and under `spec` are computed and kept."""
        return (name, CLEAN) in self._answers and (name, spec) in self._answers

    def defer_answers(self, name: str, spec: str) -> None:
        """Compute model `name`'s answers under `spec` once the models have been quiet for
        `precompute_quiet_s` (newest first; at most DEFERRED_KEPT wait, the oldest dropped)."""
        with self._deferred_wake:
            self._deferred[(name, spec)] = None
            self._deferred.move_to_end((name, spec))
            while len(self._deferred) > DEFERRED_KEPT:
                self._deferred.popitem(last=False)
            if self._deferred_thread is None:
                self._deferred_thread = threading.Thread(target=self._answer_deferred, name="vittle-deferred-answers", daemon=True)
                self._deferred_thread.start()
            self._deferred_wake.notify()

    def _answer_deferred(self) -> None:
        while True:
            with self._deferred_wake:
                while not self._deferred:
                    self._deferred_wake.wait()
            self.pool.wait_quiet(self.config.precompute_quiet_s)
            with self._deferred_wake:
                if not self._deferred:
                    continue
                (name, spec), _ = self._deferred.popitem(last=True)
            try:
                self.answers(name, spec)
            except Exception as err:  # asked again by the next map of this setting
                logger.debug("the deferred answers of %s under %s failed: %s", name, spec, err)

    def query(self, index: int, folder: Path) -> tuple[Path, str]:
        """(image file, question) of reference query `index`, its clean image copied once into
        `folder` (a folder the server may serve), for loading it into the inputs."""
        samples, _ = self.samples()
        if not 0 <= index < len(samples):
            raise IndexError(f"There is no reference query {index}; the map shows {len(samples)}.")
        source = Path(samples[index]["image_path"])
        target = folder / f"easyvqa-test-{samples[index]['image_id']}{source.suffix}"
        if not target.is_file():
            write_bytes_atomic(target, source.read_bytes())
        return target, samples[index]["question"]

    def for_models(self, models: list[str], spec: str) -> dict[str, dict[str, np.ndarray]]:
        """`embeddings` of several models at once: each model's worker queues its own chunks,
        so the embeddings of a new setting run side by side, not one after the other."""
        futures = {name: self._background.submit(self.embeddings, name, spec) for name in models}
        return {name: future.result() for name, future in futures.items()}

    def prefetch(self, spec: str, vittle: str) -> None:
        """Start a new setting's embeddings while its answers are made (the panels that follow
        find them done or under way); errors surface in the panels, which ask again."""
        if spec != CLEAN:
            for name in ("baseline", vittle):
                self._background.submit(self._quiet, name, spec)
            self._background.submit(self.thumbnails, spec)

    def prepare(self, name: str, spec: str) -> None:
        """Model `name`'s embeddings and answers under `spec` (what its map needs), computed now."""
        self.embeddings(name, spec)
        self.answers(name, spec)

    def _quiet(self, name: str, spec: str) -> None:
        try:
            self.embeddings(name, spec)  # the answers only when the map asks (`view`): under load they wait for a quiet moment
        except Exception as err:
            logger.debug("prefetching the reference set of %s for %s failed: %s", name, spec, err)

    def analysis(self, method: str, spec: str, vittle: str) -> Any:
        """The `vittle.analysis.shift.ShiftAnalysis` of the baseline and `vittle` on the reference set
        under `spec`: one map of both models' clean and shifted states, and their distances."""
        from vittle.analysis.shift import ShiftAnalysis  # heavy

        def compute() -> ShiftAnalysis:
            return ShiftAnalysis.compute(self.for_models(["baseline", vittle], spec), method=method, seed=self.config.seed,
                                         umap=self._umap() if method == "umap" else None)

        return self._analyses.get((method, spec, vittle), compute)

    def forget_analysis(self, method: str, spec: str, vittle: str) -> None:
        """Drop a kept map (its UMAP process was restarted: it cannot place points any more)."""
        self._analyses.discard((method, spec, vittle))

    def close(self) -> None:
        self._background.shutdown(wait=False, cancel_futures=True)
