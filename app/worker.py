"""Serving a model to many users at once: one thread per model that batches their queries.

    worker = ModelWorker(assistant, "baseline").start()
    future = worker.answer(image, "What colour is the shape?", max_new_tokens=24)
    future.result()                                   # "red"
    worker.probe(image, question).result()            # a ProbeResult
    worker.embed(images, questions)                   # (N, d), in chunks between the answers
    worker.answers(images, questions)                 # a reference set's answers, after the users' jobs
    worker.distribution(images, questions, candidates, alpha=0.0).result()  # (AnswerDistributions, states)

Every call only queues a job. The worker thread is the only one that runs the model (so the
bottleneck's per-forward state and the fast tokenizer are never shared between threads), and
each pass takes everything of one kind that is queued: all waiting answers in one batched
`generate`, all waiting probes in one forward. Sixteen users asking at once therefore cost a
few batched passes instead of 64 single ones. Answers go first, then answer distributions, then
probes, then a reference set's answers; a long embedding job (a new perturbation's reference
set) runs in chunks, one between any two batches, so it holds up the answers queued behind it
for at most one chunk and is never starved by them. While a user's turn waits for its answers
(`Foreground`: from its inputs to its answers on the page), warm-up work (`warm_up_work`) waits
instead, even that chunk, for two seconds at most at a time: on a machine's first start the
reference sets are embedded from nothing while the first visitor asks.

A job may carry its own inference alpha for a Vittle model (0 = bottleneck off, 1 = posterior
mean only): the worker sets it around that job's pass only (`vittle.model.bottleneck_alpha`), and
batches together only jobs of the same alpha, so one user's alpha never leaks into another's.

`SingleFlight` computes a keyed value once however many threads ask for it at the same time,
and keeps a bounded number of them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from vittle.memo import Memo

logger = logging.getLogger(__name__)

T = TypeVar("T")

PRIORITY = ("length", "answer", "distribution", "probe", "answers", "features", "embed")
"""The order in which a pass picks the kind of job it runs (cheapest and most urgent first)."""
USER_KINDS = ("length", "answer", "distribution", "probe")
"""The kinds of job a user's turn waits for (the others are reference-set work)."""
BACKGROUND_KINDS = ("answers", "features", "embed")
"""Reference-set work and image features, one chunk per pass (warm-up jobs of these kinds wait for users' turns: `Foreground`)."""


@dataclass
class _Job:
    kind: str
    image: Any
    """An image (a list of images for "embed")."""
    question: Any
    """A question (a list of questions for "embed")."""
    future: Future = field(default_factory=Future)
    max_new_tokens: int = 0
    alpha: float | None = None
    """The Vittle model's inference alpha for this job (None: its own)."""
    candidates: tuple[str, ...] = ()
    """Candidate answers of a "distribution" job."""
    top_k: int = 0
    states: bool = False
    """A "distribution" job also returns the queries' layer-l states (`Assistant.embed`)."""

    warm_up: bool = False
    """Queued by warm-up work (`warm_up_work`): it waits for users' turns (`Foreground`)."""

    def batch_key(self) -> tuple:
        """Jobs with equal keys can run in one pass (a top-k distribution job runs alone:
        its extra candidates come from its own queries)."""
        return (self.max_new_tokens, self.alpha, self.candidates, self.top_k, self.states, id(self) if self.top_k else 0)


_thread_role = threading.local()


@contextmanager
def warm_up_work() -> Iterator[None]:
    """Mark what the calling thread queues while the block runs as warm-up work (the start-up's
    reference sets and domain calibration): it waits for users' turns (`Foreground`). Work a
    user's turn asks for is never marked, nor the background precompute, which waits for a quiet
    second before each setting: held back during a turn's answers, its chunks would run in the
    turn's panels instead, which wait for the worker (2.7 s more per turn, measured)."""
    previous = getattr(_thread_role, "warm_up", False)
    _thread_role.warm_up = True
    try:
        yield
    finally:
        _thread_role.warm_up = previous


def doing_warm_up() -> bool:
    """Whether the calling thread is doing warm-up work (`warm_up_work`)."""
    return bool(getattr(_thread_role, "warm_up", False))


