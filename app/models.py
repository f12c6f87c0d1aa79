"""The app's models: loading (once, under a lock), one worker thread each, and the warm-up.

    pool = ModelPool({"baseline": PATH, "vittle-f": PATH}, device="auto", prefix_cache_mb=512)
    pool.worker("baseline").answer(image, question)      # a Future: the worker batches every user's queries
    WarmUp(pool, reference, settings).start()            # load, calibrate, embed, precompute, in the background

Each model runs on its own `vittle.app.worker.ModelWorker`, the only thread that calls it, so the
models need no lock per call; loading is the one step under a lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError
from typing import Any

import vittle.analysis.lab.report  # noqa: F401  (loaded before any thread asks for it: see WarmUp.start)
from vittle.analysis.lab.staged_plan import STAGED_ARMS
from vittle.app.config import ASSETS, ServiceConfig, compared
from vittle.app.inputs import InputError
from vittle.app.model_facts import model_card
from vittle.app.worker import Foreground, ModelWorker, WorkerClosed, warm_up_work
from vittle.memo import Memo

logger = logging.getLogger(__name__)

PIXELS_KEPT = 128
"""Encoded images the models share (about 77 MB at 224 x 224)."""
LABELS = {"baseline": "Baseline", "vittle-f": "Vittle (F)", "vittle-l": "Vittle (L)"}


def model_label(name: str, path: str) -> str:
    """The UI's name of a model: its role (Baseline, Vittle (F), Vittle (L)) with its path when it
    is not an embedded model; a compared model by its model card (the method and the unit of the
    staged study, e.g. "ROSS (b0-s0)"), else by its name and path."""
    if name in LABELS:
        return LABELS[name] if path.startswith(str(ASSETS)) else f"{LABELS[name]}: {path}"
    card = model_card(path)
    if card is not None and getattr(card, "name", ""):
        method = next((arm.label for arm in STAGED_ARMS if arm.name == card.name), card.name)
        unit = getattr(card, "unit", "")
        return f"{method} ({unit})" if unit else method
    return f"{name}: {path}"


class ModelPool:
    """The baseline and the selectable Vittle models, loaded on first use."""

    def __init__(self, config: ServiceConfig):
        self.config = config
        self.paths = {"baseline": config.baseline, "vittle-f": config.vittle}
        if config.vittle_l:
            self.paths["vittle-l"] = config.vittle_l
        self.paths.update(compared(config.compare))
        self.labels = {name: model_label(name, path) for name, path in self.paths.items()}
        self._assistants: dict[str, Any] = {}
        self._workers: dict[str, ModelWorker] = {}
        self._lock = threading.Lock()
        self.pixels = Memo(PIXELS_KEPT)
        """Encoded images, shared by the models: those of one processor's settings encode an image once."""
        self.foreground = Foreground()
        """Users' turns waiting for their answers: the warm-up's jobs and its reference images'
        corruption wait for them."""
        self.tower_cache: Any = None
        """The feature cache the models' vision towers share, where theirs keep one (`Assistant.share_vision_cache`)."""

    @property
    def vittle_choices(self) -> list[tuple[str, str]]:
        """(label, name) of the selectable Vittle models."""
        return [(self.label(name), name) for name in self.paths if name != "baseline"]

    def label(self, name: str) -> str:
        """The UI's name of a model (`model_label`)."""
        return self.labels[name]

    def check_vittle(self, name: str) -> None:
        if name == "baseline" or name not in self.paths:
            raise InputError(f"Unknown Vittle model {name!r}; choose one of {', '.join(n for n in self.paths if n != 'baseline')}.")

    def assistant(self, name: str) -> Any:
        """The loaded Assistant `name` (loads it, and starts its worker, on first use)."""
        if name not in self.paths:
            raise InputError(f"Unknown model {name!r}; choose one of {', '.join(self.paths)}.")
        with self._lock:
            if name not in self._assistants:
                from vittle.inference import Assistant  # heavy

                logger.info("loading %s from %s", name, self.paths[name])
                assistant = Assistant.load(self.paths[name], device=self.config.device, pixel_memo=self.pixels)
                self.tower_cache = assistant.share_vision_cache(self.tower_cache)
                if self.config.prefix_cache_mb > 0:
                    try:
                        assistant.enable_prefix_cache(self.config.prefix_cache_mb * 1024 * 1024)
                    except NotImplementedError as err:  # a family that refuses it (Qwen's 3-D positions, Idefics3's tiles)
                        logger.warning("%s runs without the prefix cache: %s", name, err)  # answers as fast; text shifts re-embed
                self._workers[name] = ModelWorker(assistant, name, foreground=self.foreground).start()
                self._assistants[name] = assistant
            return self._assistants[name]

    def worker(self, name: str) -> ModelWorker:
        """The thread that runs model `name` for every request (loads the model on first use)."""
        self.assistant(name)
        return self._workers[name]

    def loaded(self) -> list[str]:
        return [name for name in self.paths if name in self._assistants]

    @property
    def device(self) -> str:
        return str(next(iter(self._assistants.values())).device) if self._assistants else self.config.device

    def busy(self) -> bool:
        """Whether users' jobs are queued on any model (other turns are waiting for it)."""
        return any(worker.waiting() for worker in list(self._workers.values()))

    def wait_quiet(self, seconds: float) -> None:
        """Return once no model worker has had a user query for `seconds`."""
        while True:
            last = max((worker.last_query for worker in list(self._workers.values())), default=float("-inf"))
            idle = time.monotonic() - last
            if idle >= seconds:
                return
            time.sleep(min(seconds - idle, 0.25))

    def close(self, cancel: bool = False) -> None:
        """Stop the workers (after the jobs they hold; `cancel`: after the ones running now)."""
        for worker in list(self._workers.values()):
            worker.close(cancel)


