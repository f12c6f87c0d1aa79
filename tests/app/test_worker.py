"""Serving many users: the model worker batches their queries, single-flight memos compute once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import easy_vqa
import numpy as np
import pytest

from vittle.app.worker import Foreground, ModelWorker, SingleFlight, ViaWorker, warm_up_work
from vittle.data import load_image


@pytest.fixture(scope="module")
def assistant():
    from vittle.app.config import ASSETS
    from vittle.inference import Assistant

    return Assistant.load(ASSETS / "tiny-vittle-f", device="cpu")


@pytest.fixture(scope="module")
def queries():
    paths = [easy_vqa.get_test_image_paths()[i] for i in range(12)]
    questions = ["what color is the shape?", "what shape is this?", "is there a red shape?"]
    return [load_image(p) for p in paths], [questions[i % 3] for i in range(len(paths))]


class Slow:
    """An assistant whose batched calls take a while (so that jobs pile up behind them) and
    record their sizes; `fail_on` makes any batch holding that question raise."""

    def __init__(self, inner, fail_on: str | None = None):
        self.inner, self.fail_on, self.sizes = inner, fail_on, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _check(self, questions):
        self.sizes.append(len(questions))
        time.sleep(0.2)
        if self.fail_on in questions:
            raise ValueError(f"cannot answer {self.fail_on!r}")

    def answer(self, image, question, max_new_tokens=24):
        self._check([question])
        return self.inner.answer(image, question, max_new_tokens=max_new_tokens)

    def answer_batch(self, images, questions, max_new_tokens=8, batch_size=32):
        self._check(questions)
        return self.inner.answer_batch(images, questions, max_new_tokens=max_new_tokens, batch_size=batch_size)


def test_concurrent_answers_are_batched_and_equal_the_single_answers(assistant, queries):
    images, questions = queries
    slow = Slow(assistant)
    worker = ModelWorker(slow, "vittle-f").start()
    try:
        with ThreadPoolExecutor(12) as pool:  # twelve users ask at once
            got = list(pool.map(lambda i: worker.answer(images[i], questions[i], max_new_tokens=8).result(), range(12)))
    finally:
        worker.close()
    expected = [assistant.answer(image, question, max_new_tokens=8) for image, question in zip(images, questions)]
    assert got == expected
    assert sum(slow.sizes) == 12 and len(slow.sizes) <= 4 and max(slow.sizes) >= 4  # a few batched passes, not 12
    assert worker.jobs["answer"] == 12 and worker.passes["answer"] == len(slow.sizes)


def test_one_bad_query_fails_alone(assistant, queries):
    images, questions = queries
    slow = Slow(assistant, fail_on="bad question")
    worker = ModelWorker(slow, "vittle-f").start()
    try:
        blocker = worker.answer(images[0], questions[0])  # holds the worker while the others queue
        time.sleep(0.05)
        futures = [worker.answer(images[i], questions[i]) for i in (1, 2)] + [worker.answer(images[3], "bad question")]
        blocker.result()
        assert [f.result() for f in futures[:2]] == [assistant.answer(images[i], questions[i]) for i in (1, 2)]
        with pytest.raises(ValueError, match="cannot answer 'bad question'"):
            futures[2].result()
    finally:
        worker.close()
    with pytest.raises(RuntimeError, match="the vittle-f worker is closed"):
        worker.answer(images[0], questions[0])


def test_probes_are_batched_and_an_embedding_job_lets_answers_through(assistant, queries):
    images, questions = queries
    worker = ModelWorker(assistant, "vittle-f", embed_chunk=2).start()
    try:
        probes = [worker.probe(images[i], questions[i]) for i in range(6)]
        results = [p.result() for p in probes]
        for result, image, question in zip(results, images, questions):
            np.testing.assert_allclose(result.hidden_after, assistant.probe(image, question).hidden_after, rtol=1e-4, atol=1e-5)
        assert worker.passes["probe"] < 6
        order: list[str] = []
        done = threading.Event()

        def embed() -> None:
            rows = ViaWorker(worker).embed(images, questions)
            order.append("embed")
            np.testing.assert_allclose(rows, assistant.embed(images, questions), rtol=1e-4, atol=1e-5)
            done.set()

        thread = threading.Thread(target=embed)
        thread.start()
        deadline = time.monotonic() + 30
        while worker.passes["embed"] == 0 and time.monotonic() < deadline:  # the embedding's first chunk is running
            time.sleep(0.005)
        answer = worker.answer(images[0], questions[0]).result()  # queued behind at most one chunk of 2
        order.append("answer")
        thread.join(60)
        assert done.is_set() and order == ["answer", "embed"] and answer == assistant.answer(images[0], questions[0])
        assert worker.jobs["embed"] == 6 and worker.passes["embed"] == 6  # twelve queries in chunks of two
    finally:
        worker.close()
    with pytest.raises(ValueError, match="max_batch=0"):
        ModelWorker(assistant, max_batch=0)


def test_a_reference_sets_answers_run_in_chunks_after_the_users_and_are_not_a_users_query(assistant, queries):
    images, questions = queries
    slow = Slow(assistant)
    worker = ModelWorker(slow, "vittle-f", embed_chunk=4).start()
    try:
        blocker = worker.answer(images[0], questions[0], max_new_tokens=4)  # holds the worker while the others queue
        time.sleep(0.05)
        before = worker.last_query
        order: list[str] = []
        thread = threading.Thread(target=lambda: order.append(("answers", worker.answers(images, questions, max_new_tokens=4))))
        thread.start()
        time.sleep(0.05)
        assert worker.last_query == before  # background work leaves the precompute's quiet clock alone
        user = worker.answer(images[1], questions[1], max_new_tokens=4)
        blocker.result()
        user.result()
        order.append("user")
        thread.join(60)
        assert [entry if isinstance(entry, str) else entry[0] for entry in order] == ["user", "answers"]
        got = next(entry[1] for entry in order if not isinstance(entry, str))
        assert got == assistant.answer_batch(images, questions, max_new_tokens=4, batch_size=len(questions))
        assert worker.jobs["answers"] == 3 and worker.passes["answers"] == 3  # twelve queries in chunks of four
    finally:
        worker.close()


def _warm_up(call):
    with warm_up_work():
        return call()


def test_warm_up_work_waits_while_a_turn_waits_for_its_answers(assistant, queries):
    """A user's turn in its answering phase (`Foreground.active`) holds back the warm-up's
    embedding, even the chunk that would otherwise run between two batches; it runs as soon as
    the turn has its answers. A reference set a user's turn asked for is not held back."""
    images, questions = queries
    foreground = Foreground(max_defer_s=60)
    worker = ModelWorker(assistant, "vittle-f", embed_chunk=4, foreground=foreground).start()
    rows: list[np.ndarray] = []
    try:
        with foreground.active():
            thread = threading.Thread(target=lambda: rows.append(_warm_up(lambda: worker.embed(images, questions))))
            thread.start()
            deadline = time.monotonic() + 30
            while worker.deferred == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            answers = [worker.answer(images[i], questions[i], max_new_tokens=4).result() for i in range(3)]  # the turn's jobs go first
            demanded = worker.embed(images[:4], questions[:4])  # a user's new setting: runs at once, beside the turn
            time.sleep(0.2)
            assert worker.passes["embed"] == 1 and worker.deferred == 1 and worker.passes["answer"] == 3
            assert foreground.busy and thread.is_alive()
            assert foreground.yield_to_users(limit=0.01) == 0.0  # not a warm-up thread: never waits
        thread.join(60)
        assert not foreground.busy and worker.passes["embed"] == 4  # twelve queries in chunks of four, after the turn
        np.testing.assert_allclose(rows[0], assistant.embed(images, questions), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(demanded, rows[0][:4], rtol=1e-4, atol=1e-5)
        assert answers == [assistant.answer(images[i], questions[i], max_new_tokens=4) for i in range(3)]
    finally:
        worker.close()


def test_warm_up_work_is_delayed_never_starved_by_a_turn_that_does_not_end(assistant, queries):
    images, questions = queries
    foreground = Foreground(max_defer_s=0.2)
    worker = ModelWorker(assistant, "vittle-f", embed_chunk=6, foreground=foreground).start()
    try:
        with foreground.active():  # e.g. a turn whose generator was never closed
            rows = _warm_up(lambda: worker.embed(images, questions))  # completes: each chunk waits 0.2 s at most
            assert rows.shape[0] == len(images) and worker.passes["embed"] == 2 and worker.deferred == 2
            assert _warm_up(lambda: foreground.yield_to_users(limit=0.05)) >= 0.05 and foreground.deferrals == 1
    finally:
        worker.close()
    assert _warm_up(foreground.yield_to_users) == 0.0  # no turn: no wait
    ended = Foreground(max_defer_s=30)
    turn = ended.active()
    turn.__enter__()
    threading.Timer(0.1, lambda: turn.__exit__(None, None, None)).start()
    assert _warm_up(ended.yield_to_users) < 30  # woken by the turn's end, not by the limit
    with pytest.raises(ValueError, match="max_defer_s=-1"):
        Foreground(max_defer_s=-1)


def test_single_flight_computes_once_and_does_not_remember_failures():
    flight = SingleFlight()
    calls = []

    def slow_value():
        calls.append(1)
        time.sleep(0.2)
        return 42

    with ThreadPoolExecutor(8) as pool:
        values = list(pool.map(lambda _: flight.get("key", slow_value), range(8)))
    assert values == [42] * 8 and len(calls) == 1 and flight.computed == 1 and "key" in flight
    failures = []

    def broken():
        failures.append(1)
        raise OSError("disk full")

    for _ in range(2):
        with pytest.raises(OSError, match="disk full"):
            flight.get("other", broken)
    assert len(failures) == 2 and "other" not in flight


def test_single_flight_keeps_at_most_its_size_and_recomputes_what_left():
    flight = SingleFlight(size=3)
    calls = []

    def value(k):
        calls.append(k)
        return k * 10

    for k in range(10):
        assert flight.get(k, lambda k=k: value(k)) == k * 10
    assert len(flight) == 3 and flight.evictions == 7 and flight.computed == 10
    assert [k for k in range(10) if k in flight] == [7, 8, 9]  # the least recently used left first
    assert flight.get(8, lambda: value(8)) == 80 and calls.count(8) == 1  # still kept: not computed again
    assert flight.get(0, lambda: value(0)) == 0 and calls.count(0) == 2  # left, so computed again
    assert 7 not in flight and 8 in flight  # 8 was used more recently than 7
    with pytest.raises(TypeError, match="cannot be None"):
        flight.get("none", lambda: None)
    assert "none" not in flight and flight.get("none", lambda: 1) == 1  # the failure was not remembered


def test_sixteen_users_on_a_new_setting_embed_its_reference_set_once(service):
    from vittle.analysis.perturb import CLEAN

    spec = "shot_noise:2"  # a setting no other test uses
    before = service.references.cache.computed
    path = easy_vqa.get_test_image_paths()[5]

    def user(k: int):
        query = service.prepare(path, "what shape is this?", "shot_noise", 2, "none", 3)
        answers = list(service.answers(query, "vittle-f"))[-1]
        panels = service.panels(query, "vittle-f", "pca")
        return answers, panels.numbers.reference_cosine_mean

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(user, range(16)))
    assert all(r == results[0] for r in results)  # every user got the same answers and numbers
    assert service.references.cache.computed - before == 2  # the new spec, once per model; clean was already there
    assert (("baseline", spec) in service.references.cache and ("vittle-f", spec) in service.references.cache
            and ("baseline", CLEAN) in service.references.cache)