class Foreground:
    """Users' turns waiting for their answers. While one is, warm-up work (`warm_up_work`: the
    start-up's reference sets and domain calibration) waits instead of sharing
    the CPU (and the interpreter) with it, for at most `max_defer_s` at a time: delayed, never
    starved. The reference sets a user's turn asks for are not warm-up work and keep their turn
    between batches (`ModelWorker`), so the panels of many users on new settings are not held up.

        with foreground.active():      # a turn, from its inputs to its answers
            ...
        foreground.yield_to_users()    # warm-up work, between two of its steps (a no-op on other threads)
    """

    def __init__(self, max_defer_s: float = 2.0):
        if max_defer_s < 0:
            raise ValueError(f"max_defer_s={max_defer_s} must be at least 0")
        self.max_defer_s = max_defer_s
        self._count = 0
        self._idle = threading.Condition()
        self.deferrals = 0
        """Times warm-up work on a thread waited for a turn (the workers count their own)."""

    @contextmanager
    def active(self) -> Iterator[None]:
        with self._idle:
            self._count += 1
        try:
            yield
        finally:
            with self._idle:
                self._count -= 1
                self._idle.notify_all()

    @property
    def busy(self) -> bool:
        """Whether a user's turn is waiting for its answers now."""
        return self._count > 0

    def yield_to_users(self, limit: float | None = None) -> float:
        """On a thread doing warm-up work, wait while a turn waits for its answers, at most
        `limit` (default `max_defer_s`) seconds; returns the seconds waited."""
        if not self._count or not doing_warm_up():
            return 0.0
        started = time.monotonic()
        with self._idle:
            self.deferrals += 1
            self._idle.wait_for(lambda: not self._count, timeout=self.max_defer_s if limit is None else limit)
        return time.monotonic() - started


class WorkerClosed(RuntimeError):
    """A job was asked of a worker that is stopped (the app is shutting down)."""


