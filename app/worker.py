"""Serving a model to many users at once: one thread per model that batches their queries.

    worker = ModelWorker(assistant, "baseline").start()
    future = worker.answer(image, "What colour is the shape?", max_new_tokens=24)
    future.result()                                   # "red"
    worker.probe(image, question).result()            # a ProbeResult
    worker.embed(images, questions)                   # (N, d), in chunks between the answers

Every call only queues a job. The worker thread is the only one that runs the model (so the
bottleneck's per-forward state and the fast tokenizer are never shared between threads), and
each pass takes everything of one kind that is queued: all waiting answers in one batched
`generate`, all waiting probes in one forward. Sixteen users asking at once therefore cost a
few batched passes instead of 64 single ones. Answers go first, then probes; a long embedding
job (a new perturbation's reference set) runs in chunks, one between any two batches, so it
holds up the answers queued behind it for at most one chunk and is never starved by them.

`SingleFlight` computes a keyed value once however many threads ask for it at the same time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

logger = logging.getLogger(__name__)

T = TypeVar("T")

PRIORITY = ("length", "answer", "probe", "embed")
"""The order in which a pass picks the kind of job it runs (cheapest and most urgent first)."""


@dataclass
class _Job:
    kind: str
    image: Any
    """An image (a list of images for "embed")."""
    question: Any
    """A question (a list of questions for "embed")."""
    future: Future = field(default_factory=Future)
    max_new_tokens: int = 0


class ModelWorker:
    """Runs one `Assistant` for every thread that uses it, batching what they queue."""

    def __init__(self, assistant: Any, name: str = "model", max_batch: int = 32, embed_chunk: int = 16):
        if max_batch < 1 or embed_chunk < 1:
            raise ValueError(f"max_batch={max_batch} and embed_chunk={embed_chunk} must be at least 1")
        self.assistant = assistant
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
        self.last_query = float("-inf")
        """time.monotonic() of the last user query (answer, probe, length) submitted."""

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> ModelWorker:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"vittle-worker-{self.name}", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop after the queued jobs; later calls fail."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join()

    # ---------------------------------------------------------------- jobs
    def _submit(self, job: _Job) -> Future:
        with self._wake:
            if self._closed:
                raise RuntimeError(f"the {self.name} worker is closed")
            self._queues[job.kind].append(job)
            if job.kind != "embed":
                self.last_query = time.monotonic()
            self._wake.notify()
        self.start()
        return job.future

    def answer(self, image: Any, question: str, max_new_tokens: int = 24) -> Future:
        """Future of the greedy answer (str), batched with the other queued answers."""
        return self._submit(_Job("answer", image, question, max_new_tokens=max_new_tokens))

    def probe(self, image: Any, question: str) -> Future:
        """Future of the `ProbeResult`, batched with the other queued probes."""
        return self._submit(_Job("probe", image, question))

    def prompt_length(self, image: Any, question: str) -> int:
        """Input tokens of a query (tokenized on the worker: the fast tokenizer is not thread-safe)."""
        return self._submit(_Job("length", image, question)).result()

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
            while not any(self._queues.values()):
                if self._closed:
                    return None
                self._wake.wait()
            kind = next(k for k in PRIORITY if self._queues[k])
            if self._queues["embed"] and self._last != "embed":
                kind = "embed"  # a chunk between any two batches: a long job is never starved by a stream of answers
            self._last = kind
            queue = self._queues[kind]
            if kind == "embed":
                return kind, [queue.popleft()]
            if kind == "answer":  # one generate per max_new_tokens setting
                first = queue[0].max_new_tokens
                taken = [job for job in queue if job.max_new_tokens == first][: self.max_batch]
                for job in taken:
                    queue.remove(job)
                return kind, taken
            return kind, [queue.popleft() for _ in range(min(len(queue), self.max_batch))]

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
        job = jobs[0]
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
    """A memo whose value for a key is computed once, however many threads ask at the same
    time: the first computes, the others wait for its result. A failure is not remembered
    (the next call tries again) but is raised to every thread that waited for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[Hashable, Any] = {}
        self._running: dict[Hashable, Future] = {}
        self.computed = 0
        """How many values were computed (for tests)."""

    def __contains__(self, key: Hashable) -> bool:
        return key in self._values

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._values:
                return self._values[key]
            future = self._running.get(key)
            owner = future is None
            if owner:
                future = self._running[key] = Future()
        if not owner:
            return future.result()
        try:
            value = compute()
        except BaseException as err:
            with self._lock:
                del self._running[key]
            future.set_exception(err)
            raise
        with self._lock:
            self._values[key] = value
            self.computed += 1
            del self._running[key]
        future.set_result(value)
        return value