class WarmUp:
    """The slow start, in background threads: load every model, embed the reference set under
    the default setting, calibrate the domain score; then (optionally) embed every visual setting's
    reference set while no user is asking. The first request waits for what it needs instead
    of paying for it again."""

    def __init__(self, pool: ModelPool, reference: Callable[[str, str], Any], settings: Callable[[], list[str]],
                 calibrate: Callable[[], Any] | None = None):
        self.pool, self.config = pool, pool.config
        self._reference, self._settings, self._calibrate = reference, settings, calibrate
        self._thread: threading.Thread | None = None
        self._loaded = threading.Event()
        """Set once every model is loaded (or loading failed): a turn's answers need no more."""
        self.error: str | None = None
        self.timings: dict[str, float] = {}
        self.precomputed: tuple[int, int] | None = None
        """(done, total) reference sets of the background precompute; None before it starts."""

    def start(self) -> WarmUp:
        """Start the warm-up (idempotent)."""
        if self._thread is None:
            # modules that request threads would otherwise import lazily, several at once: two
            # threads importing plotly's circular submodules can deadlock (seen under load)
            import plotly.graph_objects  # heavy  # noqa: F401
            import plotly.io  # heavy  # noqa: F401
            import plotly.subplots  # heavy  # noqa: F401

            self._thread = threading.Thread(target=self._run, name="vittle-warm-up", daemon=True)
            self._thread.start()
        return self

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def running(self) -> bool:
        """Whether the start-up's work (models, the default reference sets, the domain
        calibration) is still under way (the precompute that may follow is not counted)."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the models are loaded and the default reference sets embedded; False on timeout."""
        self.start()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def wait_models(self, timeout: float | None = None) -> bool:
        """Block until every model is loaded (or loading failed); False on timeout. A turn's
        answers wait for this only: its panels wait for the reference sets they read."""
        self.start()
        return self._loaded.wait(timeout)

    def _run(self) -> None:
        with warm_up_work():  # users' turns go first (`Foreground`)
            self._warm_up()

    def _warm_up(self) -> None:
        try:
            started = time.perf_counter()
            try:
                for name in self.pool.paths:
                    self.pool.assistant(name)
            except Exception as err:
                self.error = f"{type(err).__name__}: {err}"  # before the waiters wake up
                raise
            finally:
                self._loaded.set()
            self.timings["load_seconds"] = round(time.perf_counter() - started, 2)
            started = time.perf_counter()
            for name in ("baseline", "vittle-f"):
                self._reference(name, self.config.default_spec)
            self.timings["reference_seconds"] = round(time.perf_counter() - started, 2)
            if self._calibrate is not None:  # the domain score's reference (vittle.app.domain)
                started = time.perf_counter()
                self._calibrate()
                self.timings["domain_seconds"] = round(time.perf_counter() - started, 2)
        except (CancelledError, WorkerClosed):  # the app is stopping: its queued work was cancelled
            logger.info("warm-up stopped: the app is stopping")
            return
        except Exception as err:  # reported in the UI's status line, and again on use
            logger.exception("warm-up failed")
            self.error = f"{type(err).__name__}: {err}"
            return
        if self.config.precompute:
            threading.Thread(target=self._precompute, name="vittle-precompute", daemon=True).start()

    def _precompute(self) -> None:  # not `warm_up_work`: it waits for a quiet second before each setting instead
        settings = self._settings()
        self.precomputed = (0, len(settings))
        started = time.perf_counter()
        for done, spec in enumerate(settings, start=1):
            self.pool.wait_quiet(self.config.precompute_quiet_s)
            try:
                for name in ("baseline", "vittle-f"):
                    self._reference(name, spec)
            except (CancelledError, WorkerClosed):  # the app is stopping
                return
            except Exception:
                logger.exception("precomputing the reference set of %s failed; it is computed on first use", spec)
            self.precomputed = (done, len(settings))
        self.timings["precompute_seconds"] = round(time.perf_counter() - started, 2)

    def state(self) -> str:
        """"warming up", "ready" or "ready; reference sets ... k/n embedded"."""
        if self._thread is None or not self._loaded.is_set():
            return "warming up"
        if self._thread.is_alive():
            return "ready to answer; the reference sets of the panels are being embedded"
        if self.precomputed and self.precomputed[0] < self.precomputed[1]:
            return f"ready; reference sets of the visual shifts {self.precomputed[0]}/{self.precomputed[1]} embedded"
        return "ready"
