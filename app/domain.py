"""Is the query's image like the ones the models were trained on? For models of the easy-vqa
task (lab models: their cards say so), the baseline's own image features of the query are
scored against easy-vqa train images and calibrated on held-out easy-vqa test images
(vittle.analysis.domain): an image above the threshold gets a badge saying the answers are
guesses. Models of other tasks get no score (their training images are not known here).

The calibration runs once, in the warm-up after the default reference sets (its images go
through the baseline's worker in chunks, so answers run between them), and is kept in the
embeddings' cache folder under the baseline's fingerprint: a later start reads it. A turn asks
for its score last, once its answers and panels are on the page, and waits for a calibration
still under way (or runs it, if the warm-up has not reached it): a photo sent in the app's first
seconds gets its badge like any other.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import easy_vqa

from vittle.analysis.domain import DomainReference, DomainVerdict
from vittle.app.model_facts import answerable
from vittle.app.worker import SingleFlight
from vittle.files import default_cache_dir

logger = logging.getLogger(__name__)

TRAIN_IMAGES = 160
"""easy-vqa train images whose features are the reference (k nearest neighbours)."""
HELDOUT_IMAGES = 160
"""easy-vqa test images, the last ones (none of them in the reference sets or the gallery),
whose scores set the threshold (their 95th percentile)."""


class DomainCheck:
    """The domain score of a query image, through the baseline's worker."""

    def __init__(self, pool: Any):
        self.pool = pool
        self._reference = SingleFlight(1)
        self.applicable = bool(answerable(pool.paths.values()))
        """Every model is a lab model of easy-vqa: their training images are known."""

    @property
    def ready(self) -> bool:
        return "reference" in self._reference

    def reference(self) -> DomainReference | None:
        """The calibrated reference (computed once: 400 images through the baseline's tower and
        projector); None for models of another task."""
        if not self.applicable:
            return None
        return self._reference.get("reference", self._fit)

    def _fit(self) -> DomainReference:
        from vittle.analysis.representations import model_fingerprint  # heavy

        worker = self.pool.worker("baseline")
        root = self.pool.config.cache_dir or default_cache_dir()
        path = Path(root) / model_fingerprint(worker.assistant) / f"domain-{TRAIN_IMAGES}-{HELDOUT_IMAGES}.npz"
        cached = DomainReference.load(path)
        if cached is not None:  # the same baseline, calibrated at an earlier start
            return cached
        tests = easy_vqa.get_test_image_paths()
        train = [easy_vqa.get_train_image_paths()[i] for i in range(TRAIN_IMAGES)]
        heldout = [tests[i] for i in range(len(tests) - HELDOUT_IMAGES, len(tests))]
        reference = DomainReference.fit(worker.image_features(train), worker.image_features(heldout))
        try:
            reference.save(path)
        except OSError as err:  # a read-only cache: calibrated again at the next start
            logger.warning("could not keep the domain calibration in %s: %s", path, err)
        return reference

    def verdict(self, image: Any) -> DomainVerdict | None:
        """The query image's score and threshold; None for models of another task. Waits for
        the calibration (computed once, whoever asks first)."""
        reference = self.reference()
        if reference is None:
            return None
        score = float(reference.score(self.pool.worker("baseline").image_features([image]))[0])
        return DomainVerdict(round(score, 4), round(reference.threshold, 4))