class ModelWorker:
    """Runs one `Assistant` for every thread that uses it, batching what they queue."""

    def __init__(self, assistant: Any, name: str = "model", max_batch: int = 32, embed_chunk: int = 16,
                 foreground: Foreground | None = None):
        if max_batch < 1 or embed_chunk < 1:
            raise ValueError(f"max_batch={max_batch} and embed_chunk={embed_chunk} must be at least 1")
        self.assistant = assistant
        self.foreground = foreground
        """Users' turns waiting for answers: warm-up jobs wait for them (`Foreground`); None: no waiting."""
        self.name = name
        self.max_batch = max_batch
        self.embed_chunk = embed_chunk
        self._queues: dict[str, deque[_Job]] = {kind: deque() for kind in PRIORITY}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._last = ""
        self.passes: dict[str, int] = dict.fromkeys(PRIORITY, 0)
        """Batched passes run per kind (for tests and the load benchmark)."""
        self.jobs: dict[str, int] = dict.fromkeys(PRIORITY, 0)
        """Jobs served per kind."""
        self.deferred = 0
        """Times warm-up jobs waited for a user's turn (`Foreground`)."""
        self._waiting_since: float | None = None
        """When queued warm-up work first waited for a turn (None: it has run since)."""
        self.last_query = float("-inf")
        """time.monotonic() of the last user query (answer, probe, length) submitted."""

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> ModelWorker:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"vittle-worker-{self.name}", daemon=True)
            self._thread.start()
        return self

    def close(self, cancel: bool = False) -> None:
        """Stop after the queued jobs (`cancel`: after the job running now, the queued ones
        cancelled: a server shutting down); later calls fail."""
        with self._wake:
            self._closed = True
            if cancel:
                for queue in self._queues.values():
                    while queue:
                        queue.popleft().future.cancel()
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join()

    # ---------------------------------------------------------------- jobs
    def _submit(self, job: _Job) -> Future:
        job.warm_up = job.kind in BACKGROUND_KINDS and doing_warm_up()
        with self._wake:
            if self._closed:
                raise WorkerClosed(f"the {self.name} worker is closed")
            self._queues[job.kind].append(job)
            if job.kind in USER_KINDS:  # background work is not a user's query
                self.last_query = time.monotonic()
            self._wake.notify()
        self.start()
        return job.future

    def waiting(self) -> int:
        """Users' jobs queued and not yet taken (a measure of load: 0 when no other turn waits)."""
        with self._wake:
            return sum(len(self._queues[kind]) for kind in USER_KINDS)

    def answer(self, image: Any, question: str, max_new_tokens: int = 24, alpha: float | None = None) -> Future:
        """Future of the greedy answer (str), batched with the other queued answers."""
        return self._submit(_Job("answer", image, question, max_new_tokens=max_new_tokens, alpha=alpha))

    def probe(self, image: Any, question: str, alpha: float | None = None) -> Future:
        """Future of the `ProbeResult`, batched with the other queued probes."""
        return self._submit(_Job("probe", image, question, alpha=alpha))

    def distribution(self, images: Sequence[Any], questions: Sequence[str], candidates: Sequence[str], top_k: int = 0,
                     max_new_tokens: int = 8, alpha: float | None = None, states: bool = False) -> Future:
        """Future of (list of `AnswerDistribution`, one per query, or with `states` also their
        (N, d) layer-l states, else None): `Assistant.answer_distribution` of all the queries in
        one pass, batched with other users' jobs over the same candidates."""
        if len(images) != len(questions):
            raise ValueError(f"{len(images)} images but {len(questions)} questions")
        return self._submit(_Job("distribution", list(images), list(questions), max_new_tokens=max_new_tokens, alpha=alpha,
                                 candidates=tuple(candidates), top_k=top_k, states=states))

    def answers(self, images: Sequence[Any], questions: Sequence[str], max_new_tokens: int = 24) -> list[str]:
        """Greedy answers of many queries (a reference set's), in chunks of `embed_chunk` run after
        the users' jobs queued before them (background work, like `embed`). Blocks until done."""
        if len(images) != len(questions):
            raise ValueError(f"{len(images)} images but {len(questions)} questions")
        step = self.embed_chunk
        futures = [self._submit(_Job("answers", list(images[i:i + step]), list(questions[i:i + step]), max_new_tokens=max_new_tokens))
                   for i in range(0, len(questions), step)]
        return [answer for future in futures for answer in future.result()]

    def prompt_length(self, image: Any, question: str) -> int:
        """Input tokens of a query (tokenized on the worker: the fast tokenizer is not thread-safe)."""
        return self._submit(_Job("length", image, question)).result()

    def image_features(self, images: Sequence[Any]) -> np.ndarray:
        """`Assistant.image_features` through the worker, (N, d), in chunks of `embed_chunk`
        images so that answers run between them. Blocks until done."""
        futures = [self._submit(_Job("features", list(images[start : start + self.embed_chunk]), None))
                   for start in range(0, len(images), self.embed_chunk)]
        rows = [future.result() for future in futures]
        width = self.assistant.model.config.text_config.hidden_size
        return np.concatenate(rows) if rows else np.zeros((0, width), dtype=np.float32)

    def embed(self, images: Sequence[Any], questions: Sequence[str], batch_size: int = 16, progress: bool = False) -> np.ndarray:
        """`Assistant.embed` through the worker: (N, d), queued as chunks of `embed_chunk`
        queries so that answers run between them. Blocks until done."""
        if len(images) != len(questions):
            raise ValueError(f"{len(images)} images but {len(questions)} questions")
        futures = []
        for start in range(0, len(questions), self.embed_chunk):
            stop = start + self.embed_chunk
            futures.append(self._submit(_Job("embed", list(images[start:stop]), list(questions[start:stop]))))
        rows = [future.result() for future in futures]
        width = self.assistant.model.config.text_config.hidden_size
        return np.concatenate(rows) if rows else np.zeros((0, width), dtype=np.float32)

    # ---------------------------------------------------------------- the thread
    def _take(self) -> tuple[str, list[_Job]] | None:
        with self._wake:
            while True:
                while not any(self._queues.values()):
                    if self._closed:
                        return None
                    self._wake.wait()
                holding = self._holding()
                ready = [k for k in PRIORITY if any(not (holding and job.warm_up) for job in self._queues[k])]
                if ready:
                    break
                self._wake.wait(0.05)  # only warm-up work is queued: wait for the turn's next job, or its end
            kind = ready[0]
            if "embed" in ready and self._last != "embed":
                kind = "embed"  # a chunk between any two batches: a long job is never starved by a stream of answers
            self._last = kind
            queue = self._queues[kind]
            if kind in BACKGROUND_KINDS:
                job = next(job for job in queue if not (holding and job.warm_up))
                queue.remove(job)
                if job.warm_up:
                    self._waiting_since = None
                return kind, [job]
            key = (lambda job: job.alpha) if kind == "probe" else _Job.batch_key  # one pass per setting (length, alpha, ...)
            first = key(queue[0])
            taken = [job for job in queue if key(job) == first][: self.max_batch]
            for job in taken:
                queue.remove(job)
            return kind, taken

    def _holding(self) -> bool:
        """Whether warm-up work waits now: a user's turn waits for its answers (`Foreground`) and
        the warm-up work queued has waited less than `Foreground.max_defer_s` since it last ran."""
        foreground = self.foreground
        if (foreground is None or not foreground.busy or self._closed
                or not any(job.warm_up for kind in BACKGROUND_KINDS for job in self._queues[kind])):
            self._waiting_since = None  # nothing waits: the next wait gets its full time
            return False
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
            self.deferred += 1
        return now - self._waiting_since < foreground.max_defer_s

    def _loop(self) -> None:
        while (taken := self._take()) is not None:
            kind, jobs = taken
            jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
            if not jobs:
                continue
            try:
                results = self._run(kind, jobs)
            except Exception as err:
                if len(jobs) == 1:
                    jobs[0].future.set_exception(err)
                    continue
                # one bad query must not fail the others batched with it: run each alone
                logger.warning("%s worker: a batch of %d %s jobs failed (%s); running them one by one", self.name, len(jobs), kind, err)
                for job in jobs:
                    try:
                        job.future.set_result(self._run(kind, [job])[0])
                    except Exception as single:
                        job.future.set_exception(single)
                continue
            for job, result in zip(jobs, results, strict=True):
                job.future.set_result(result)

    def _run(self, kind: str, jobs: list[_Job]) -> list[Any]:
        self.passes[kind] += 1
        self.jobs[kind] += len(jobs)
        if jobs[0].alpha is None:
            return self._pass(kind, jobs)
        from vittle.model import bottleneck_alpha  # heavy

        with bottleneck_alpha(self.assistant.model, jobs[0].alpha):  # this pass only: the next job has its own
            return self._pass(kind, jobs)

    def _pass(self, kind: str, jobs: list[_Job]) -> list[Any]:
        assistant = self.assistant
        if kind == "length":
            return [assistant.prompt_length(job.image, job.question) for job in jobs]
        if kind == "answer":
            if len(jobs) == 1:
                return [assistant.answer(jobs[0].image, jobs[0].question, max_new_tokens=jobs[0].max_new_tokens)]
            return assistant.answer_batch([j.image for j in jobs], [j.question for j in jobs], max_new_tokens=jobs[0].max_new_tokens,
                                          batch_size=len(jobs))
        if kind == "probe":
            return assistant.probe_batch([j.image for j in jobs], [j.question for j in jobs])
        if kind == "distribution":  # the jobs' queries together, then split back
            images, questions = [i for j in jobs for i in j.image], [q for j in jobs for q in j.question]
            first = jobs[0]
            found = assistant.answer_distribution(images, questions, first.candidates, top_k=first.top_k,
                                                  max_new_tokens=first.max_new_tokens)
            states = assistant.embed(images, questions, batch_size=max(1, len(questions))) if first.states else None
            results, start = [], 0
            for job in jobs:
                stop = start + len(job.question)
                results.append((found[start:stop], None if states is None else states[start:stop]))
                start = stop
            return results
        job = jobs[0]
        if kind == "features":
            return [assistant.image_features(job.image, batch_size=max(1, len(job.image)))]
        if kind == "answers":
            return [assistant.answer_batch(job.image, job.question, max_new_tokens=job.max_new_tokens, batch_size=len(job.question))]
        return [assistant.embed(job.image, job.question, batch_size=len(job.question))]