def test_distribution_jobs_batch_by_setting_and_keep_their_own_alpha(assistant, queries):
    from vittle.model import bottleneck_alpha, get_bottleneck

    images, questions = queries
    candidates = ("red", "blue", "circle", "yes", "no")
    slow = Slow(assistant)
    worker = ModelWorker(slow, "vittle-f").start()
    try:
        blocker = worker.answer(images[0], questions[0])  # holds the worker while the others queue
        time.sleep(0.05)
        jobs = [worker.distribution(images[0:2], questions[0:2], candidates), worker.distribution(images[2:3], questions[2:3], candidates),
                worker.distribution(images[0:2], questions[0:2], candidates, alpha=0.0, states=True)]
        blocker.result()
        results = [job.result() for job in jobs]
    finally:
        worker.close()
    assert worker.jobs["distribution"] == 3 and worker.passes["distribution"] == 2  # the first two in one pass, alpha 0 alone
    direct = assistant.answer_distribution(images[0:3], questions[0:3], candidates)
    np.testing.assert_allclose([d.log_probs for d in results[0][0] + results[1][0]], [d.log_probs for d in direct], atol=1e-5)
    assert results[0][1] is None and results[2][1].shape == (2, 128)
    with bottleneck_alpha(assistant.model, 0.0):
        off = assistant.answer_distribution(images[0:2], questions[0:2], candidates)
        states = assistant.embed(images[0:2], questions[0:2])
    np.testing.assert_allclose([d.log_probs for d in results[2][0]], [d.log_probs for d in off], atol=1e-5)
    np.testing.assert_allclose(results[2][1], states, rtol=1e-4, atol=1e-5)
    assert get_bottleneck(assistant.model).inference_alpha is None