class ViaWorker:
    """An `Assistant` whose `embed` runs on its worker (for `vittle.analysis.representations.extract`);
    every other attribute is the assistant's own."""

    def __init__(self, worker: ModelWorker):
        self._worker = worker

    def embed(self, images: Sequence[Any], questions: Sequence[str], batch_size: int = 16, progress: bool = False) -> np.ndarray:
        return self._worker.embed(images, questions, batch_size=batch_size, progress=progress)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._worker.assistant, name)


class SingleFlight:
    """A bounded memo whose value for a key is computed once, however many threads ask at the
    same time: the first computes, the others wait for its result. At most `size` values are
    kept (the least recently used leave first: a server that runs for weeks sees thousands of
    settings); a value asked for again after it left is computed again. A failure is not
    remembered (the next call tries again) but is raised to every thread that waited for it."""

    def __init__(self, size: int = 128) -> None:
        self._lock = threading.Lock()
        self._values = Memo(size)
        self._running: dict[Hashable, Future] = {}
        self.computed = 0
        """How many values were computed (for tests)."""

    @property
    def evictions(self) -> int:
        """How many values left to keep the memo within its size."""
        return self._values.evictions

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._values

    def discard(self, key: Hashable) -> None:
        """Forget `key`'s value (the next `get` computes it again)."""
        self._values.discard(key)

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            value = self._values.get(key)
            if value is not None:
                return value
            future = self._running.get(key)
            owner = future is None
            if owner:
                future = self._running[key] = Future()
        if not owner:
            return future.result()
        try:
            value = compute()
            if value is None:  # the memo keeps no None: it would be computed on every call
                raise TypeError(f"a SingleFlight value cannot be None (key {key!r})")
        except BaseException as err:
            with self._lock:
                del self._running[key]
            future.set_exception(err)
            raise
        with self._lock:
            self._values.put(key, value)
            self.computed += 1
            del self._running[key]
        future.set_result(value)
        return value
